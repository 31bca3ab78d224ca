#!/usr/bin/env python
"""Coil compression (`data.coils`): PSNR loss and speed-up of cg_sense, cs_wavelet and a DBP
training step at N = 8, 6, 4, 2 virtual coils.

Compression is what `preprocess data.coils=N` does (data/coil_compression.py: SVD of the
24x24 calibration region per slice, k-space and ESPIRiT maps both compressed, reference kept).
- brain: the real 8-coil brain k-space (tests/assets, undersampled 8x, no reference): PSNR of
  each N-coil reconstruction against the same method's 8-coil reconstruction (data range its
  max): how much the answer changes, not its quality.
- knee: the embedded sample's 3 test slices (real knee anatomy, 8 simulated birdcage coils,
  simulated noise and masks; 320x256): PSNR against the reference image.
- DBP: one training step (4 unrolls, 2 ADMM steps, 10 CG iterations, ResNet kernel 3,
  forward + backward + Adam) at 1 x N x 320x256.
Times are the minimum over `--repeats` runs; speed-up = time at 8 coils / time at N, in the same
run. The methods run at their defaults (lam auto, sigma estimated from the compressed data).

Usage: python scripts/bench_coils.py [--threads 2] [--repeats 2] [--coils 8,6,4,2]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from mrirecon.data.coil_compression import CoilCompression
from mrirecon.data.completion import espirit_maps
from mrirecon.data.formats.sample import SampleSource
from mrirecon.data.h5 import Slice
from mrirecon.evaluation import metrics
from mrirecon.methods import build_method
from mrirecon.nets import build_net
from mrirecon.physics.noise import estimate_noise_std, resolve_noise_std
from mrirecon.physics.sense import SenseOperator

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"cg_sense": {"name": "cg_sense"}, "cs_wavelet": {"name": "cs_wavelet"}}


def brain_slice() -> Slice:
    y = np.load(ROOT / "tests" / "assets" / "brain_8coil_ksp_poisson8x.npy")
    mask = (np.abs(y).sum(0) > 0).astype(np.float32)
    return Slice(np.zeros(y.shape[1:], np.complex64), espirit_maps(y, 24, 0.02, 0.95), y, mask)


def reconstruct(cfg: dict, s: Slice, repeats: int) -> tuple[np.ndarray, float]:
    """(reconstruction, min seconds) of one slice at the method's defaults."""
    y = torch.from_numpy(s.ksp * s.mask)[None]
    op = SenseOperator(torch.from_numpy(s.maps)[None], torch.from_numpy(s.mask)[None])
    sigma = estimate_noise_std(y, torch.from_numpy(s.mask)[None])
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            out = build_method(cfg).reconstruct(y, op, sigma)[0].numpy()
        best = min(best, time.perf_counter() - start)
    return out, best


def dbp_step_seconds(coils: int, repeats: int) -> float:
    """Minimum time of one DBP training step at 1 x coils x 320x256 (random consistent data)."""
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(1, coils, 320, 256, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = (torch.rand(1, 320, 256, generator=g) < 0.2).float()
    img = torch.randn(1, 320, 256, dtype=torch.complex64, generator=g)
    ksp = torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(maps * img[:, None], dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
    )
    torch.manual_seed(0)
    dbp = {"name": "dbp", "num_unrolls": 4, "num_admm": 2, "cg_max_iter": 10, "cg_eps": 0.0}
    method = build_method(dbp, denoiser=build_net({"name": "resnet", "kernel_size": 3}))
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    best = float("inf")
    for _ in range(repeats + 1):  # the first step warms up
        start = time.perf_counter()
        opt.zero_grad()
        y = ksp * mask[:, None]
        loss = (method(y, SenseOperator(maps, mask), resolve_noise_std(y, mask)) - img).abs().pow(2).sum()
        loss.backward()
        opt.step()
        best = min(best, time.perf_counter() - start) if _ else best
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--coils", default="8,6,4,2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = [int(c) for c in args.coils.split(",")]
    sample = SampleSource()
    knees = [sample.read(i) for i in (12, 13, 14)]
    brain = brain_slice()
    rows = []
    base: dict[str, np.ndarray] = {}
    base_time: dict[str, float] = {}
    for n in counts:
        row: dict[str, float] = {"coils": n}
        cc = CoilCompression(n, "slice", 24)
        for name, cfg in METHODS.items():
            x, t = reconstruct(cfg, cc.apply(brain, 0), args.repeats)
            if n == counts[0]:
                base[name], base_time[f"brain {name}"] = np.abs(x), t
            row[f"brain {name} psnr"] = metrics.psnr(np.abs(x), base[name])
            row[f"brain {name} speedup"] = base_time[f"brain {name}"] / t
            psnrs, times = [], []
            for s in knees:
                x, t = reconstruct(cfg, cc.apply(s, 0), args.repeats)
                psnrs.append(metrics.psnr(np.abs(x), np.abs(s.img)))
                times.append(t)
            if n == counts[0]:
                base_time[f"knee {name}"] = float(np.mean(times))
            row[f"knee {name} psnr"] = float(np.mean(psnrs))
            row[f"knee {name} speedup"] = base_time[f"knee {name}"] / float(np.mean(times))
        row["energy"] = float(np.mean(cc.energy))
        step = dbp_step_seconds(n, args.repeats)
        base_time.setdefault("dbp", step)
        row["dbp s/step"], row["dbp speedup"] = step, base_time["dbp"] / step
        rows.append(row)
        print(f"N={n} done", flush=True)
    print(
        f"\nthreads {args.threads}; brain PSNR against the {counts[0]}-coil result of the same method; knee PSNR against the reference (3 slices)"
    )
    print(
        "| coils | calib. energy kept | brain cg_sense PSNR / speed-up | brain cs_wavelet | knee cg_sense | knee cs_wavelet | DBP step s (speed-up) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[f'{d} {m} psnr']:.2f} / {r[f'{d} {m} speedup']:.2f}x" for d in ("brain", "knee") for m in METHODS]
        print(
            f"| {r['coils']} | {r['energy']:.4f} | "
            + " | ".join(cells)
            + f" | {r['dbp s/step']:.2f} ({r['dbp speedup']:.2f}x) |"
        )


if __name__ == "__main__":
    main()
