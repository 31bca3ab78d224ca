#!/usr/bin/env python
"""Peak training memory and step time of DBP / MoDL against the number of unrolls, with and
without activation checkpointing per unroll (`train.checkpoint_unrolls=true`).

One training step (forward, backward, Adam) at batch 1 x 8 coils x 320x256 with the default
denoiser (ResNet, 64 channels, 3 blocks, kernel 3), 10 CG iterations (no early stop), for
num_unrolls 2, 4, 8, 16. Each configuration runs in a fresh process: peak memory is CUDA's
max_memory_allocated on a GPU, else the growth of the process's peak RSS (VmHWM) over its RSS
once the data and model are built, with glibc's mmap threshold fixed at 64 KiB so that freed
tensors are returned to the system and the RSS follows live tensor memory; step time is the median of the steps after a warm-up. The
table ends with the ratio of peak memory at 16 and 2 unrolls (8x the unrolls).

Usage: python scripts/bench_unroll_memory.py [--methods dbp,modl] [--unrolls 2,4,8,16]
       [--threads 2] [--steps 2] [--device cpu] [--shape 320 256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = os.path.dirname(os.path.abspath(__file__))


def measure(method: str, unrolls: int, checkpointed: bool, shape: tuple[int, int], steps: int, device: str) -> dict:
    """In this process: build the problem, run a warm-up step and `steps` timed steps."""
    import torch

    from mrirecon.data.batch import Batch
    from mrirecon.data.h5 import whole_grid
    from mrirecon.losses.supervised import SquaredErrorLoss
    from mrirecon.methods import build_method
    from mrirecon.nets import build_net
    from mrirecon.physics.fft import fft2c

    sys.path.insert(0, HERE)
    from bench_memory import vm_kb

    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(1, 8, *shape, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    img = torch.randn(1, *shape, dtype=torch.complex64, generator=g)
    ksp = fft2c(maps * img[:, None])
    mask = (torch.rand(1, *shape, generator=g) < 0.2).float()
    acquired = torch.tensor([whole_grid(shape)])
    batch = Batch(ksp, maps, mask, torch.zeros(1), torch.arange(1), acquired, img=img).to(dev)
    config = {"name": method, "num_unrolls": unrolls, "cg_max_iter": 10, "cg_eps": 0.0}
    torch.manual_seed(0)
    model = build_method(config, denoiser=build_net({"name": "resnet"})).to(dev)
    model.checkpoint_unrolls = checkpointed
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    base = vm_kb("VmRSS") or 0

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad()
        SquaredErrorLoss()(model, batch, torch.Generator().manual_seed(0)).backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = [step()]  # the first step is timed when no more are asked for
    times = [step() for _ in range(steps)] or times
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else ((vm_kb("VmHWM") or 0) - base) / 1024
    return {"peak_mb": peak, "seconds": statistics.median(times)}


def in_fresh_process(args: argparse.Namespace, method: str, unrolls: int, checkpointed: bool) -> dict:
    code = (
        f"import sys, json, torch; sys.path.insert(0, {HERE!r}); torch.set_num_threads({args.threads}); "
        f"import bench_unroll_memory as b; print(json.dumps(b.measure({method!r}, {unrolls}, {checkpointed}, "
        f"{tuple(args.shape)!r}, {args.steps}, {args.device!r})))"
    )
    # glibc: every allocation of 64 KiB or more is its own mapping, returned to the system when
    # freed, so the peak RSS follows the peak of live tensor memory (no allocator caching)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="dbp,modl")
    parser.add_argument("--unrolls", default="2,4,8,16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step (0: time the first)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, nargs=2, default=(320, 256))
    args = parser.parse_args()
    unrolls = [int(u) for u in args.unrolls.split(",")]
    print(
        f"device {args.device}, threads {args.threads}, batch 1 x 8 coils x {args.shape[0]}x{args.shape[1]}, "
        f"ResNet 64x3 k3, 10 CG iterations; peak = {'max allocated' if args.device != 'cpu' else 'peak RSS growth'}"
    )
    print(f"{'method':<7}{'unrolls':>8}{'plain MB':>10}{'ckpt MB':>10}{'plain s':>9}{'ckpt s':>9}{'mem ratio':>10}")
    for method in args.methods.split(","):
        rows = {}
        for n in unrolls:
            plain, ckpt = (in_fresh_process(args, method, n, c) for c in (False, True))
            rows[n] = (plain, ckpt)
            print(
                f"{method:<7}{n:>8}{plain['peak_mb']:>10.0f}{ckpt['peak_mb']:>10.0f}{plain['seconds']:>9.2f}"
                f"{ckpt['seconds']:>9.2f}{ckpt['peak_mb'] / plain['peak_mb']:>10.2f}",
                flush=True,
            )
        lo, hi = min(unrolls), max(unrolls)
        growth = [rows[hi][k]["peak_mb"] / rows[lo][k]["peak_mb"] for k in (0, 1)]
        print(f"{method}: peak at {hi} / {lo} unrolls: {growth[0]:.2f}x plain, {growth[1]:.2f}x checkpointed")


if __name__ == "__main__":
    main()
