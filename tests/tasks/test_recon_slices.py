"""reconstruct's per-slice metrics (mrirecon/tasks/recon_slices.py): a NaN metric is an error
naming its cause, never a row."""

from __future__ import annotations

import numpy as np
import pytest

from mrirecon.errors import UserError
from mrirecon.tasks.recon_slices import defined_metrics


def test_defined_metrics_names_the_cause():
    rng = np.random.default_rng(0)
    image = (rng.standard_normal((16, 16)) + 1j * rng.standard_normal((16, 16))).astype(np.complex64)
    assert np.isfinite(defined_metrics(image * 1.01, image, 3)["psnr"])
    assert defined_metrics(image, image, 3)["psnr"] == np.inf  # exact: infinite, not undefined
    with pytest.raises(UserError, match=r"^data.path: slice 3 has a reference image that is all zero"):
        defined_metrics(image, np.zeros_like(image), 3)
    diverged = image.copy()
    diverged[2, 2] = np.nan
    with pytest.raises(UserError, match=r"^method: the reconstruction of slice 3 has non-finite pixels"):
        defined_metrics(diverged, image, 3)
