"""End to end: `mrirecon train model=diffusion` at tiny size on the embedded sample, resumed, and
`reconstruct method=diffusion` from its checkpoint; a method key refused at training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import one_error_line, run_cli

TINY = ["model.base_channels=4", "model.depth=2", "train.batch_size=5"]


@pytest.fixture(scope="module")
def diffusion_run(sample_dir: Path) -> Path:
    res = run_cli(
        "train",
        "model=diffusion",
        "data=4bit_quarter",
        *TINY,
        "train.epochs=2",
        "hydra.run.dir=runs/diffusion",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    return sample_dir / "runs" / "diffusion"


def test_train_resume_and_reconstruct_with_the_diffusion_prior(diffusion_run, sample_dir):
    ckpt = torch.load(diffusion_run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["kind"] == "diffusion" and ckpt["loss"] == {"loss": "denoising_score"}
    assert ckpt["augmentations"] == {"flip": True} and ckpt["model_config"]["depth"] == 2
    res = run_cli(
        "train", "model=diffusion", "data=4bit_quarter", *TINY, "train.epochs=3", "train.resume=true",
        f"hydra.run.dir={diffusion_run}", cwd=sample_dir,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    with open(diffusion_run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and all(float(r["val_dsm"]) > 0 for r in rows)
    out = sample_dir / "runs" / "diffusion_recon"
    res = run_cli(
        "reconstruct", "method=diffusion", "data=4bit_quarter", f"checkpoint={diffusion_run}/checkpoints/best.pt",
        "method.samples=2", "method.noise_levels=3", "method.steps=1", "figures=0", f"hydra.run.dir={out}", cwd=sample_dir,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method_config"]["samples"] == 2 and summary["method_config"]["augment"] == "flip"


def test_a_method_key_is_refused_when_training_the_prior(sample_dir):
    res = run_cli("train", "model=diffusion", "data=4bit_quarter", "method.num_unrolls=2", cwd=sample_dir)
    assert res.returncode == 2
    assert one_error_line(res).startswith(
        "error: method.num_unrolls: not read: the diffusion family trains its network alone"
    )
