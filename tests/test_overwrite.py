"""Outputs never replace a file that mrirecon did not write: a foreign data.path of preprocess,
or files in a reconstruct run dir that no earlier reconstruct wrote, are refused with one error
line unless overwrite=true; mrirecon's own outputs are replaced as before."""

from __future__ import annotations

import h5py
import pytest
from helpers import one_error_line, run_cli, tiny_arrays, write_h5

pytestmark = pytest.mark.slow  # CLI runs


def test_preprocess_keeps_a_file_it_did_not_write(tmp_path):
    source = write_h5(tmp_path / "source.h5", tiny_arrays(seed=1))
    foreign = write_h5(tmp_path / "colleague.h5", tiny_arrays(seed=2))  # a real data set, not ours
    before = foreign.read_bytes()
    args = ["preprocess", "data=full", f"data.source={source}", f"data.path={foreign}", "hydra.run.dir=run"]
    line = one_error_line(run_cli(*args, cwd=tmp_path))
    assert f"data.path: {foreign} exists and was not written by mrirecon" in line and "overwrite=true" in line
    assert foreign.read_bytes() == before and not (tmp_path / "run").exists()
    assert run_cli(*args, "overwrite=true", cwd=tmp_path).returncode == 0
    with h5py.File(foreign) as f:
        assert "mrirecon_version" in f.attrs
    again = run_cli(*args, cwd=tmp_path)  # now an mrirecon output: a rerun replaces it
    assert again.returncode == 0, again.stderr


def test_reconstruct_keeps_files_it_did_not_write(tmp_path):
    processed = tmp_path / "processed.h5"
    prep = ["preprocess", "data=full", f"data.source={write_h5(tmp_path / 'src.h5', tiny_arrays())}"]
    assert run_cli(*prep, f"data.path={processed}", "hydra.run.dir=prep", cwd=tmp_path).returncode == 0
    args = ["reconstruct", "method=zero_filled", "data=full", f"data.path={processed}", "output.cfl=true"]
    for _ in range(2):  # a rerun into its own run dir replaces its outputs
        res = run_cli(*args, "hydra.run.dir=run", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    bart = tmp_path / "bart"  # a BART working folder with its own recon.cfl/.hdr
    bart.mkdir()
    for name in ("recon.cfl", "recon.hdr"):
        (bart / name).write_bytes(b"theirs")
    line = one_error_line(run_cli(*args, f"hydra.run.dir={bart}", cwd=tmp_path))
    assert "recon.cfl, recon.hdr" in line and "overwrite=true" in line
    assert all((bart / name).read_bytes() == b"theirs" for name in ("recon.cfl", "recon.hdr"))
