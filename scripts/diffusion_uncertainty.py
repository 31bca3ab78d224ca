#!/usr/bin/env python
"""How well the diffusion prior's posterior std predicts its error: per slice of a split, the
Spearman rank correlation over pixels of the std map and |mean - reference|, the coverage of
mean +- 2 std (the fraction of pixels whose error is at most 2 std), and the NRMSE of the
posterior mean and of the zero-filled image against the reference.

Usage: python scripts/diffusion_uncertainty.py CHECKPOINT [--data outputs/data/4bit_quarter.h5]
       [--split test] [--threads 1] [key=value ...]   (method.* keys of conf/method/diffusion.yaml)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import yaml
from scipy.stats import spearmanr

from mrirecon.cli.configs import config_file
from mrirecon.data.batch import collate
from mrirecon.data.dataset import SliceDataset
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.io.files import load_checkpoint
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.training.trainables import rebuild


def nrmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float((x - ref).norm() / ref.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default="outputs/data/4bit_quarter.h5")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("keys", nargs="*", help="method keys, e.g. samples=8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = dict(yaml.safe_load(Path(config_file("method", "diffusion")).read_text()))
    config.update({k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.keys)})
    ckpt = load_checkpoint(args.checkpoint)
    method, _ = rebuild(ckpt, args.checkpoint, "diffusion", "diffusion").reconstructor(config, None, False)
    data = DeepInPyFile(args.data)
    splits = data.splits()
    assert splits is not None, f"{args.data}: no splits"
    indices = splits[args.split]
    batch = collate([SliceDataset(data, indices)[k] for k in range(len(indices))])
    op = SenseOperator(batch.maps, batch.mask)
    y = batch.y
    mean, std = method.reconstruct_with_std(y, op, resolve_noise_std(y, batch.mask, batch.noise_std))
    assert std is not None
    ref, zero_filled = batch.reference(), op.adjoint(y)
    print(f"config: {config}")
    print("| slice | Spearman(std, abs error) | coverage of mean +- 2 std | NRMSE mean | NRMSE zero-filled |")
    print("|---|---|---|---|---|")
    rows = []
    for b, index in enumerate(indices):
        error = (mean[b] - ref[b]).abs()
        rho = float(spearmanr(std[b].flatten().numpy(), error.flatten().numpy()).statistic)
        coverage = float((error <= 2 * std[b]).float().mean())
        rows.append((rho, coverage, nrmse(mean[b], ref[b]), nrmse(zero_filled[b], ref[b])))
        print(f"| {index} | {rows[-1][0]:.3f} | {rows[-1][1]:.3f} | {rows[-1][2]:.4f} | {rows[-1][3]:.4f} |")
    m = np.mean(rows, axis=0)
    print(f"| mean | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.4f} | {m[3]:.4f} |")


if __name__ == "__main__":
    main()
