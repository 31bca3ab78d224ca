"""reconstruct's metrics: a NaN metric is an error line naming its cause, never a row."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import files_under, one_error_line, run_cli, tiny_arrays, write_h5

from mrirecon.errors import UserError
from mrirecon.tasks.reconstruct import defined_metrics


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


@pytest.mark.slow
def test_zero_reference_is_an_error_not_a_nan_row(tmp_path):
    """A file that claims references but holds an all-zero one (what partial-echo ISMRMRD files
    made before): exit 2 with one error line, no run dir files."""
    arrays = tiny_arrays()
    arrays["imgs"][2] = 0
    write_h5(tmp_path / "zero.h5", arrays)
    res = run_cli(
        "reconstruct", "method=zero_filled", "data.path=zero.h5", "data.split=all", "hydra.run.dir=rec", cwd=tmp_path
    )
    line = one_error_line(res)
    assert "data.path" in line and "slice 2" in line and "all zero" in line
    assert not {f for f in files_under(tmp_path / "rec") if not f.startswith(".hydra")} - {"reconstruct.log"}
