"""reconstruct's metrics end to end: a NaN metric is an error line naming its cause, never a row
(the per-slice check itself: tests/tasks/test_recon_slices.py)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from helpers import files_under, main_in_process, one_error_line, preprocess_tiny, run_cli, tiny_arrays, write_h5

from mrirecon.evaluation.uncertainty import NAMES, uncertainty_metrics
from mrirecon.methods import REGISTRY, Method
from mrirecon.physics.sense import SenseOperator
from mrirecon.tasks.recon_outputs import CSV_HEADER


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


def sampled(self: Method, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> Any:
    """A test-only posterior sampler patched onto zero_filled: 4 seeded draws of the zero-filled
    image with multiplicative noise (10 % of |x|), their mean and per-pixel std."""
    x = self.reconstruct(y, op, noise_std)
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([x * (1 + 0.1 * torch.randn(x.shape, generator=generator)) for _ in range(4)])
    mean = draws.mean(0)
    return mean, (draws - mean).abs().pow(2).mean(0).sqrt()


@pytest.mark.slow
def test_a_sampling_method_writes_its_std_and_evaluate_reports_it(tmp_path, monkeypatch):
    """A method that samples: recon.h5 `std` (cropped like recon), metrics.csv's std_spearman and
    std_coverage, summary.json's `uncertainty`, a 4-panel figure; evaluate's results.csv columns
    (empty on the row without std), results.md and the uncertainty figure. The same method
    without std writes no such thing (metrics.csv's columns as before)."""
    data = preprocess_tiny(tmp_path)
    common = ["data=full", f"data.path={data}", "data.split=all", "hardware.threads=1"]
    assert main_in_process("reconstruct", "method=zero_filled", *common, f"hydra.run.dir={tmp_path / 'one'}") == 0
    monkeypatch.setattr(REGISTRY.lookup("zero_filled"), "reconstruct_with_std", sampled)
    assert (
        main_in_process("reconstruct", "method=zero_filled", *common, "seed=1", f"hydra.run.dir={tmp_path / 'many'}")
        == 0
    )
    one, many = tmp_path / "one", tmp_path / "many"
    assert (one / "metrics.csv").read_text().splitlines()[0] == ",".join(CSV_HEADER)
    assert (many / "metrics.csv").read_text().splitlines()[0] == ",".join((*CSV_HEADER, *NAMES))
    with h5py.File(one / "recon.h5") as h5:
        assert "std" not in h5
    with h5py.File(many / "recon.h5") as h5:
        recon, imgs, std = h5["recon"][()], h5["imgs"][()], h5["std"][()]
    assert std.shape == recon.shape and std.dtype == np.float32 and (std > 0).any()
    rows = list(csv.DictReader(io.StringIO((many / "metrics.csv").read_text())))
    expected = uncertainty_metrics(recon[0], imgs[0], std[0])
    assert float(rows[0]["std_spearman"]) == pytest.approx(expected["std_spearman"], rel=1e-5)
    summary = json.loads((many / "summary.json").read_text())
    assert "uncertainty" not in json.loads((one / "summary.json").read_text())
    assert (
        len(summary["uncertainty"]["per_slice"]["std_coverage"]) == len(rows) and summary["uncertainty"]["definition"]
    )
    figure = (many / "figures").iterdir().__next__()
    assert plt.imread(figure).shape[1] > plt.imread(one / "figures" / figure.name).shape[1]  # the std panel
    monkeypatch.undo()  # two rows: one run without std, one with (another seed)
    assert main_in_process("evaluate", f"runs=[{one},{many}]", f"hydra.run.dir={tmp_path / 'ev'}") == 0
    table = list(csv.DictReader(io.StringIO((tmp_path / "ev" / "results.csv").read_text())))
    by_dirs = {r["run_dirs"]: r for r in table}
    assert by_dirs[str(one)]["std_spearman_mean"] == ""
    coverage = np.mean([float(r["std_coverage"]) for r in rows])
    assert float(by_dirs[str(many)]["std_coverage_mean"]) == pytest.approx(coverage, rel=1e-4)
    assert (tmp_path / "ev" / "uncertainty.png").is_file()
    assert "std-error Spearman" in (tmp_path / "ev" / "results.md").read_text()
    assert "Uncertainty" in (tmp_path / "ev" / "report.html").read_text()
