#!/usr/bin/env python
"""Benchmark the training input pipeline against the DBP training step, in slices per second.

Makes a full-scale processed file from the embedded sample (`mrirecon preprocess data=full`:
15 slices of 8 coils x 320x256, complex; `--dir` keeps and reuses it) and builds what `mrirecon
train data=full` builds with the defaults (dbp, ResNet k3, batch size 2, supervised, the default
augmentation random_phase): the training split's dataset and the trainable. Then, in one run:

- read: the training DataLoader (`training/loader.py`, as the Trainer builds it) alone, with
  0, 1 and 2 worker processes, batches moved to the device: slices/s after the first batch
  (steady state), and the time to the first batch (worker start-up, opening the file; the
  Trainer makes a new loader each epoch);
- augment: the default augmentations of a batch alone (they run in the step, in the main
  process, on the step's device; listed to show their share of the step), and all of them
  (random_masks and flip too: random masks are drawn on the CPU whatever the device);
- step: one DBP training step (the trainable's loss with its augmentations, backward, Adam)
  on batches already in memory: the rate the input has to keep up with;
- train: the loop as the Trainer runs it (next batch from the loader, then the step) with 0,
  1 and 2 workers: slices/s, and its ratio to the step rate (1.00: the step never waits).

A loader setting keeps the input above the step when its read rate is at least the step rate
(with workers the reads overlap the step; with 0 workers they add to it). The GPU's step rate is
not measured here unless `--device cuda`; give a known one with `--gpu-rate` to print how many
workers the measured per-worker read rate needs for it.

Usage: python scripts/bench_loader.py [--dir DIR] [--slices 40] [--steps 3] [--threads 2]
       [--workers 0,1,2] [--device cpu] [--gpu-rate SLICES_PER_S]
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from mrirecon.cli.overrides import compose
from mrirecon.data.augment import augment
from mrirecon.tasks.common import open_processed, variant_of
from mrirecon.tasks.train import _family, optimizer_of, stored_splits, trainable_of
from mrirecon.tasks.train_common import settings_of
from mrirecon.training.loader import train_loader

VARIANT = "full"


def processed_file(folder: Path) -> Path:
    """The full-scale processed file of the embedded sample in `folder` (made once)."""
    path = folder / f"{VARIANT}.h5"
    if not path.exists():
        command = [sys.executable, "-m", "mrirecon", "preprocess", f"data={VARIANT}", f"data.path={path}"]
        subprocess.run([*command, f"hydra.run.dir={folder / 'preprocess'}"], check=True, capture_output=True)
    return path


def batches_of(indices: list[int], batch_size: int, slices: int) -> list[list[int]]:
    """`slices` dataset positions (the training split over and over), in batches of `batch_size`."""
    order = [k % len(indices) for k in range(slices)]
    return [order[i : i + batch_size] for i in range(0, slices, batch_size)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def read_rate(dataset: Any, batches: list[list[int]], workers: int, device: torch.device) -> tuple[float, float]:
    """(slices/s after the first batch, seconds to the first batch: worker start-up) of the
    training loader with `workers`, batches on `device`."""
    start = time.perf_counter()
    first, count = math.nan, 0
    for batch in train_loader(dataset, batches, workers, 723, (0, workers, 0), device):
        batch = to(batch, device)
        sync(device)
        if math.isnan(first):
            first, start = time.perf_counter() - start, time.perf_counter()
        else:
            count += len(batch["index"])
    return count / (time.perf_counter() - start), first


class Step:
    """One DBP training step of `trainable` (loss with its augmentations, backward, Adam)."""

    def __init__(self, trainable: Any, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        self.trainable, self.optimizer, self.device, self.count = trainable, optimizer, device, 0

    def __call__(self, batch: dict[str, torch.Tensor]) -> None:
        self.trainable.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        self.trainable.loss(batch, torch.Generator().manual_seed(self.count)).backward()
        self.optimizer.step()
        sync(self.device)
        self.count += 1


def timed_rate(fn: Any, batches: list[dict[str, torch.Tensor]]) -> float:
    """Slices/s of `fn` over `batches` (after one untimed call)."""
    fn(batches[0])
    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    return sum(len(b["index"]) for b in batches) / (time.perf_counter() - start)


def train_rate(dataset: Any, batches: list[list[int]], workers: int, step: Step) -> float:
    """Slices/s of the Trainer's loop: the next batch from the loader, to the device, a step."""
    start = time.perf_counter()
    for batch in train_loader(dataset, batches, workers, 723, (0, workers, 1), step.device):
        step(to(batch, step.device))
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def setup(path: Path, threads: int, device: torch.device) -> tuple[Any, Any, Step, int]:
    """(training dataset, trainable, its step, batch size) as `mrirecon train data=full` builds them."""
    cfg = compose("train", [f"data={VARIANT}", f"data.path={path}", f"hardware.threads={threads}"])
    family, (bits, _) = _family(cfg), variant_of(cfg)
    settings, data = settings_of(cfg), open_processed(cfg)
    trainable = trainable_of(cfg, family, data, bits, settings.seed, device)
    optimizer_class, lr = optimizer_of(cfg)
    dataset = trainable.dataset(data, stored_splits(data)["train"], training=True)
    step = Step(trainable, optimizer_class(trainable.module.parameters(), lr=lr), device)
    return dataset, trainable, step, settings.batch_size


def report_gpu(per_worker: float, gpu_rate: float | None) -> None:
    if gpu_rate is None:
        print(
            "GPU: the DBP step rate on a GPU is not measured (docs/benchmarks.md has no GPU number yet); "
            f"each worker reads {per_worker:.1f} slices/s here, so a GPU step of R slices/s needs about "
            f"R / {per_worker:.1f} workers (rerun with --device cuda, or --gpu-rate R)"
        )
        return
    print(
        f"GPU step rate {gpu_rate:.1f} slices/s (given): about {math.ceil(gpu_rate / per_worker)} workers at this read rate"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="keep the processed file here (reused)")
    parser.add_argument("--slices", type=int, default=40, help="slices read per loader measurement")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per measurement")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpu-rate", type=float, default=None, help="a known GPU DBP step rate, slices/s")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, workers = torch.device(args.device), [int(w) for w in args.workers.split(",")]
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bench_loader_"))
    folder.mkdir(parents=True, exist_ok=True)
    dataset, trainable, step, size = setup(processed_file(folder), args.threads, device)
    positions = list(range(len(dataset)))
    loaded = [
        to(b, device) for b in train_loader(dataset, batches_of(positions, size, size * args.steps), 0, 0, (0,), device)
    ]
    step_rate = timed_rate(step, loaded)
    generator = torch.Generator().manual_seed(0)
    aug = timed_rate(lambda b: (augment(b, generator, **trainable.augmentations), sync(device)), loaded)
    every = {"random_masks": True, "flip": True, "random_phase": True}
    aug_all = timed_rate(lambda b: (augment(b, generator, **every), sync(device)), loaded)
    print(
        f"device {device}, threads {args.threads}; {VARIANT} sample, {len(dataset)} training slices of "
        f"{tuple(loaded[0]['ksp'].shape[1:])}, batch {size}, {trainable.describe()}"
    )
    print(
        f"step (loss with augmentations, backward, Adam): {step_rate:.3f} slices/s; augmentations alone: "
        f"{aug:.1f} slices/s (with random_masks and flip too, not defaults: {aug_all:.1f})"
    )
    print(
        f"{'workers':>7}{'read slices/s':>15}{'first batch s':>15}{'read / step':>13}{'train slices/s':>16}{'train / step':>14}"
    )
    reads = {}
    for w in workers:
        reads[w], first = read_rate(dataset, batches_of(positions, size, args.slices), w, device)
        train = train_rate(dataset, batches_of(positions, size, size * args.steps), w, step)
        print(
            f"{w:>7}{reads[w]:>15.1f}{first:>15.2f}{reads[w] / step_rate:>13.1f}{train:>16.3f}{train / step_rate:>14.2f}"
        )
    keep = [w for w in workers if w > 0 and reads[w] >= step_rate]
    print(f"settings that keep the input above the step rate: hardware.num_workers in {keep or 'none measured'}")
    report_gpu(reads[min((w for w in workers if w > 0), default=workers[0])] or math.nan, args.gpu_rate)


if __name__ == "__main__":
    main()
