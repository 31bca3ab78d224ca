#!/usr/bin/env python
"""Noise estimation and the noise-aware defaults on real acquired k-space (no simulation).

Data (tests/assets, both real scans with the scanner's thermal noise):
  phantom: fully sampled 4-coil 2D GRE of a bottle phantom (256x256). Reference: SENSE combine
    of the full k-space with ESPIRiT maps; the full k-space corners give the true noise level.
    It is undersampled here with variable-density Poisson-disc masks (24x24 calibration) at
    R = 4, 6, 8, and the maps are estimated from the undersampled data, as `preprocess` does
    for raw k-space.
  brain: 8-coil brain k-space undersampled 8x (no reference): each method's data consistency
    is compared with the noise level, ||A x - y|| / (sigma sqrt(C M)) (1 = fits the data to the
    noise; well below 1 = fits the noise).

For each case it prints: the estimated noise std against the truth; every method at its
default settings (lam=auto); each method's best weight on a grid (factor 2 steps) and how far
the default is from it; BART's `pics -l1` at its best weight of a grid (skipped when `bart` is
not on PATH: apt-get install bart). Then the table of scripts/bench_auto.py: every classical
method at its defaults against zero-filling where lam=auto's assumption fails (model error,
sigma underestimated or 0; real scans and the simulated sample), with the rule that chose each
weight. The checks of the real-data issues are printed at the end.

Usage: python scripts/bench_real.py [--threads 2] [--iters 100] [--accels 4,6,8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import sigpy.mri
import torch

from mrirecon.data.formats.raw import espirit_maps
from mrirecon.evaluation import metrics
from mrirecon.methods import build_method
from mrirecon.physics.noise import estimate_noise_std
from mrirecon.physics.sense import SenseOperator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_auto import cases as auto_cases
from bench_auto import evaluate as auto_evaluate
from bench_auto import holdout_agrees_with_psnr
from bench_auto import table as auto_table
from bench_cs import bart_pics

DATA = ROOT / "tests" / "assets"
METHODS = ("zero_filled", "cg_sense", "cs_wavelet", "cs_tv")
REL_GRID = [5e-4, 1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2]  # cs weights relative to max |A^H y|
CG_GRID = [3e-3, 1e-2, 2e-2, 4e-2, 8e-2, 1.6e-1, 3.2e-1]  # Tikhonov lam (units of A^H A)
BART_GRID = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2]


def ifft2c(k: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=axes), norm="ortho"), axes=axes)


def corner_noise(ksp: np.ndarray, width: int = 24) -> float:
    """The true noise of fully sampled k-space: RMS of its four corners (no signal there)."""
    parts = [
        ksp[:, a, b] for a in (slice(0, width), slice(-width, None)) for b in (slice(0, width), slice(-width, None))
    ]
    return float(np.sqrt(np.mean(np.concatenate([np.abs(p).ravel() ** 2 for p in parts]))))


def noise_estimate(y: np.ndarray, mask: np.ndarray) -> float:
    return float(estimate_noise_std(torch.from_numpy(y), torch.from_numpy(mask)))


def reconstruct(cfg: dict, y: np.ndarray, maps: np.ndarray, mask: np.ndarray, noise: float) -> np.ndarray:
    op = SenseOperator(torch.from_numpy(maps[None]), torch.from_numpy(mask[None]))
    with torch.no_grad():
        x = build_method(cfg).reconstruct(torch.from_numpy(y[None]), op, torch.tensor([noise]))
    return x[0].numpy()


def consistency(x: np.ndarray, y: np.ndarray, maps: np.ndarray, mask: np.ndarray, noise: float) -> float:
    """||A x - y|| / (sigma sqrt(C M)), after the best global phase of x (BART's FFT sign)."""
    op = SenseOperator(torch.from_numpy(maps[None]), torch.from_numpy(mask[None]))
    ax = op.forward(torch.from_numpy(x[None].astype(np.complex64)))[0].numpy()
    inner = np.vdot(ax, y)
    phase = inner / abs(inner) if abs(inner) > 0 else 1.0
    return float(np.linalg.norm(phase * ax - y) / (noise * np.sqrt(y.shape[0] * mask.sum())))


def phantom_case(accel: float, seed: int) -> dict:
    full = np.load(DATA / "phantom_4coil_gre_256.npy")
    mask = sigpy.mri.poisson(full.shape[1:], accel, calib=(24, 24), seed=seed, dtype=np.float32) != 0
    mask = mask.astype(np.float32)
    y = (full * mask).astype(np.complex64)
    maps = espirit_maps(y, 24, 0.02, 0.95)  # from the undersampled data, as preprocess does
    ref = (np.conj(maps) * ifft2c(full)).sum(0).astype(np.complex64)
    return {
        "name": f"phantom R={mask.size / mask.sum():.1f}",
        "y": y,
        "maps": maps,
        "mask": mask,
        "ref": ref,
        "truth": corner_noise(full),
    }


def brain_case() -> dict:
    y = np.load(DATA / "brain_8coil_ksp_poisson8x.npy")
    mask = (np.abs(y).sum(0) > 0).astype(np.float32)
    return {
        "name": "brain R=8.0",
        "y": y,
        "maps": espirit_maps(y, 24, 0.02, 0.95),
        "mask": mask,
        "ref": None,
        "truth": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--accels", default="4,6,8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    have_bart = shutil.which("bart") is not None
    if not have_bart:
        print("bart not found on PATH (apt-get install bart): BART rows skipped")
    cases = [phantom_case(float(a), seed=i + 1) for i, a in enumerate(args.accels.split(","))] + [brain_case()]
    checks: list[tuple[str, bool]] = []
    for case in cases:
        y, maps, mask, ref = case["y"], case["maps"], case["mask"], case["ref"]
        sigma = noise_estimate(y, mask)
        peak = np.abs(reconstruct({"name": "cs_wavelet", "max_iter": args.iters}, y, maps, mask, sigma)).max()
        line = f"\n== {case['name']}: noise std estimated {sigma:.4g}"
        if case["truth"] is not None:
            line += f" (k-space corners of the full scan: {case['truth']:.4g}, ratio {sigma / case['truth']:.3f})"
            checks.append(
                (f"{case['name']}: noise estimate within 10 % of the truth", abs(sigma / case["truth"] - 1) <= 0.10)
            )
        print(line + f"; peak SNR max|x| / sigma {peak / sigma:.0f}")
        scale = float(
            np.abs(
                SenseOperator(torch.from_numpy(maps[None]), torch.from_numpy(mask[None])).adjoint(
                    torch.from_numpy(y[None])
                )
            ).max()
        )

        def score(x: np.ndarray) -> str:
            dc = consistency(x, y, maps, mask, sigma)
            if ref is None:
                return f"DC/noise {dc:6.3f}"
            m = metrics.slice_metrics(x, ref)
            return f"PSNR {m['psnr']:6.2f}  SSIM {m['ssim']:.4f}  NRMSE {m['nrmse']:.4f}  DC/noise {dc:6.3f}"

        defaults = {}
        for name in METHODS:
            cfg = (
                {"name": name}
                if name == "zero_filled"
                else {"name": name, "max_iter": args.iters}
                if name != "cg_sense"
                else {"name": name}
            )
            x = reconstruct(cfg, y, maps, mask, sigma)
            defaults[name] = metrics.psnr(x, ref) if ref is not None else float("nan")
            print(f"  {name:<12} default (lam auto)        {score(x)}")
        grids = {"cg_sense": CG_GRID, "cs_wavelet": REL_GRID, "cs_tv": REL_GRID}
        best = {}
        for name, grid in grids.items():
            results = []
            for lam in grid:
                cfg = (
                    {"name": name, "lam": lam}
                    if name == "cg_sense"
                    else {"name": name, "lam": lam, "max_iter": args.iters}
                )
                x = reconstruct(cfg, y, maps, mask, sigma)
                results.append((metrics.psnr(x, ref) if ref is not None else float("nan"), lam, x))
            if ref is None:
                print(
                    f"  {name:<12} grid: "
                    + "  ".join(f"{lam:g}: {consistency(x, y, maps, mask, sigma):.3f}" for _, lam, x in results)
                    + "  (DC/noise)"
                )
                continue
            psnr, lam, x = max(results, key=lambda r: r[0])
            best[name] = psnr
            unit = "" if name == "cg_sense" else f" (= {lam * scale / sigma:.2f} sigma)"
            print(
                f"  {name:<12} best of grid lam {lam:<7g}{unit:<14} {score(x)}   default - best: "
                f"{defaults[name] - psnr:+.2f} dB"
            )
        if have_bart:
            results = []
            for lam in BART_GRID:
                x, _ = bart_pics(y, maps, ["-l1", "-r", str(lam)], args.iters, args.threads)
                results.append((metrics.psnr(x, ref) if ref is not None else float("nan"), lam, x))
            if ref is not None:
                psnr, lam, x = max(results, key=lambda r: r[0])
                best["bart"] = psnr
                print(f"  {'bart -l1':<12} best of grid -r {lam:<8g}{'':<13} {score(x)}")
            else:
                print(
                    f"  {'bart -l1':<12} grid: "
                    + "  ".join(f"{lam:g}: {consistency(x, y, maps, mask, sigma):.3f}" for _, lam, x in results)
                    + "  (DC/noise)"
                )
        if ref is None:
            continue
        name = case["name"]
        for method in METHODS[1:]:
            checks.append((f"{name}: {method} default beats zero_filled", defaults[method] > defaults["zero_filled"]))
            checks.append(
                (
                    f"{name}: {method} default within 0.5 dB of cg_sense or better",
                    defaults[method] >= defaults["cg_sense"] - 0.5,
                )
            )
        for method in grids:
            checks.append(
                (
                    f"{name}: {method} lam=auto within 0.3 dB of its best grid weight",
                    defaults[method] >= best[method] - 0.3,
                )
            )
        if "bart" in best:
            checks.append(
                (
                    f"{name}: cs_wavelet default within 0.5 dB of BART pics -l1 at its best weight "
                    f"({defaults['cs_wavelet'] - best['bart']:+.2f} dB)",
                    defaults["cs_wavelet"] >= best["bart"] - 0.5,
                )
            )
    print("\nlam=auto where its assumption fails (scripts/bench_auto.py):")
    rows = [auto_evaluate(c) for c in auto_cases()]
    checks += [*auto_table(rows), holdout_agrees_with_psnr(rows)]
    print("\nchecks (real data; the sample's rows are simulation):")
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {text}")
    print(f"{sum(ok for _, ok in checks)} of {len(checks)} hold")


if __name__ == "__main__":
    main()
