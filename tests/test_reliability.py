"""Reliability at the CLI: a SIGKILLed training run resumes to the same weights, the same
command twice gives the same results, and sweeps run through Hydra launchers."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import run_cli

TINY = ["model.channels=8", "model.num_blocks=1", "method.num_unrolls=2", "method.cg_max_iter=4"]


def read_rows(path: Path, drop: tuple[str, ...] = ()) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(fh)]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=False)["model"]


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(sample_dir: Path) -> None:
    """With every random draw on: dropout 0.5, batch norm, SSDU holdout (train.loss=ssdu), training
    noise, flips and random phase (complex data)."""
    draws = [
        "model.dropout=0.5",
        "model.batch_norm=true",
        "train.loss=ssdu",
        "train.flip=true",
        "train.stdev=0.01",
    ]
    args = ["train", "data=quarter", *TINY, *draws, "train.batch_size=1", "train.epochs=6", "hardware.threads=1"]
    reference = sample_dir / "runs" / "kill_reference"
    assert run_cli(*args, f"hydra.run.dir={reference}", cwd=sample_dir).returncode == 0

    run = sample_dir / "runs" / "kill_me"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mrirecon", *args, f"hydra.run.dir={run}"],
        cwd=sample_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = run / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.25)  # into epoch 2 (10 steps an epoch, about 0.6 s here)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = torch.load(last, weights_only=False)["state"]  # complete: it loads
    assert killed_at["epoch"] < 6

    res = run_cli(*args, "train.resume=true", f"hydra.run.dir={run}", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    for (name, a), b in zip(weights(reference).items(), weights(run).values()):
        assert torch.equal(a, b), name
    assert read_rows(run / "metrics.csv") == read_rows(reference / "metrics.csv")
    assert not list((run / "checkpoints").glob(".*.tmp")), "stale temporary checkpoint left behind"


def test_same_training_command_twice_gives_identical_results(sample_dir: Path) -> None:
    args = ["train", "data=4bit_quarter", *TINY, "train.batch_size=5", "train.epochs=1", "hardware.threads=1"]
    runs = [sample_dir / "runs" / f"twice_{k}" for k in range(2)]
    for run in runs:
        res = run_cli(*args, f"hydra.run.dir={run}", cwd=sample_dir)
        assert res.returncode == 0, res.stderr
    for (name, a), b in zip(weights(runs[0]).items(), weights(runs[1]).values()):
        assert torch.equal(a, b), name
    assert read_rows(runs[0] / "metrics.csv") == read_rows(runs[1] / "metrics.csv")


def test_same_reconstruct_command_twice_gives_identical_metrics(sample_dir: Path) -> None:
    """cs_wavelet draws random cycle-spinning shifts: seeded, so the runs agree to the bit
    (all of metrics.csv but the wall time)."""
    runs = [sample_dir / "runs" / f"rec_twice_{k}" for k in range(2)]
    for run in runs:
        res = run_cli(
            "reconstruct",
            "method=cs_wavelet",
            "data=4bit_quarter",
            "figures=0",
            "method.max_iter=20",
            f"hydra.run.dir={run}",
            cwd=sample_dir,
        )
        assert res.returncode == 0, res.stderr
    first, second = (read_rows(r / "metrics.csv", drop=("seconds",)) for r in runs)
    assert first == second and len(first) == 3
    with h5py.File(runs[0] / "recon.h5") as a, h5py.File(runs[1] / "recon.h5") as b:
        assert np.array_equal(a["recon"][()], b["recon"][()])


def test_joblib_sweep_runs_two_jobs_in_parallel_processes(sample_dir: Path) -> None:
    sweep = sample_dir / "runs" / "joblib_sweep"
    res = run_cli(
        "reconstruct",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "method=zero_filled,cg_sense",
        "data=4bit_quarter",
        "figures=0",
        "hardware.threads=1",
        f"hydra.sweep.dir={sweep}",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    assert "Joblib.Parallel(n_jobs=2" in res.stdout + res.stderr
    methods = {read_rows(sweep / str(k) / "metrics.csv")[0]["method"] for k in range(2)}
    assert methods == {"zero_filled", "cg_sense"}
    res = run_cli("evaluate", f"runs=[{sweep}]", f"hydra.run.dir={sample_dir / 'runs' / 'joblib_eval'}", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    rows = read_rows(sample_dir / "runs" / "joblib_eval" / "results.csv")
    assert [r["method"] for r in rows] == ["cg_sense", "zero_filled"]


def test_slurm_launcher_preset_composes(tmp_path: Path) -> None:
    res = run_cli(
        "train", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hardware=gpu", "--cfg", "hydra", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "SlurmLauncher" in res.stdout and "partition: gpu" in res.stdout and "gpus_per_node: 1" in res.stdout


def test_ddp_two_cpu_processes_match_one_process(sample_dir: Path) -> None:
    """torchrun with 2 gloo processes and the same global batch (5: shares of 3 and 2 items)
    reaches the weights and batch-norm statistics of a single process to floating-point
    tolerance (batch norm over the global batch); only rank 0 writes. Random draws differ by
    rank (tests/test_training.py checks them), so this run has none: supervised, real images.
    On a machine without CUDA, hardware=ddp alone picks the CPU (hardware.device: auto)."""
    args = [
        "train",
        "data=4bit_quarter",
        *TINY,
        "model.batch_norm=true",
        "train.batch_size=5",
        "train.epochs=2",
        "hardware.threads=1",
    ]
    one, two = sample_dir / "runs" / "ddp_one", sample_dir / "runs" / "ddp_two"
    res = run_cli(*args, f"hydra.run.dir={one}", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "mrirecon",
            *args,
            "hardware=ddp",
            "hardware.num_workers=0",
            *(["hardware.device=cpu"] if torch.cuda.is_available() else []),
            f"hydra.run.dir={two}",
        ],
        cwd=sample_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert res.stdout.count("training dbp") == 1, "ranks other than 0 must not log"
    a, b = (
        torch.load(one / "checkpoints" / "last.pt", weights_only=False),
        torch.load(two / "checkpoints" / "last.pt", weights_only=False),
    )
    assert a["state"]["step"] == b["state"]["step"] == 4
    assert any("running_var" in name for name in a["model"])
    for name, value in a["model"].items():  # Adam magnifies rounding where gradients are near 0: atol
        torch.testing.assert_close(b["model"][name], value, rtol=1e-4, atol=5e-5)
    for ra, rb in zip(a["state"]["history"], b["state"]["history"]):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-5)
        assert ra["val_nrmse"] == pytest.approx(rb["val_nrmse"], rel=1e-5)
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
