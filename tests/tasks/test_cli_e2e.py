"""End-to-end CLI runs on the embedded sample: preprocess -> reconstruct -> evaluate."""

from __future__ import annotations

import csv
import json
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import SAMPLE_VARIANTS
from helpers import dft2c, run_cli, tiny_arrays, write_h5
from hydra import compose, initialize_config_dir

from mrirecon.cli.app import config_dir
from mrirecon.data.formats.sample import SampleSource
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.tasks import preprocess


@pytest.fixture(scope="module")
def sweep(sample_dir: Path) -> Path:
    """zero_filled and cg_sense on every sample variant, as one multirun."""
    res = run_cli(
        "reconstruct",
        "-m",
        "method=zero_filled,cg_sense",
        f"data={','.join(SAMPLE_VARIANTS)}",
        "hydra.sweep.dir=runs/sweep",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    return sample_dir / "runs" / "sweep"


def _summaries(sweep: Path) -> dict[tuple[str, str], dict]:
    out = {}
    for p in sweep.glob("*/summary.json"):
        s = json.loads(p.read_text())
        out[(s["variant"], s["method"])] = s
    return out


def test_preprocessed_files(sample_dir):
    for variant in SAMPLE_VARIANTS:
        f = DeepInPyFile(sample_dir / "outputs" / "data" / f"{variant}.h5")
        assert f.num_slices == 15 and f.num_coils == 8
        assert f.shape == ((80, 64) if "quarter" in variant else (320, 256))
        splits = f.splits()
        assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(15))
        assert len(splits["test"]) == 3 and f.attrs["variant"] == variant and "mrirecon_version" in f.attrs
        if variant.startswith("4bit"):
            assert len(np.unique(f.read(0).img.real)) <= 16
        assert f.subjects().tolist() == list(range(15))
    full = DeepInPyFile(sample_dir / "outputs" / "data" / "full.h5").read(5)
    assert np.array_equal(full.ksp, SampleSource().read(5).ksp)  # variant `full` keeps k-space untouched


def test_reconstruct_outputs(sweep):
    run = next(p.parent for p in sweep.glob("*/summary.json") if json.loads(p.read_text())["method"] == "cg_sense")
    with open(run / "metrics.csv", newline="") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "slice,subject,volume,method,nrmse,psnr,ssim,seconds"
    rows = list(csv.DictReader(lines))
    assert [int(r["slice"]) for r in rows] == [12, 13, 14] and {r["method"] for r in rows} == {"cg_sense"}
    assert [r["volume"] for r in rows] == [r["subject"] for r in rows]  # the sample: a volume per knee
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model_error"]["fires"] == [False] * 3  # the sample's maps explain its data
    assert summary["num_slices"] == 3 and "data_range" in summary["metric_convention"]
    assert summary["param_units"] == {"lam": "A^H A"}  # evaluate keeps its lam apart from the CS methods'
    assert summary["mean"]["nrmse"] == pytest.approx(np.mean([float(r["nrmse"]) for r in rows]), rel=1e-4)
    with h5py.File(run / "recon.h5") as h5:
        assert h5["recon"].shape[0] == 3 and h5["slices"][()].tolist() == [12, 13, 14]
    assert len(list((run / "figures").glob("*.png"))) == 3
    assert not list(run.rglob("*.tmp"))


def test_cg_sense_beats_zero_filled_on_every_variant(sweep):
    s = _summaries(sweep)
    for variant in SAMPLE_VARIANTS:
        cg, zf = s[(variant, "cg_sense")]["mean"], s[(variant, "zero_filled")]["mean"]
        assert cg["nrmse"] < zf["nrmse"] and cg["psnr"] > zf["psnr"], variant  # noisy data: lam=auto, small gain
        chosen = s[(variant, "cg_sense")]["chosen"]["lam"]
        assert len(chosen["per_slice"]) == 3 and 1e-4 < chosen["mean"] < 10
        rule = s[(variant, "cg_sense")]["chosen"]["rule"]  # which rule chose each slice's lam
        assert len(rule["per_slice"]) == 3 and sum(rule["counts"].values()) == 3
        assert set(rule["counts"]) <= {"noise", "residual"}


def test_summary_reports_the_noise(sweep, sample_dir):
    s = _summaries(sweep)
    for variant in SAMPLE_VARIANTS:
        noise = s[(variant, "zero_filled")]["noise_std"]
        assert len(noise["per_slice"]) == 3 and "simulated" in noise["definition"]
        f = DeepInPyFile(sample_dir / "outputs" / "data" / f"{variant}.h5")
        assert noise["per_slice"] == pytest.approx([f.read(i).noise_std for i in (12, 13, 14)], rel=1e-6)
        peak = [float(np.abs(f.read(i).img).max()) for i in (12, 13, 14)]
        # the sample's peak SNR is kept in every variant: noise std = 0.018 x the image maximum
        assert noise["per_slice"] == pytest.approx([0.018 * p for p in peak], rel=1e-4), variant


def test_evaluate_tables_and_figure(sweep, sample_dir):
    res = run_cli("evaluate", f"runs=[{sweep}]", "hydra.run.dir=runs/eval", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    out = sample_dir / "runs" / "eval"
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * len(SAMPLE_VARIANTS)
    assert {
        "variant",
        "method",
        "slices",
        "subjects",
        "R",
        "nrmse_mean",
        "nrmse_std",
        "psnr_mean",
        "ssim_mean",
        "seconds_mean",
    } <= set(rows[0])
    assert {(r["slices"], r["subjects"]) for r in rows} == {("3", "3")} and all(float(r["R"]) > 1 for r in rows)
    # cg_sense first (best mean PSNR) on every variant; 3 test subjects can never resolve a difference
    # (smallest sign-flip p = 2/2^3 = 0.25), and the table says so instead of "tied" or "*"
    first = {}
    for r in rows:
        first.setdefault(r["variant"], r)
    assert {v: (r["method"], r["best"]) for v, r in first.items()} == {
        v: ("cg_sense", "too few subjects") for v in SAMPLE_VARIANTS
    }
    assert all(Path(r["data"]).is_absolute() and r["data_id"] and r["seed"] == "723" for r in rows)
    assert "| method | slices | subjects | failed |" in (out / "results.md").read_text()
    figures = sorted(out.glob("comparison_*.png"))  # one per variant
    assert len(figures) == len(SAMPLE_VARIANTS) and all(f.stat().st_size > 10_000 for f in figures)
    assert (out / "comparisons.csv").is_file() and "data:image/png;base64," in (out / "report.html").read_text()
    assert "cg_sense" in res.stdout  # the rich table
    # level=volume from recon.h5's images: the sample's volumes are one slice each, so the
    # fastMRI per-volume metrics equal metrics.csv's per-slice ones (recon.h5 holds those images)
    res = run_cli("evaluate", f"runs={sweep}", "level=volume", "hydra.run.dir=runs/eval_volume", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    with open(sample_dir / "runs" / "eval_volume" / "results.csv", newline="") as fh:
        volumes = {(r["variant"], r["method"]): r for r in csv.DictReader(fh)}
    for r in rows:
        v = volumes[(r["variant"], r["method"])]
        assert v["level"] == "volume" and v["unit"] == "subjects" and v["subjects"] == "3"
        for name in ("nrmse_mean", "psnr_mean", "ssim_mean"):
            assert float(v[name]) == pytest.approx(float(r[name]), rel=1e-4), (r["variant"], r["method"], name)
    assert "Level: volume" in (sample_dir / "runs" / "eval_volume" / "results.md").read_text()


def test_sweep_parameters_become_columns(sample_dir):
    res = run_cli(
        "reconstruct",
        "-m",
        "method=cg_sense",
        "data=4bit_quarter",
        "method.lam=0.001,0.1",
        "method.max_iter=5",
        "hydra.sweep.dir=runs/lam",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    res = run_cli("evaluate", "runs=[runs/lam]", "hydra.run.dir=runs/lam_eval", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    with open(sample_dir / "runs" / "lam_eval" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(float(r["lam"]) for r in rows) == [0.001, 0.1] and "max_iter" not in rows[0]


def test_reconstruct_single_run_with_split_all(sample_dir):
    res = run_cli(
        "reconstruct",
        "method=zero_filled",
        "data=8bit_quarter",
        "data.split=all",
        "figures=0",
        "hydra.run.dir=runs/all",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    with open(sample_dir / "runs" / "all" / "metrics.csv") as fh:
        assert len(fh.read().splitlines()) == 16
    assert not (sample_dir / "runs" / "all" / "figures").exists()


def test_preprocess_user_file_with_transpose(tmp_path):
    src = write_h5(tmp_path / "raw.h5", tiny_arrays(n=5, shape=(24, 32)))
    res = run_cli(
        "preprocess",
        "data=8bit_full",
        f"data.source={src}",
        "data.transpose=true",
        f"data.path={tmp_path / 'p.h5'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    f = DeepInPyFile(tmp_path / "p.h5")
    assert f.shape == (32, 24) and f.attrs["source"] == str(src)
    assert len(f.split_indices("train")) + len(f.split_indices("val")) + len(f.split_indices("test")) == 5


def _peak_bytes(cfg) -> int:
    tracemalloc.start()
    preprocess.run(cfg)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_preprocess_memory_does_not_grow_with_slices(tmp_path):
    peaks = []
    for n in (4, 32):
        src = write_h5(tmp_path / f"raw{n}.h5", tiny_arrays(n=n, coils=4, shape=(64, 48)))
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(
                "preprocess", [f"data.source={src}", f"data.path={tmp_path / f'out{n}.h5'}", "data=8bit_quarter"]
            )
        peaks.append(_peak_bytes(cfg))
    slice_bytes = 4 * 64 * 48 * 8 * 2  # maps + ksp of one slice
    assert peaks[1] < peaks[0] + 4 * slice_bytes, peaks


def test_help_lists_subcommands(tmp_path):
    for args in ([], ["--help"]):
        res = run_cli(*args, cwd=tmp_path)
        assert res.returncode == 0
        for sub in ("preprocess", "train", "reconstruct", "evaluate"):
            assert sub in res.stdout


def test_subjects_splits_and_noise_of_a_user_file(tmp_path):
    source = write_h5(tmp_path / "volumes.h5", tiny_arrays(n=12))  # 4 subjects of 3 slices
    res = run_cli(
        "preprocess",
        "data=8bit_full",
        f"data.source={source}",
        "data.slices_per_subject=3",
        "data.path=out.h5",
        "data.noise=0.05",
        "hydra.run.dir=run",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    f = DeepInPyFile(tmp_path / "out.h5")
    assert f.subjects().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert {k: v.tolist() for k, v in f.splits().items()} == {
        "train": [0, 1, 2, 3, 4, 5],
        "val": [6, 7, 8],
        "test": [9, 10, 11],
    }
    s = f.read(4)  # regenerated k-space: forward model of the processed image + noise 0.05 x its maximum
    noise = s.ksp - dft2c(s.maps * s.img)  # explicit DFT matrices (tests/helpers.py)
    assert s.noise_std == pytest.approx(0.05 * np.abs(s.img).max(), rel=1e-5)
    assert np.sqrt(np.mean(np.abs(noise) ** 2)) == pytest.approx(s.noise_std, rel=0.1)
    res = run_cli(
        "preprocess",
        "data=8bit_full",
        f"data.source={source}",
        "data.path=clean.h5",
        "data.noise=0",
        "hydra.run.dir=run2",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    clean = DeepInPyFile(tmp_path / "clean.h5").read(4)
    assert clean.noise_std == 0 and np.allclose(clean.ksp, dft2c(clean.maps * clean.img), atol=1e-5)
    assert DeepInPyFile(tmp_path / "clean.h5").subjects().tolist() == list(range(12))  # one per slice


def test_evaluate_never_pools_splits_or_files(sample_dir):
    for split in ("val", "test"):
        res = run_cli(
            "reconstruct",
            "method=zero_filled",
            "data=8bit_quarter",
            f"data.split={split}",
            "figures=0",
            f"hydra.run.dir=runs/pool/{split}",
            cwd=sample_dir,
        )
        assert res.returncode == 0, res.stderr
    other = sample_dir / "runs" / "pool_other.h5"  # another file of the same variant: other data
    other.write_bytes((sample_dir / "outputs" / "data" / "8bit_quarter.h5").read_bytes())
    with h5py.File(other, "a") as f:
        f.attrs["source_id"] = "another acquisition"
    res = run_cli(
        "reconstruct",
        "method=zero_filled",
        "data=8bit_quarter",
        f"data.path={other}",
        "figures=0",
        "hydra.run.dir=runs/pool/other_file",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    res = run_cli(  # the same file named by its absolute path: the same data, one row
        "reconstruct",
        "method=zero_filled",
        "data=8bit_quarter",
        f"data.path={sample_dir / 'outputs' / 'data' / '8bit_quarter.h5'}",
        "figures=0",
        "hydra.run.dir=runs/pool/absolute",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    res = run_cli("evaluate", "runs=[runs/pool]", "hydra.run.dir=runs/pool_eval", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    with open(sample_dir / "runs" / "pool_eval" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((Path(r["data"]).name, r["split"], r["slices"], r["runs"]) for r in rows) == [
        ("8bit_quarter.h5", "test", "3", "2"),
        ("8bit_quarter.h5", "val", "2", "1"),
        ("pool_other.h5", "test", "3", "1"),
    ]


@pytest.mark.slow
def test_reconstruct_warns_of_model_error_and_records_it(tmp_path):
    """The real phantom shipped with maps cut by 12 pixels: reconstruct prints one model-error
    warning naming the remedy, records the check per slice in summary.json, and lam=auto took its
    model rule; preprocessed with data.maps=espirit the same scan passes the check."""
    from test_preprocess import phantom_with_cut_maps

    source, _ = phantom_with_cut_maps(tmp_path)
    for maps, name in (("source", "cut"), ("espirit", "remedy")):
        steps = [
            ("preprocess", "data=full", f"data.source={source}", f"data.maps={maps}", f"data.path={name}.h5"),
            (
                "reconstruct",
                "method=cg_sense",
                "data=full",
                f"data.path={name}.h5",
                "data.split=all",
                f"hydra.run.dir={name}",
            ),
        ]
        for step in steps:
            res = run_cli(*step, cwd=tmp_path)
            assert res.returncode == 0, res.stderr
        warned = [line for line in (res.stdout + res.stderr).splitlines() if "model error" in line]
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        if name == "cut":
            assert len(warned) == 1 and "data.maps=espirit" in warned[0], res.stdout
            assert summary["model_error"]["fires"] == [True] and summary["model_error"]["per_slice"][0] > 4.5
            assert summary["chosen"]["rule"]["counts"] == {"model": 1}
        else:
            assert not warned and summary["model_error"]["fires"] == [False]
            assert summary["chosen"]["rule"]["counts"] != {"model": 1}
