"""evaluate's statistics, sweep plots, training curves and report page, on run dirs made by hand
(metrics.csv, summary.json, a tiny recon.h5): known answers, no reconstruction."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import fake_run, run_cli

from mrirecon.evaluation.figures import axis_scale

pytestmark = pytest.mark.slow  # evaluate runs, figures and a browser

LAMS = (1e-4, 3e-4, 1e-3, 3e-3)
BETAS = (0.0, 3e-5, 1e-4)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """Known answers in one evaluate (baseline=b):
    variant offset: a = b + 0.5 dB on each of 8 slices (resolved over slices, interval [0.5, 0.5]);
    variant noise: c and d differ by noise only, 20 slices (tied, interval covers 0);
    variant noisy_offset: e = b + 0.5 dB + noise, 24 slices of 8 subjects (resolved over subjects);
    variant few: g = b + 0.5 dB on 12 slices of 3 subjects (too few subjects to resolve);
    variant sweep: flow_combined over 4 lam x 3 beta, cg_sense over 4 lam and auto, cs_wavelet over
    2 lam (3 slices each); and a train run."""
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
    base24 = np.round(30 + 3 * rng.random(24), 4)
    subjects = [k // 3 for k in range(24)]
    fake_run(runs / "e", "e", "noisy_offset", base24 + 0.5 + rng.normal(0, 0.2, 24), subjects=subjects)
    fake_run(runs / "f", "b", "noisy_offset", base24, subjects=subjects, accel=4.0, summary_extra={"mask": "lines"})
    few = [k // 4 for k in range(12)]
    fake_run(runs / "g", "g", "few", base24[:12] + 0.5, subjects=few)
    fake_run(runs / "h", "b", "few", base24[:12], subjects=few)
    for i, lam in enumerate(LAMS):
        for j, beta in enumerate(BETAS):
            peak = 35 - 40 * (np.log10(lam) + 3.5) ** 2 / 10 + 10 * beta
            fake_run(runs / f"flow_{i}{j}", "flow_combined", "sweep", base3 + peak, {"lam": lam, "beta": beta})
        fake_run(runs / f"cg_{i}", "cg_sense", "sweep", base3 + 30 + i, {"lam": lam})
    chosen = {"chosen": {"lam": {"mean": 2e-3, "per_slice": [1e-3, 2e-3, 3e-3]}}}
    fake_run(runs / "cg_auto", "cg_sense", "sweep", base3 + 32.5, {"lam": "auto"}, summary_extra=chosen)
    for i, lam in enumerate((0.001, 0.01)):
        fake_run(runs / f"cs_{i}", "cs_wavelet", "sweep", base3 + 29 + i, {"lam": lam})
    fake_train_run(root / "train" / "run1")  # runs= may mix train and reconstruct runs
    res = run_cli(
        "evaluate",
        f"runs=[{runs},{root / 'train'}]",
        "baseline=b",
        "figure_slices=1",
        "hydra.run.dir=out",
        cwd=root,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    return root / "out", res


def test_known_answers(evaluated):
    out, _ = evaluated
    rows = {(r["variant"], r["method"]): r for r in read_csv(out / "results.csv")}
    assert rows[("offset", "a")]["best"] == "*" and rows[("offset", "b")]["best"] == ""
    assert rows[("noise", "c")]["best"] == rows[("noise", "d")]["best"] == "tied"
    assert rows[("noisy_offset", "e")]["best"] == "*" and rows[("noisy_offset", "e")]["unit"] == "subjects"
    assert rows[("few", "g")]["best"] == rows[("few", "b")]["best"] == "too few subjects"
    assert rows[("offset", "a")]["slices"] == "8" and rows[("offset", "a")]["subjects"] == ""
    assert rows[("noisy_offset", "e")]["subjects"] == "8" and float(rows[("noisy_offset", "b")]["R"]) == 4.0
    assert rows[("noisy_offset", "b")]["mask"] == "lines" and rows[("offset", "a")]["mask"] == ""
    assert float(rows[("offset", "a")]["seconds_mean"]) == 0.25 and "seconds_std" not in rows[("offset", "a")]
    assert {r["level"] for r in rows.values()} == {"slice"} and {r["failed"] for r in rows.values()} == {"0"}
    comps = {(c["variant"], c["method"], c["reference"], c["metric"]): c for c in read_csv(out / "comparisons.csv")}
    offset = comps[("offset", "b", "best", "psnr")]
    assert offset["resolved"] == "true" and float(offset["mean_diff"]) == pytest.approx(-0.5, abs=1e-3)
    assert float(offset["ci_low"]) == pytest.approx(-0.5, abs=1e-3) == float(offset["ci_high"])
    assert float(offset["p"]) == pytest.approx(2 / 2**8) and (offset["unit"], offset["units"]) == ("slices", "8")
    (noise,) = [c for c in comps.values() if c["variant"] == "noise" and c["metric"] == "psnr"]
    assert noise["decision"] == "not resolved" and float(noise["ci_low"]) < 0 < float(noise["ci_high"])
    noisy = comps[("noisy_offset", "b", "best", "psnr")]
    assert noisy["resolved"] == "true" and (noisy["unit"], noisy["units"]) == ("subjects", "8")
    assert float(noisy["ci_low"]) <= -0.5 <= float(noisy["ci_high"]) and float(noisy["p"]) == pytest.approx(2 / 2**8)
    few = comps[("few", "b", "best", "psnr")]
    assert few["decision"] == "too few subjects" and float(few["p"]) == pytest.approx(2 / 2**3)
    # baseline=b: the other methods against b, the same difference with the sign seen from them
    assert float(comps[("offset", "a", "baseline", "psnr")]["mean_diff"]) == pytest.approx(0.5, abs=1e-3)
    assert comps[("offset", "a", "baseline", "nrmse")]["resolved"] == "true"
    table = (out / "results.md").read_text()
    assert (
        "| slices | subjects | failed | R | mask |" in table
        and "| 4.00 | lines |" in table
        and "Paired differences" in table
        and "tied" in table
    )
    assert table.count("Level: slice") >= 5  # every table names its level


def test_sweep_plots(evaluated):
    out, _ = evaluated
    names = sorted(p.name for p in out.glob("sweep_*.png"))
    assert names == [
        "sweep_flow_combined_sweep_lam-flow_combined_x_beta.png",  # lam x beta heat map
        "sweep_lam-A-H-A.png",  # cg_sense's lam: units of A^H A
        "sweep_lam-x-max-A-H-y.png",  # cs_wavelet's lam: relative to max|A^H y|, another plot
    ]
    assert all((out / n).stat().st_size > 20_000 for n in names)
    rows = read_csv(out / "results.csv")
    assert {"lam [A^H A]", "lam [x max|A^H y|]", "lam [flow_combined]", "beta"} <= set(rows[0])
    flow = [r for r in rows if r["method"] == "flow_combined"]
    best = max(flow, key=lambda r: float(r["psnr_mean"]))
    assert (float(best["lam [flow_combined]"]), float(best["beta"])) == (3e-4, 1e-4)
    assert axis_scale(LAMS) == "log" and axis_scale([0, 1e-5, 1e-3]) == "symlog" and axis_scale([1, 2, 5]) == "linear"
    assert axis_scale([-1, 1, 100]) == "linear"


def test_report_is_self_contained(evaluated):
    out, res = evaluated
    page = (out / "report.html").read_text()
    # summary, 5 comparison figures (one per variant), 3 sweep plots, training curves
    assert page.count("data:image/png;base64,") == 10
    assert "<script" not in page and 'src="http' not in page and "href=" not in page
    for text in ("Summary", "Paired differences", "Sweeps", "Comparison figures", "Training curves", "tied"):
        assert text in page
    assert "27 reconstruct runs, 1 train run<" in page and "1 train runs" not in page
    assert "auto chose lam 0.002 (per slice 0.001-0.003)" in page  # the runs covered, with what auto chose
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
    top = img[:1200]  # the summary plot is at the top: blue points of the forest plot
    blue = (top[..., 2] > 0.6) & (top[..., 0] < 0.3)
    assert blue.sum() > 200


def fake_train_run(path: Path, trains: str | None = "dbp + unet (supervised, sse loss)") -> Path:
    """A train run dir: .hydra/config.yaml, a metrics.csv of 10 epochs and training.json saying
    what it `trains` (None: none)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(
        "method:\n  name: dbp\nmodel:\n  name: unet\ntrain:\n  supervised: true\n"
    )
    lines = ["epoch,step,train_loss,val_nrmse,val_psnr,val_ssim,lr"]
    lines += [f"{e},{3 * e},{1 / e:.4g},{0.3 / e:.4g},{25 + e:.4g},{0.5 + e / 40:.4g},0.001" for e in range(1, 11)]
    (path / "metrics.csv").write_text("\n".join(lines) + "\n")
    if trains is not None:
        (path / "training.json").write_text(json.dumps({"trains": trains}))
    return path


def test_training_curves_of_a_train_run(tmp_path):
    fake_train_run(tmp_path / "train" / "run1")
    fake_train_run(tmp_path / "train" / "run2", "unet_image + fastmri_unet (supervised, l1 loss)")
    fake_train_run(tmp_path / "train" / "run3", None)  # not a run of this mrirecon: listed as skipped
    res = run_cli("evaluate", f"runs={tmp_path / 'train'}", "hydra.run.dir=out", cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    assert (out / "training_curves.png").stat().st_size > 10_000 and not (out / "results.csv").exists()
    page = (out / "report.html").read_text()
    assert "0 reconstruct runs, 2 train runs" in page
    assert "Training curves" in page and "dbp + unet (supervised, sse loss) (train/run1)" in page
    assert f"{tmp_path / 'train' / 'run3'}: no training.json" in page
    assert "unet_image + fastmri_unet (supervised, l1 loss) (train/run2)" in page and page.count("data:image/png") == 1


def test_damaged_runs_are_skipped_and_listed(tmp_path):
    runs = tmp_path / "runs"
    psnr = np.array([30.0, 31.0, 32.0])
    fake_run(runs / "ok_cg", "cg_sense", "full", psnr + 1)
    fake_run(runs / "ok_zf", "zero_filled", "full", psnr)
    (fake_run(runs / "unfinished", "cs_tv", "full", psnr) / "summary.json").unlink()
    cut = fake_run(runs / "cut", "cs_wavelet", "full", psnr)
    (cut / "metrics.csv").write_text((cut / "metrics.csv").read_text()[:-12])
    (fake_run(runs / "corrupt", "cg_sense", "quarter", psnr) / "recon.h5").write_bytes(b"garbage" * 20)
    res = run_cli("evaluate", f"runs={runs}", "hydra.run.dir=out", cwd=tmp_path, timeout=120)  # one path, no brackets
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Skipped runs" in page
    for name, reason in (
        ("unfinished", "metrics.csv without summary.json"),
        ("cut", "metrics.csv: the last line is incomplete"),
        ("corrupt", "recon.h5 is unreadable"),
    ):
        assert f"{runs / name}: {reason}" in page, name
        assert f"skipped {runs / name}" in res.stdout  # and in the log
    assert {r["method"] for r in read_csv(tmp_path / "out" / "results.csv")} == {"cg_sense", "zero_filled"}
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}
    res = run_cli("evaluate", f"runs={runs}", "strict=true", "hydra.run.dir=out", cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "strict=true" in res.stderr
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if p.is_file()}
    assert {k: v for k, v in after.items() if k != "evaluate.log"} == {
        k: v for k, v in before.items() if k != "evaluate.log"
    }
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".staged")]


def test_reusing_an_evaluate_folder_leaves_no_stale_outputs(tmp_path):
    psnr = np.array([30.0, 31.0, 32.0])
    for lam in (0.01, 0.1):
        fake_run(tmp_path / "sweep" / str(lam), "cg_sense", "full", psnr + lam, {"lam": lam})
    fake_run(tmp_path / "single" / "zf", "zero_filled", "full", psnr)
    assert run_cli("evaluate", f"runs={tmp_path / 'sweep'}", "hydra.run.dir=out", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out" / "sweep_lam.png").is_file()
    res = run_cli("evaluate", f"runs={tmp_path / 'single'}", "hydra.run.dir=out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not list((tmp_path / "out").glob("sweep_*.png")) and "sweep_" not in res.stderr
    assert [r["method"] for r in read_csv(tmp_path / "out" / "results.csv")] == ["zero_filled"]


def fastmri_center_crop(data: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """fastMRI's fastmri.data.transforms.center_crop (facebookresearch/fastMRI, MIT License), copied."""
    w_from = (data.shape[-2] - shape[0]) // 2
    h_from = (data.shape[-1] - shape[1]) // 2
    return data[..., w_from : w_from + shape[0], h_from : h_from + shape[1]]


def test_volume_metrics_on_a_fastmri_file_are_fastmris(tmp_path):
    """The real 4-coil phantom scan (its own thermal noise) laid out as a fastMRI file of two
    slices with reconstruction_rss and a non-square recon size 256x200: preprocess, cg_sense,
    then evaluate level=volume gives fastMRI evaluate.py's PSNR and SSIM of the same reconstruction
    against reconstruction_rss (the file's own array, not mrirecon's copy): with crop=fastmri its
    200x200 crop, without it the whole 256x200; reference=sense is another number."""
    from formats_helpers import centred_ifftn, write_fastmri
    from helpers import ASSETS
    from test_metrics import fastmri_volume

    full = np.load(ASSETS / "phantom_4coil_gre_256.npy")
    coils = centred_ifftn(np.stack([full, np.swapaxes(full, -1, -2)]), (-2, -1)).astype(np.complex64)
    source = tmp_path / "file_phantom.h5"
    write_fastmri(source, coils, (256, 200))
    steps = [
        ("preprocess", "data=full", f"data.source={source}", "data.path=proc.h5", "data.mask=fastmri_random"),
        ("reconstruct", "method=cg_sense", "data=full", "data.path=proc.h5", "data.split=all", "hydra.run.dir=rec"),
        ("evaluate", "runs=rec", "level=volume", "figure_slices=0", "hydra.run.dir=whole"),
        ("evaluate", "runs=rec", "level=volume", "crop=fastmri", "figure_slices=0", "hydra.run.dir=cropped"),
        ("evaluate", "runs=rec", "level=volume", "reference=sense", "figure_slices=0", "hydra.run.dir=sense"),
    ]
    for step in steps:
        res = run_cli(*step, cwd=tmp_path, timeout=300)
        assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "rec" / "recon.h5", "r") as h5:
        recon = np.abs(h5["recon"][()])[np.argsort(h5["slices"][()])]
    with h5py.File(source, "r") as f:
        target = f["reconstruction_rss"][()]
    square = (target.shape[-1], target.shape[-1])  # fastMRI's evaluate.py
    expected = {
        "whole": fastmri_volume(target, recon),
        "cropped": fastmri_volume(fastmri_center_crop(target, square), fastmri_center_crop(recon, square)),
    }
    for name, fastmri in expected.items():
        row = read_csv(tmp_path / name / "results.csv")[0]
        print(f"{name}: evaluate PSNR {row['psnr_mean']} SSIM {row['ssim_mean']}; fastMRI {fastmri}")
        assert row["reference_image"] == ("rss" if name == "whole" else "rss, fastMRI crop")
        assert abs(float(row["psnr_mean"]) - fastmri["psnr"]) < 0.05, (name, row["psnr_mean"], fastmri)
        assert abs(float(row["ssim_mean"]) - fastmri["ssim"]) < 0.01, (name, row["ssim_mean"], fastmri)
    sense = read_csv(tmp_path / "sense" / "results.csv")[0]
    print(f"reference=sense: PSNR {sense['psnr_mean']} SSIM {sense['ssim_mean']}")
    assert sense["reference_image"] == "sense"
    assert abs(float(sense["ssim_mean"]) - expected["whole"]["ssim"]) > 0.01  # the reference matters
