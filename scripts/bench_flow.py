#!/usr/bin/env python
"""Benchmark the flow prior at 1x80x64: seconds per training step (forward, backward, Adam on
bits/dim of dequantised 4-bit images) and per inverse-problem iteration (flow_combined: decode,
SENSE forward, backward to z, Adam on z; 8 coils), each at batch 8 and batch 1; and peak memory
(CUDA: max allocated; CPU: peak RSS growth of a fresh process per case).

Usage: python scripts/bench_flow.py [--repeats 5] [--threads 1] [--device cpu] [--model flow]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
import yaml
from bench_memory import fresh_process_peak_mb

from mrirecon.losses.bits_per_dim import bits_per_dim, dequantize
from mrirecon.methods import build_method
from mrirecon.nets import DensityModel, build_net
from mrirecon.physics.sense import SenseOperator

SHAPE = (1, 80, 64)
CASES = [(kind, batch) for kind in ("train", "inverse") for batch in (8, 1)]


def model_config(name: str) -> dict:
    """conf/model/<name>.yaml without its training defaults."""
    path = Path(__file__).resolve().parent.parent / "conf" / "model" / f"{name}.yaml"
    config = yaml.safe_load(path.read_text())
    config.pop("train_defaults", None)
    return config


def make_step(kind: str, batch: int, model: str, device: torch.device):
    """A closure running one training step or one inverse-problem iteration."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    flow = build_net(model_config(model), SHAPE).to(device)
    assert isinstance(flow, DensityModel)
    images = torch.rand(batch, *SHAPE, generator=g).mul(15).round().div(15).to(device)
    with torch.no_grad():
        flow.log_prob(dequantize(images, 4, g))  # ActNorm initialisation
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if kind == "train":
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)

        def step() -> None:
            opt.zero_grad()
            bits_per_dim(flow, dequantize(images, 4, g), 4).mean().backward()
            opt.step()
            sync()

        return step
    maps = torch.randn(batch, 8, *SHAPE[1:], dtype=torch.complex64, generator=g)
    maps = (maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()).to(device)
    mask = (torch.rand(batch, *SHAPE[1:], generator=g) < 0.2).float().to(device)
    op = SenseOperator(maps, mask)
    y = op.forward(images[:, 0].to(torch.complex64))
    method = build_method({"name": "flow_combined", "lam": 1e-3, "beta": 1e-4}, flow=flow.eval(), bits=4)
    noise_std = torch.full((batch,), 0.01, device=device)  # the data term's sigma (normalised units)
    z = torch.zeros(batch, flow.dim, device=device, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.03)

    def iteration() -> None:
        opt.zero_grad()
        loss, _ = method.objective(z, y, op, noise_std)
        loss.sum().backward()
        opt.step()
        sync()

    return iteration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="flow", help="conf/model/<name>.yaml: flow or flow_student")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for kind, batch in CASES:
        fn = make_step(kind, batch, args.model, device)
        fn()  # warm-up
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        mem = fresh_process_peak_mb("bench_flow", (kind, batch, args.model), args.device, args.threads)
        row = {
            "case": f"{kind} step" if kind == "train" else "inverse iteration",
            "batch": batch,
            "shape": "x".join(map(str, SHAPE)),
            "seconds_median": statistics.median(times),
            "seconds_min": min(times),
            "peak_mb": round(mem, 1),
        }
        results.append(row)
        print(
            f"{row['case']:<18} batch {batch}: {row['seconds_median']:.4f} s (min {row['seconds_min']:.4f}), "
            f"peak {row['peak_mb']:.0f} MB",
            flush=True,
        )
    print(json.dumps({"model": args.model, "device": args.device, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
