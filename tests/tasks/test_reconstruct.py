"""reconstruct's metrics end to end: a NaN metric is an error line naming its cause, never a row
(the per-slice check itself: tests/tasks/test_recon_slices.py)."""

from __future__ import annotations

import pytest
from helpers import files_under, one_error_line, run_cli, tiny_arrays, write_h5


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
