"""evaluate's statistics, sweep plots, training curves and report page, on run dirs made by hand
(metrics.csv, summary.json, a tiny recon.h5): known answers, no reconstruction."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import fake_run, run_cli

from mrirecon import stats
from mrirecon.figures import axis_scale

pytestmark = pytest.mark.slow  # evaluate runs, figures and a browser

LAMS = (1e-4, 3e-4, 1e-3, 3e-3)
BETAS = (0.0, 3e-5, 1e-4)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """Known answers in one evaluate (baseline=b):
    variant offset: a = b + 0.5 dB on each of 8 slices (resolved, interval [0.5, 0.5]);
    variant noise: c and d differ by noise only, 20 slices (tied, interval covers 0);
    variant noisy_offset: e = f + 0.5 dB + noise, 20 slices of 5 subjects (resolved, covers 0.5);
    variant sweep: flow_combined over 4 lam x 3 beta and cg_sense over 4 lam (3 slices each);
    and a train run."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(12)
    runs = root / "runs"
    base3 = np.round(30 + 3 * rng.random(3), 4)
    base8 = np.round(30 + 3 * rng.random(8), 4)
    fake_run(runs / "a", "a", "offset", base8 + 0.5)
    fake_run(runs / "b", "b", "offset", base8)
    base20 = np.round(30 + 3 * rng.random(20), 4)
    fake_run(runs / "c", "c", "noise", base20 + rng.normal(0, 0.3, 20))
    fake_run(runs / "d", "d", "noise", base20)
    subjects = [k // 4 for k in range(20)]
    fake_run(runs / "e", "e", "noisy_offset", base20 + 0.5 + rng.normal(0, 0.2, 20), subjects=subjects)
    fake_run(runs / "f", "b", "noisy_offset", base20, subjects=subjects, accel=4.0)
    for i, lam in enumerate(LAMS):
        for j, beta in enumerate(BETAS):
            peak = 35 - 40 * (np.log10(lam) + 3.5) ** 2 / 10 + 10 * beta
            fake_run(runs / f"flow_{i}{j}", "flow_combined", "sweep", base3 + peak, {"lam": lam, "beta": beta})
        fake_run(runs / f"cg_{i}", "cg_sense", "sweep", base3 + 30 + i, {"lam": lam})
    fake_train_run(root / "train" / "run1")  # runs= may mix train and reconstruct runs
    res = run_cli(
        "evaluate",
        f"runs=[{runs},{root / 'train'}]",
        "baseline=b",
        "figure_slices=1",
        "hydra.run.dir=out",
        cwd=root,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return root / "out", res


def test_known_answers(evaluated):
    out, _ = evaluated
    rows = {(r["variant"], r["method"]): r for r in read_csv(out / "results.csv")}
    assert rows[("offset", "a")]["best"] == "*" and rows[("offset", "b")]["best"] == ""
    assert rows[("noise", "c")]["best"] == rows[("noise", "d")]["best"] == "tied"
    assert rows[("noisy_offset", "e")]["best"] == "*"
    assert rows[("offset", "a")]["slices"] == "8" and rows[("offset", "a")]["subjects"] == ""
    assert rows[("noisy_offset", "e")]["subjects"] == "5" and float(rows[("noisy_offset", "b")]["R"]) == 4.0
    assert float(rows[("offset", "a")]["seconds_mean"]) == 0.25 and "seconds_std" not in rows[("offset", "a")]
    comps = {(c["variant"], c["method"], c["reference"], c["metric"]): c for c in read_csv(out / "comparisons.csv")}
    offset = comps[("offset", "b", "best", "psnr")]
    assert offset["resolved"] == "true" and float(offset["mean_diff"]) == pytest.approx(-0.5, abs=1e-3)
    assert float(offset["ci_low"]) == pytest.approx(-0.5, abs=1e-3) == float(offset["ci_high"])
    (noise,) = [c for c in comps.values() if c["variant"] == "noise" and c["metric"] == "psnr"]
    assert noise["resolved"] == "false" and float(noise["ci_low"]) < 0 < float(noise["ci_high"])
    assert 0.05 < float(noise["p"]) <= 1
    noisy = comps[("noisy_offset", "b", "best", "psnr")]
    assert noisy["resolved"] == "true" and noisy["subjects"] == "5"
    assert float(noisy["ci_low_subjects"]) <= -0.5 <= float(noisy["ci_high_subjects"])
    assert float(noisy["ci_low"]) <= -0.5 <= float(noisy["ci_high"]) and float(noisy["p"]) < 0.001
    # baseline=b: the other methods against b, the same difference with the sign seen from them
    assert float(comps[("offset", "a", "baseline", "psnr")]["mean_diff"]) == pytest.approx(0.5, abs=1e-3)
    assert comps[("offset", "a", "baseline", "nrmse")]["resolved"] == "true"
    table = (out / "results.md").read_text()
    assert "| slices | subjects | R |" in table and "## Paired comparisons" in table and "tied" in table


def test_sweep_plots(evaluated):
    out, _ = evaluated
    heat = out / "sweep_flow_combined_sweep_lam_x_beta.png"
    line = out / "sweep_lam.png"
    assert heat.stat().st_size > 20_000 and line.stat().st_size > 20_000
    assert sorted(p.name for p in out.glob("sweep_*.png")) == sorted([heat.name, line.name])
    rows = [r for r in read_csv(out / "results.csv") if r["method"] == "flow_combined"]
    best = max(rows, key=lambda r: float(r["psnr_mean"]))
    assert (float(best["lam"]), float(best["beta"])) == (3e-4, 1e-4)
    assert axis_scale(LAMS) == "log" and axis_scale([0, 1e-5, 1e-3]) == "symlog" and axis_scale([1, 2, 5]) == "linear"
    assert axis_scale([-1, 1, 100]) == "linear"


def test_report_is_self_contained(evaluated):
    out, res = evaluated
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # line plot, heat map, comparison, training curves
    assert "<script" not in page and 'src="http' not in page and "href=" not in page
    for text in ("Paired comparisons", "Sweeps", "Per-slice comparison", "Training curves", "flow_combined", "tied"):
        assert text in page
    assert "cg_sense" in res.stdout and not re.search(r"± 0(?![.\d])", res.stdout)  # seconds: a plain mean


def test_report_in_a_headless_browser(evaluated, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no headless browser (chromium) installed")
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            f"--user-data-dir={tmp_path / 'profile'}",
            (evaluated[0] / "report.html").as_uri(),
        ],
        capture_output=True,
        timeout=60,
    )
    import matplotlib.image

    img = matplotlib.image.imread(shot)[..., :3]
    assert img.shape[:2] == (3000, 1200)
    colours = len(np.unique((img.reshape(-1, 3) * 255).astype(np.uint8), axis=0))
    assert colours > 200 and img.std() > 0.05  # text, tables and the embedded images, not a blank page


def fake_train_run(path: Path) -> Path:
    """A train run dir: .hydra/config.yaml and a metrics.csv of 10 epochs."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(
        "method:\n  name: dbp\nmodel:\n  name: unet\ntrain:\n  supervised: true\n"
    )
    lines = ["epoch,step,train_loss,val_nrmse,val_psnr,val_ssim,lr"]
    lines += [f"{e},{3 * e},{1 / e:.4g},{0.3 / e:.4g},{25 + e:.4g},{0.5 + e / 40:.4g},0.001" for e in range(1, 11)]
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")
    return path


def test_training_curves_of_a_train_run(tmp_path):
    fake_train_run(tmp_path / "train" / "run1")  # from before training.json: labelled from its config
    described = fake_train_run(tmp_path / "train" / "run2")
    (described / "training.json").write_text('{"trains": "unet_image + fastmri_unet (supervised, l1 loss)"}')
    res = run_cli("evaluate", f"runs=[{tmp_path / 'train'}]", "hydra.run.dir=out", cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    assert (out / "training_curves.png").stat().st_size > 10_000 and not (out / "results.csv").exists()
    page = (out / "report.html").read_text()
    assert "0 reconstruct runs, 2 train runs" in page
    assert "Training curves" in page and "unrolled family: method=dbp model=unet (train/run1)" in page
    assert "unet_image + fastmri_unet (supervised, l1 loss) (train/run2)" in page and page.count("data:image/png") == 1


def test_paired_statistics_library():
    rng = np.random.default_rng(3)
    covered = sum(
        lo <= 0 <= hi
        for lo, hi in (stats.bootstrap_ci(rng.normal(size=10), resamples=2000, seed=i) for i in range(200))
    )
    assert 180 <= covered <= 200  # 95 % nominal
    assert stats.wilcoxon_p(np.zeros(5)) == 1.0 and np.isnan(stats.wilcoxon_p(np.ones(1)))
    one = stats.paired(np.array([2.0]), np.array([1.0]))
    assert not one.resolved and one.slices == 1  # one slice resolves nothing
    three = stats.paired(np.array([31.0, 32.0, 33.0]), np.array([30.0, 30.5, 31.0]))
    assert three.low > 0 and three.p >= 0.25 and not three.resolved  # winning on all 3 slices: chance 1/4
    clustered = stats.paired(np.arange(6.0) + 1, np.zeros(6), subjects=np.array([0, 0, 0, 1, 1, 1]))
    assert clustered.subjects == 2 and (clustered.low_subjects, clustered.high_subjects) == (2.0, 5.0)  # subject means
    with pytest.raises(ValueError, match="a, b"):
        stats.paired(np.ones(2), np.ones(3))
