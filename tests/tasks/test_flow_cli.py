"""End to end: `mrirecon train model=flow`, reconstruct with the flow methods, a lam x beta sweep
and its evaluate table, at tiny size on the embedded sample; bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import pytest
import torch
from helpers import one_error_line, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from mrirecon.cli.app import config_dir
from mrirecon.errors import UserError
from mrirecon.io.checkpoint_entries import FORMAT
from mrirecon.tasks.recon_method import method_of
from mrirecon.tasks.reconstruct import check_trained_size
from mrirecon.training.trainables import TRAINABLES, family_for, rebuild

TINY = ["model.levels=2", "model.steps=1", "model.hidden_channels=8", "model.bins=4", "train.batch_size=5"]
FAST = ["method.iterations=3", "figures=0"]


@pytest.fixture(scope="module")
def flow_run(sample_dir: Path) -> Path:
    res = run_cli(
        "train",
        "model=flow",
        "data=4bit_quarter",
        *TINY,
        "train.epochs=2",
        "hydra.run.dir=runs/flow",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    return sample_dir / "runs" / "flow"


def test_train_flow_outputs_and_no_leakage(flow_run, sample_dir):
    with open(flow_run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and 0 < float(rows[-1]["val_bpd"]) < 4 + 1
    assert list((flow_run / "tensorboard").glob("events.out.tfevents.*"))
    ckpt = torch.load(flow_run / "checkpoints" / "best.pt", weights_only=False)
    assert ckpt["kind"] == "flow" and ckpt["bits"] == 4 and ckpt["shape"] == [1, 80, 64]
    assert ckpt["loss"] == {"loss": "bits_per_dim"} and ckpt["augmentations"] == {"flip": True}
    assert ckpt["config"]["model"]["levels"] == 2 and ckpt["config"]["train"]["lr"] > 0
    with h5py.File(sample_dir / "outputs" / "data" / "4bit_quarter.h5", "r") as f:
        stored = {s: f.attrs[f"split_{s}"].tolist() for s in ("train", "val", "test")}
    assert ckpt["splits"] == stored
    assert set(stored["train"]).isdisjoint(stored["test"]) and set(stored["train"]).isdisjoint(stored["val"])
    # the trainer saw only train slices: one epoch of batch 5 over the train split
    assert ckpt["state"]["step"] == 2 * -(-len(stored["train"]) // 5)


def test_resume_flow(flow_run, sample_dir):
    res = run_cli(
        "train",
        "model=flow",
        "data=4bit_quarter",
        *TINY,
        "train.epochs=3",
        "train.resume=true",
        f"hydra.run.dir={flow_run}",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    with open(flow_run / "metrics.csv", newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3"]


def test_sweep_and_evaluate(flow_run, sample_dir):
    ckpt = flow_run / "checkpoints" / "best.pt"
    sweep = sample_dir / "runs" / "flow_sweep"
    res = run_cli(
        "reconstruct",
        "-m",
        "method=flow_combined",
        "data=4bit_quarter",
        f"checkpoint={ckpt}",
        *FAST,
        "method.lam=0,3",
        "method.beta=0,0.003",
        f"hydra.sweep.dir={sweep}",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    assert sorted((s["method_config"]["lam"], s["method_config"]["beta"]) for s in summaries) == [
        (0, 0),
        (0, 0.003),
        (3, 0),
        (3, 0.003),
    ]
    res = run_cli("evaluate", f"runs=[{sweep}]", "hydra.run.dir=runs/flow_eval", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    with open(sample_dir / "runs" / "flow_eval" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {"lam", "beta"} <= set(rows[0])
    psnr = [float(r["psnr_mean"]) for r in rows]
    assert psnr == sorted(psnr, reverse=True)
    assert {r["best"] for r in rows} == {"too few subjects"}  # 3 test subjects: p >= 2/2^3, never resolved
    table = (sample_dir / "runs" / "flow_eval" / "results.md").read_text()
    assert "| 0.003 |" in table and "| 3 |" in table  # swept values readable (not 0.0030 / 3.0000)


def test_flow_on_another_bit_depth_warns(flow_run, sample_dir):
    res = run_cli(
        "reconstruct",
        "method=flow_l1",
        "data=8bit_quarter",
        f"checkpoint={flow_run}/checkpoints/best.pt",
        *FAST,
        "hydra.run.dir=runs/flow_8bit",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    assert "trained on 4-bit images, the data are 8-bit" in res.stdout + res.stderr
    summary = json.loads((sample_dir / "runs" / "flow_8bit" / "summary.json").read_text())
    assert summary["method"] == "flow_l1" and summary["method_config"]["flow_bits"] == 4


def test_cli_errors_leave_nothing(flow_run, sample_dir, tmp_path):
    best = f"{flow_run}/checkpoints/best.pt"
    res = run_cli(
        "reconstruct",
        "method=flow_l1",
        "data=quarter",
        f"checkpoint={best}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=sample_dir,
    )
    assert "magnitude" in one_error_line(res)
    assert not (tmp_path / "run").exists()


def _compose(overrides: list[str], name: str = "reconstruct"):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name=name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


def test_train_config_and_errors():
    cfg = _compose(["model=flow"], "train")  # model=flow trains the flow prior
    assert cfg.model.name == "flow" and cfg.train.batch_size == 8 and cfg.train.epochs == 500 and cfg.train.flip
    assert cfg.train.loss == "bits_per_dim" and cfg.train.cosine_lr  # the flow's training defaults
    assert _compose(["model=flow", "train.epochs=3"], "train").train.epochs == 3  # the command line wins
    assert family_for(str(cfg.method.name), str(cfg.model.name)) is TRAINABLES["flow"]
    cfg = _compose(["model=flow_student"], "train")
    assert (
        cfg.model.levels == 4
        and cfg.train.lr == 1.5e-3
        and family_for(str(cfg.method.name), str(cfg.model.name)) is TRAINABLES["flow"]
    )
    assert family_for("dbp", "resnet") is TRAINABLES["unrolled"] and family_for("cg_sense", "resnet") is None
    assert _compose([], "train").train.epochs == 20  # the unrolled defaults are untouched
    with pytest.raises(ValueError, match="bits: null.*magnitude"):
        TRAINABLES["flow"].check_bits(None)
    TRAINABLES["flow"].check_bits(8)


def test_flow_rebuilds_from_its_checkpoint_alone(flow_run):
    best = flow_run / "checkpoints" / "best.pt"
    ckpt = torch.load(best, weights_only=False)
    trained = rebuild(ckpt, best, "flow", "flow_l1")
    assert trained.bits == 4 and trained.module.shape == (1, 80, 64)
    for name, value in ckpt["model"].items():
        assert torch.equal(trained.module.state_dict()[name], value), name
    cfg = _compose(["data=4bit_quarter", "method=flow_l1", f"checkpoint={best}"])  # no model group at all
    method, method_config, trained_on = method_of(cfg, torch.device("cpu"))
    assert method.bits == 4 and method_config["flow_shape"] == [1, 80, 64] and trained_on["source_id"] == "sample"


def test_bad_input_names_the_key(flow_run, tmp_path):
    best = str(flow_run / "checkpoints" / "best.pt")
    dbp = tmp_path / "dbp.pt"
    torch.save({"kind": "unrolled", "method": "dbp", "model": {}, "config": {}, "format": FORMAT}, dbp)
    cases = [
        (["method=flow_l1", f"checkpoint={dbp}"], "holds a 'dbp' model"),
        (["method=dbp", f"checkpoint={best}"], "holds a 'flow' model"),
        (["method=flow_combined", f"checkpoint={tmp_path / 'missing.pt'}"], "missing.pt"),
        (["method=flow_logprob"], "needs checkpoint"),
        (["method=flow_l1", "data=quarter", f"checkpoint={best}"], "data.bits: null"),
        (["method=flow_l1", "data=full", f"checkpoint={best}"], "magnitude"),
        (["method=flow_l1", "method.iterations=0", f"checkpoint={best}"], "method.iterations"),
        (["method=flow_l1", "method.lam=-1e-3", f"checkpoint={best}"], "method.lam"),
        (["method=flow_logprob", "method.beta=-1", f"checkpoint={best}"], "method.beta"),
        (["method=flow_combined", "method.z_init=ones", f"checkpoint={best}"], "method.z_init"),
        (["method=flow_combined", "method.z_norm=l0", f"checkpoint={best}"], "method.z_norm"),
    ]
    for overrides, named in cases:
        cfg = _compose(["data=4bit_quarter", *overrides])
        with pytest.raises(UserError, match=named.replace("(", r"\(")):
            method_of(cfg, torch.device("cpu"))
    cfg = _compose(["data=4bit_full", "method=flow_l1", f"checkpoint={best}"])  # a flow that does not fit the data
    method_config = method_of(cfg, torch.device("cpu"))[1]
    with pytest.raises(
        UserError,
        match="checkpoint: the model in .* was trained on 80x64 images, .* holds 320x256 .*method=flow_l1 works only",
    ):
        check_trained_size(cfg, method_config, SimpleNamespace(shape=(320, 256), path="4bit_full.h5"))
