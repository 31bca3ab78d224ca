"""Raw acquired k-space without coil maps: ESPIRiT maps, no reference, data consistency."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import ASSETS, run_cli, tiny_arrays, write_h5

from mrirecon.data.h5 import DeepInPyFile

pytestmark = pytest.mark.slow  # raw k-space through the CLI

BRAIN = ASSETS / "brain_8coil_ksp_poisson8x.npy"


@pytest.fixture(scope="module")
def brain(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("brain")
    res = run_cli("preprocess", "data=full", f"data.source={BRAIN}", "data.path=brain.h5", "hydra.run.dir=pre", cwd=cwd)
    assert res.returncode == 0, res.stderr
    return cwd


def test_preprocess_estimates_maps(brain):
    f = DeepInPyFile(brain / "brain.h5")
    s = f.read(0)
    assert f.attrs["has_reference"] == 0 and s.maps.shape == (8, 230, 180)
    power = (np.abs(s.maps) ** 2).sum(0)
    assert power.max() < 1.01 and (power > 0.9).mean() > 0.3  # unit norm on the head, zero outside
    assert 0.10 < s.mask.mean() < 0.15
    assert np.array_equal(s.ksp, np.load(BRAIN))  # the acquired data untouched


def test_reconstruct_raw_data(brain):
    res = run_cli(
        "reconstruct",
        "-m",
        "method=zero_filled,cg_sense,cs_wavelet",
        "data=full",
        "data.path=brain.h5",
        "data.split=all",
        "hydra.sweep.dir=rec",
        cwd=brain,
    )
    assert res.returncode == 0, res.stderr
    found = {}
    for summary in (brain / "rec").glob("*/summary.json"):
        s = json.loads(summary.read_text())
        found[s["method"]] = s
        with h5py.File(summary.parent / "recon.h5") as h5:
            assert np.isfinite(h5["recon"][()]).all() and np.abs(h5["recon"][()]).max() > 0
        assert s["has_reference"] is False and np.isnan(s["mean"]["nrmse"])
        assert (summary.parent / "figures" / "slice_0000.png").is_file()
    assert set(found) == {"zero_filled", "cg_sense", "cs_wavelet"}
    for name in ("cg_sense", "cs_wavelet"):
        assert found[name]["data_consistency"]["mean"] < 0.06
        assert found[name]["data_consistency"]["mean"] < 0.5 * found["zero_filled"]["data_consistency"]["mean"]
    res = run_cli("evaluate", "runs=[rec]", "hydra.run.dir=eval", cwd=brain)
    assert res.returncode == 0, res.stderr


def test_raw_data_without_reference_only_makes_full(brain):
    res = run_cli(
        "preprocess", "data=4bit_full", f"data.source={BRAIN}", "data.path=x.h5", "hydra.run.dir=bad", cwd=brain
    )
    assert res.returncode == 2 and "no reference" in res.stderr and res.stderr.count("\n") == 1
    assert not (brain / "x.h5").exists()
    res = run_cli(
        "reconstruct", "method=zero_filled", "data=full", "data.path=brain.h5", "hydra.run.dir=bad2", cwd=brain
    )
    assert res.returncode == 2 and "empty" in res.stderr


def test_h5_without_maps_with_reference(tmp_path):
    a = tiny_arrays(n=3, shape=(32, 24))
    src = write_h5(tmp_path / "nomaps.h5", {"ksp": a["ksp"], "imgs": a["imgs"], "masks": a["masks"]})
    res = run_cli(
        "preprocess",
        "data=8bit_full",
        f"data.source={src}",
        "data.espirit.calib_width=6",
        "data.path=out.h5",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    f = DeepInPyFile(tmp_path / "out.h5")
    assert f.attrs["has_reference"] == 1 and f.read(0).maps.shape == (4, 32, 24)
