#!/usr/bin/env python
"""Benchmark the SENSE operator and CG against a plain reference implementation.

Measures, at 8 coils x 320x256 (batch 1 and 4):
  - forward + adjoint (A then A^H),
  - 10 CG iterations on (A^H A + lam I) x = A^H y,
for mrirecon's `SenseOperator` and for a reference that wraps torch.fft with explicit
fftshift/ifftshift on every call (the textbook implementation). Prints median times over
repeats and the ratio ours / reference (goal: <= 0.6), both computed in this run. A last row
per batch puts mrirecon's forward + adjoint against the bare FFT pair it cannot avoid
(torch.fft.fft2 then ifft2 of the same (batch, coils, X, Y) array): the ratio is what the coil
maps, the mask and the coil combination cost on top of the FFTs (goal: <= 3).

Usage: python scripts/bench_physics.py [--repeats 20] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from bench_reference import ReferenceSense

from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def paired_times(ref_fn, our_fn, repeats: int, device: torch.device) -> tuple[float, float, float]:
    """Median reference time, median mrirecon time and median of the per-pair ratios.

    The two run back to back in alternating order, so slow drifts of a shared machine hit
    both sides of each pair alike."""
    ref_fn(), our_fn()  # warm-up
    ref_t, our_t, ratios = [], [], []
    for k in range(repeats):
        if k % 2:
            b, a = _timed(our_fn, device), _timed(ref_fn, device)
        else:
            a, b = _timed(ref_fn, device), _timed(our_fn, device)
        ref_t.append(a), our_t.append(b), ratios.append(b / a)
    return statistics.median(ref_t), statistics.median(our_t), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=2, default=(320, 256))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    print(
        f"device {device}, threads {args.threads}, {args.coils} coils x {args.shape[0]}x{args.shape[1]}, "
        f"median of {args.repeats}"
    )
    print(f"{'case':<28}{'batch':>6}{'reference ms':>15}{'mrirecon ms':>14}{'ratio':>8}")
    for batch in (1, 4):
        shape = (batch, args.coils, *args.shape)
        maps = torch.randn(shape, dtype=torch.complex64, generator=gen).to(device)
        maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
        mask = (torch.rand((batch, *args.shape), generator=gen) < 0.2).float().to(device)
        x = torch.randn((batch, *args.shape), dtype=torch.complex64, generator=gen).to(device)
        ours, ref = SenseOperator(maps, mask), ReferenceSense(maps, mask)
        y = ref.forward(x)
        b = ref.adjoint(y)
        assert torch.allclose(ours.adjoint(ours.forward(x)), ref.adjoint(ref.forward(x)), atol=1e-4)
        cases = {
            "forward + adjoint": (lambda: ref.adjoint(ref.forward(x)), lambda: ours.adjoint(ours.forward(x))),
            "CG, 10 iterations": (
                lambda: conjugate_gradient(ref.gram, b, lam=1e-3, max_iter=10, tol=0.0),
                lambda: conjugate_gradient(ours.gram, b, lam=1e-3, max_iter=10, tol=0.0),
            ),
        }
        coils = maps * x.unsqueeze(1)
        cases["fwd + adj vs bare FFT pair"] = (
            lambda: torch.fft.ifft2(torch.fft.fft2(coils, norm="ortho"), norm="ortho"),
            lambda: ours.adjoint(ours.forward(x)),
        )
        with torch.no_grad():
            for name, (ref_fn, our_fn) in cases.items():
                t_ref, t_ours, ratio = paired_times(ref_fn, our_fn, args.repeats, device)
                print(f"{name:<28}{batch:>6}{t_ref * 1e3:>15.2f}{t_ours * 1e3:>14.2f}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
