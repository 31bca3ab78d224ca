"""End-to-end `mrirecon train` and `reconstruct checkpoint=...` on the embedded sample."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import one_error_line, run_cli

TINY = ["model.channels=8", "model.num_blocks=1", "method.num_unrolls=2", "method.cg_max_iter=4", "train.batch_size=5"]


@pytest.fixture(scope="module")
def trained(sample_dir: Path) -> Path:
    res = run_cli("train", "data=4bit_quarter", *TINY, "train.epochs=2", "hydra.run.dir=runs/train", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    return sample_dir / "runs" / "train"


def test_train_outputs(trained, sample_dir):
    """Checkpoints, TensorBoard and metrics.csv; the validation NRMSE logged for the epoch that
    best.pt holds is what `reconstruct` gets from best.pt on the val split."""
    assert (trained / "checkpoints" / "last.pt").is_file() and (trained / "checkpoints" / "best.pt").is_file()
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))
    with open(trained / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {r["best_by"] for r in rows} == {"val_nrmse"}
    ckpt = torch.load(trained / "checkpoints" / "last.pt", weights_only=True)  # tensors and plain types only
    assert ckpt["method"] == "dbp" and ckpt["config"]["model"]["channels"] == 8
    assert ckpt["state"]["epoch"] == 2 and "optimizer" in ckpt and ckpt["state"]["best_by"] == "val_nrmse"
    assert set(ckpt["splits"]["train"]).isdisjoint(ckpt["splits"]["val"])
    best = torch.load(trained / "checkpoints" / "best.pt", weights_only=True)["state"]
    logged = float(rows[best["epoch"] - 1]["val_nrmse"])
    assert logged == pytest.approx(best["best"], rel=1e-5) and logged == min(float(r["val_nrmse"]) for r in rows)
    res = run_cli(
        "reconstruct",
        "method=dbp",
        "data=4bit_quarter",
        "data.split=val",
        f"checkpoint={trained}/checkpoints/best.pt",
        "figures=0",
        "hydra.run.dir=runs/rec_val",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    with open(sample_dir / "runs" / "rec_val" / "metrics.csv", newline="") as fh:
        val = [float(r["nrmse"]) for r in csv.DictReader(fh)]
    assert len(val) == 2 and sum(val) / len(val) == pytest.approx(logged, rel=1e-4)


def test_resume_continues_the_run(trained, sample_dir):
    res = run_cli(
        "train",
        "data=4bit_quarter",
        *TINY,
        "train.epochs=3",
        "train.resume=true",
        f"hydra.run.dir={trained}",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    with open(trained / "metrics.csv", newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3"]


def test_reconstruct_from_checkpoint_without_repeating_overrides(trained, sample_dir):
    res = run_cli(
        "reconstruct",
        "method=dbp",
        "data=4bit_quarter",
        f"checkpoint={trained}/checkpoints/best.pt",
        "hydra.run.dir=runs/rec_dbp",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((sample_dir / "runs" / "rec_dbp" / "summary.json").read_text())
    assert summary["method"] == "dbp" and summary["method_config"]["model"] == "resnet"
    assert summary["method_config"]["num_unrolls"] == 2 and summary["num_slices"] == 3


def test_reconstruct_applies_the_inference_keys_of_a_checkpoint_and_refuses_the_others(trained, sample_dir):
    """method.num_unrolls and method.stdev change a trained DBP's reconstruction (shared weights)
    and are recorded; a key its training fixed is refused naming the checkpoint's value (the old
    code ignored both, while summary.json listed them)."""
    best = f"{trained}/checkpoints/best.pt"
    runs = {}
    for name, extra in (("as_trained", []), ("changed", ["method.num_unrolls=1", "method.stdev=0"])):
        res = run_cli(
            "reconstruct", "method=dbp", "data=4bit_quarter", f"checkpoint={best}", "figures=0", *extra,
            f"hydra.run.dir=runs/inference_{name}", cwd=sample_dir,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        runs[name] = json.loads((sample_dir / "runs" / f"inference_{name}" / "summary.json").read_text())
    assert runs["as_trained"]["method_config"]["num_unrolls"] == 2  # the checkpoint's own
    assert runs["changed"]["method_config"]["num_unrolls"] == 1 and runs["changed"]["method_config"]["stdev"] == 0
    assert runs["changed"]["mean"]["nrmse"] != runs["as_trained"]["mean"]["nrmse"]
    res = run_cli(
        "reconstruct", "method=dbp", "data=4bit_quarter", f"checkpoint={best}", "method.l2lam_init=0.5",
        "hydra.run.dir=runs/inference_refused", cwd=sample_dir,
    )  # fmt: skip
    assert "method.l2lam_init: 0.5, but the checkpoint's weights were trained with l2lam_init=2.0" in one_error_line(
        res
    )


def test_reconstruct_refuses_the_training_subjects(trained, sample_dir, tmp_path):
    best = f"{trained}/checkpoints/best.pt"
    for data, split in (("4bit_quarter", "train"), ("4bit_quarter", "all"), ("8bit_quarter", "train")):
        res = run_cli(
            "reconstruct",
            "method=dbp",
            f"data={data}",
            f"data.split={split}",
            f"checkpoint={best}",
            f"hydra.run.dir={tmp_path / 'run'}",
            cwd=sample_dir,
        )
        line = one_error_line(res)
        assert "belong to subjects" in line and "allow_train_slices=true" in line and f"data.split={split}" in line
        assert not (tmp_path / "run").exists()
    res = run_cli(
        "reconstruct",
        "method=dbp",
        "data=8bit_quarter",
        "data.split=train",
        f"checkpoint={best}",
        "allow_train_slices=true",
        "figures=0",
        f"hydra.run.dir={tmp_path / 'allowed'}",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    log = res.stdout + res.stderr
    assert "not a test of generalisation" in log and "not on" in log  # another file: warned
    res = run_cli(
        "reconstruct",
        "method=dbp",
        "data=4bit_quarter",
        "data.split=val",
        f"checkpoint={best}",
        "figures=0",
        f"hydra.run.dir={tmp_path / 'val'}",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    assert "the val split the checkpoint was selected on" in res.stdout + res.stderr  # best.pt: chosen on val
    info = json.loads((tmp_path / "val" / "summary.json").read_text())["checkpoint_info"]
    assert info["selected_on"] == "val" and info["model_config_name"] == "resnet" and info["path"] == str(Path(best))
    ckpt = torch.load(best, weights_only=False)
    assert ckpt["train_subjects"] == list(range(10)) and ckpt["source_id"] == "sample"


def test_checkpoint_works_at_another_size(trained, sample_dir):
    res = run_cli(
        "reconstruct",
        "method=dbp",
        "data=8bit_full",
        f"checkpoint={trained}/checkpoints/best.pt",
        "figures=0",
        "hydra.run.dir=runs/rec_full",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    with open(sample_dir / "runs" / "rec_full" / "metrics.csv") as fh:
        assert len(fh.read().splitlines()) == 4


def test_unsupervised_modl_unet_trains_and_selects_without_the_reference(sample_dir):
    """Complex data, random phase and flips on (measured samples only): best.pt is chosen by the
    held-out k-space error, which metrics.csv and the checkpoint record; NRMSE is still logged."""
    res = run_cli(
        "train",
        "method=modl",
        "model=unet",
        "model.base_channels=4",
        "data=quarter",
        "train.loss=ssdu",
        "train.flip=true",
        "train.epochs=3",
        "method.num_unrolls=2",
        "method.cg_max_iter=4",
        "train.batch_size=5",
        "hydra.run.dir=runs/train_unsup",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    run = sample_dir / "runs" / "train_unsup"
    assert "loss ssdu: holdout 0.4, holdout_center 0.1; augmented: flip, random_phase" in res.stdout + res.stderr
    with open(run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["best_by"] for r in rows} == {"val_kspace_nmse"} and all(float(r["val_nrmse"]) > 0 for r in rows)
    scores = [float(r["val_kspace_nmse"]) for r in rows]
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=False)
    assert best["state"]["best_by"] == "val_kspace_nmse" and 0 < min(scores) < 1
    assert best["state"]["epoch"] == 1 + scores.index(min(scores))


def test_checkpoint_errors(trained, sample_dir, tmp_path):
    best = f"{trained}/checkpoints/best.pt"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(Path(best).read_bytes()[:1000])
    cases = [
        (["method=modl", f"checkpoint={best}"], "dbp"),
        (["method=dbp", f"checkpoint={corrupt}"], "corrupt.pt"),
        (["method=dbp", f"checkpoint={tmp_path / 'missing.pt'}"], "missing.pt"),
        (["method=dbp"], "checkpoint"),
        (["method=cg_sense", f"checkpoint={best}"], "checkpoint"),
    ]
    for args, named in cases:
        res = run_cli("reconstruct", "data=4bit_quarter", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=sample_dir)
        assert named in one_error_line(res)
        assert not (tmp_path / "run").exists()


def test_train_errors(sample_dir, tmp_path):
    cases = [
        (["method=cg_sense"], "method=cg_sense"),
        (["train.resume=true"], "train.resume"),
        (["train.epochs=0"], "train.epochs"),
        (["data.bits=5"], "data.bits"),
        (["train.lr=-1"], "train.lr"),
        (["model=foo"], "model"),
        (["method.num_unrolls=0"], "method.num_unrolls"),
        (["train.loss=ssdu", "train.random_masks=true"], "train.random_masks: loss ssdu reads measured samples"),
        (["train.loss=bits_per_dim"], "train.loss: bits_per_dim is no loss of a reconstruction method"),
        (["train.loss=l2"], "train.loss: unknown loss 'l2'"),
        (["train.supervised=false"], "train.supervised: unknown key"),  # replaced by train.loss=ssdu
        (["train.cosine_lr=true", "train.step_lr={step_size:2,gamma:0.5}"], "train.cosine_lr: true, and"),
        # keys this run would not read (the old code: exit 0, ignored)
        (["train.holdout=0.2"], "train.holdout: not read by method=dbp"),
        (["train.sample_temperature=0.5"], "train.sample_temperature: not read by method=dbp"),
        (["train.random_phase=true"], "train.random_phase: not read"),  # 4-bit images are real
        (["method=unet_image", "model.channels=8"], "model.channels: unknown key (model fastmri_unet has: chans"),
        (["method=unet_image", "method.net.chans=8"], "method.net.chans: unknown key"),  # now model.chans
        (
            ["model=flow", "method.num_unrolls=3"],
            "method.num_unrolls: not read: the flow family trains its network alone",
        ),
        (["data.coils=4"], "data.coils: a preprocess key"),
    ]
    for args, named in cases:
        res = run_cli("train", "data=4bit_quarter", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=sample_dir)
        assert named in one_error_line(res)
        assert not (tmp_path / "run").exists()


def test_failed_resume_keeps_the_run(trained, sample_dir):
    before = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    res = run_cli(
        "train", "data=4bit_quarter", "model=unet", "train.resume=true", f"hydra.run.dir={trained}", cwd=sample_dir
    )
    assert "does not match" in one_error_line(res)
    for path, data in before.items():
        assert path.read_bytes()[: len(data)] == data  # the job log may grow, nothing is lost
    assert (trained / ".hydra").is_dir()


def test_unrolled_rebuilds_from_its_checkpoint_alone(trained):
    from mrirecon.training.trainables import rebuild

    best = trained / "checkpoints" / "best.pt"
    ckpt = torch.load(best, weights_only=False)
    assert ckpt["kind"] == "unrolled" and ckpt["method_config"]["num_unrolls"] == 2
    model = rebuild(ckpt, best, "unrolled", "dbp").module
    for name, value in ckpt["model"].items():
        assert torch.equal(model.state_dict()[name], value), name


def test_checkpoint_from_an_older_format_is_one_error_line_naming_the_retrain_command(trained, sample_dir, tmp_path):
    """A format-1 checkpoint (no format, method_config, model_config: only the run config; NumPy's
    RNG state as an array) and a format-2 one are refused in one line that names the command
    making a new one (the old code read them through upgrade() and the NumPy allowance); one
    without even the config is no mrirecon checkpoint."""
    ckpt = torch.load(trained / "checkpoints" / "best.pt", weights_only=False)
    legacy = {k: v for k, v in ckpt.items() if k not in ("format", "method_config", "model_config", "loss")}
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": None, "cuda": None}
    torch.save({**legacy, "rng": rng}, tmp_path / "one.pt")
    torch.save({**ckpt, "format": 2, "supervised": True}, tmp_path / "two.pt")
    for name, found in (("one", "1 or 2"), ("two", "2")):
        path = tmp_path / f"{name}.pt"
        args = ("method=dbp", "data=4bit_quarter", f"checkpoint={path}", f"hydra.run.dir={tmp_path / 'run'}")
        line = one_error_line(run_cli("reconstruct", *args, cwd=sample_dir))
        assert line == (
            f"error: checkpoint: {path} was written by an older mrirecon (checkpoint format {found}; this version "
            "reads format 3): retrain it with 'mrirecon train method=dbp'"
        )
        assert not (tmp_path / "run").exists()
    bare = tmp_path / "bare.pt"
    torch.save({k: v for k, v in ckpt.items() if k not in ("format", "config")}, bare)
    res = run_cli(
        "reconstruct",
        "method=dbp",
        "data=4bit_quarter",
        f"checkpoint={bare}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=sample_dir,
    )
    line = one_error_line(res)
    assert str(bare) in line and "not an mrirecon checkpoint" in line
    assert not (tmp_path / "run").exists()


def test_evaluate_keeps_checkpoints_and_seeds_apart(trained, sample_dir):
    """Two checkpoints x two seeds in one sweep: four rows, each labelled with its checkpoint and
    seed; pool=seed pools the seeds on request only."""
    sweep = sample_dir / "runs" / "ckpt_seed_sweep"
    ckpts = ",".join(str(trained / "checkpoints" / n) for n in ("best.pt", "last.pt"))
    res = run_cli(
        "reconstruct",
        "-m",
        "method=dbp",
        "data=4bit_quarter",
        f"checkpoint={ckpts}",
        "seed=1,2",
        "figures=0",
        f"hydra.sweep.dir={sweep}",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    for pool, rows_expected in (("null", 4), ("seed", 2)):
        out = sample_dir / "runs" / f"ckpt_seed_eval_{pool}"
        res = run_cli("evaluate", f"runs={sweep}", f"pool={pool}", f"hydra.run.dir={out}", cwd=sample_dir)
        assert res.returncode == 0, res.stderr
        with open(out / "results.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == rows_expected and len({r["label"] for r in rows}) == rows_expected
        assert {Path(r["checkpoint"]).name for r in rows} == {"best.pt", "last.pt"}
        # each row's training budget, from its checkpoint (parameters, epochs, seconds, device)
        assert all(int(r["parameters"]) > 0 and int(r["epochs"]) >= 1 and float(r["train_seconds"]) > 0 for r in rows)
        assert {r["train_device"] for r in rows} == {"cpu"} and "s/slice | training |" in (
            out / "results.md"
        ).read_text()
        page = (out / "report.html").read_text()
        for row in rows:
            assert row["label"] in page
    assert {r["seed"] for r in rows} == {"1, 2"} and all("seeds 1, 2" in r["label"] for r in rows)


def test_malicious_checkpoint_is_refused_and_never_runs(trained, sample_dir, tmp_path):
    """A checkpoint whose unpickling would create a file: reconstruct and train.resume refuse it
    with one error line naming trust_checkpoint=true, and the payload never runs."""
    from test_checkpoints import malicious_checkpoint

    marker = tmp_path / "payload-ran"
    evil = malicious_checkpoint(tmp_path / "evil.pt", marker)
    runs = {
        "checkpoint": ["reconstruct", "method=dbp", f"checkpoint={evil}"],
        "train.resume": ["train", *TINY, f"train.resume={evil}"],
    }
    for key, args in runs.items():
        res = run_cli(*args, "data=4bit_quarter", f"hydra.run.dir={tmp_path / 'run'}", cwd=sample_dir)
        line = one_error_line(res)
        assert line.startswith(f"error: {key}: {evil} holds Python objects") and "trust_checkpoint=true" in line
        assert not marker.exists() and not (tmp_path / "run").exists()


def test_rerun_without_resume_keeps_the_finished_run(trained, sample_dir, tmp_path):
    """Training again into a run dir with checkpoints is refused (naming train.resume=true and
    overwrite=true) and leaves them as they were; so is a reconstruct run that would replace the
    train run's metrics.csv. overwrite=true starts over, on a copy here."""
    checkpoints = {p: p.read_bytes() for p in (trained / "checkpoints").glob("*.pt")}
    assert {p.name for p in checkpoints} == {"best.pt", "last.pt"}
    res = run_cli("train", "data=4bit_quarter", *TINY, "train.epochs=1", f"hydra.run.dir={trained}", cwd=sample_dir)
    line = one_error_line(res)
    assert "already holds checkpoints" in line and "train.resume=true" in line and "overwrite=true" in line
    metrics = (trained / "metrics.csv").read_bytes()
    res = run_cli("reconstruct", "method=zero_filled", "data=4bit_quarter", f"hydra.run.dir={trained}", cwd=sample_dir)
    line = one_error_line(res)
    assert "metrics.csv" in line and "overwrite=true" in line
    assert all(path.read_bytes() == data for path, data in checkpoints.items())
    assert (trained / "metrics.csv").read_bytes() == metrics
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    args = ["train", "data=4bit_quarter", *TINY, "train.epochs=1", "overwrite=true", f"hydra.run.dir={copy}"]
    assert run_cli(*args, cwd=sample_dir).returncode == 0
    assert torch.load(copy / "checkpoints" / "last.pt", weights_only=True)["state"]["epoch"] == 1
    assert len((copy / "metrics.csv").read_text().splitlines()) == 2  # the header and the new run's epoch
