#!/usr/bin/env python
"""Benchmark one DBP training step (forward, backward, Adam) against DeepInPy's defaults.

Cases: (batch 1, 8 coils, 320x256) and (batch 5, 8 coils, 80x64); 4 unrolls, 2 ADMM steps,
10 CG iterations (no early stop). mrirecon's step (SenseOperator with folded shifts; ResNet
kernel 3, or the U-Net) is timed against the DeepInPy-default step (ResNet kernel 7, 64
channels, 3 blocks, and a SENSE operator with explicit fftshifts) in the same run, in
alternating order; prints seconds per step, the speed-up (reference / ours; goal >= 2) and
peak memory (CUDA: max allocated; CPU: peak RSS growth of a fresh process per case).

Usage: python scripts/bench_train.py [--repeats 3] [--threads 2] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from bench_memory import fresh_process_peak_mb
from bench_reference import ReferenceSense

from mrirecon.methods import build_method
from mrirecon.nets import build_net
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator

DBP = {"name": "dbp", "num_unrolls": 4, "num_admm": 2, "cg_max_iter": 10, "cg_eps": 0.0}
NETS = {
    "deepinpy resnet k7": {"name": "resnet", "kernel_size": 7},
    "mrirecon resnet k3": {"name": "resnet", "kernel_size": 3},
    "mrirecon unet": {"name": "unet"},
}
CASES = {"1x8x320x256": (1, 320, 256), "5x8x80x64": (5, 80, 64)}


def make_step(net: str, case: str, device: torch.device):
    """A closure running one training step, for the named net and problem size."""
    batch, x, y = CASES[case]
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(batch, 8, x, y, dtype=torch.complex64, generator=g)
    maps = (maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()).to(device)
    mask = (torch.rand(batch, x, y, generator=g) < 0.2).float().to(device)
    img = torch.randn(batch, x, y, dtype=torch.complex64, generator=g).to(device)
    ksp = torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(maps * img[:, None], dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
    )
    torch.manual_seed(0)
    method = build_method(DBP, denoiser=build_net(NETS[net])).to(device)
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    operator = ReferenceSense if net.startswith("deepinpy") else SenseOperator
    data = {"img": img, "ksp": ksp, "maps": maps, "mask": mask}

    def step() -> None:
        opt.zero_grad()
        y_meas = ksp * mask[:, None]
        x_hat = method(y_meas, operator(maps, mask), resolve_noise_std(y_meas, mask))
        loss = (x_hat - data["img"]).abs().pow(2).sum()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="only the 80x64 case")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, threads {args.threads}, DBP {json.dumps(DBP)}; median of {args.repeats} steps")
    print(f"{'case':<14}{'net':<22}{'s/step':>9}{'speed-up':>10}{'peak MB':>10}")
    for case in ["5x8x80x64"] if args.quick else CASES:
        steps = {net: make_step(net, case, device) for net in NETS}
        for fn in steps.values():
            fn()  # warm-up
        times: dict[str, list[float]] = {net: [] for net in NETS}
        for k in range(args.repeats):
            order = list(NETS) if k % 2 == 0 else list(reversed(NETS))
            for net in order:
                times[net].append(timed(steps[net]))
        ref = statistics.median(times["deepinpy resnet k7"])
        for net in NETS:
            t = statistics.median(times[net])
            mem = fresh_process_peak_mb("bench_train", (net, case), args.device, args.threads)
            print(f"{case:<14}{net:<22}{t:>9.3f}{ref / t:>10.2f}{mem:>10.0f}")


if __name__ == "__main__":
    main()
