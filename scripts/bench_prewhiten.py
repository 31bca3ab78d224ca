#!/usr/bin/env python
"""Prewhitening with a noise scan's coil covariance against no prewhitening: PSNR on k-space with
correlated coil noise (the path `preprocess data.prewhiten=auto|false` takes for ISMRMRD files
with noise scans: data/formats/ismrmrd.py).

Arms: "white" = k-space prewhitened with W = L^-1 (Psi = L L^H, Psi from the noise scan), ESPIRiT
maps from the whitened data, sigma = 1; "plain" = k-space as acquired, maps from it, sigma
estimated from the k-space periphery (today's estimate). Each arm is scored against its own
reference image, the SENSE combine of the noise-free (or fully sampled) k-space, whitened in the
white arm, with the arm's maps; methods at their defaults (lam auto).

- knee (simulation with a real covariance): the embedded sample's 3 test slices (real knee
  anatomy, 8 simulated coils, 320x256, its masks at R ~ 6), noise-free k-space plus complex
  Gaussian noise with the 8x8 covariance measured on the real brain scan (tests/assets: its
  outermost 10 % of measured k-space, where there is no signal; its correlations and unequal
  coil powers are printed), scaled to the sample's noise level (`--level` x the image maximum,
  RMS over coils); the noise scan: `--noise-samples` samples of the same noise.
- phantom (real data, real noise): the fully sampled 4-coil GRE phantom (tests/assets), its
  noise scan made from its own empty k-space corners (4 x 24 x 24 locations); reference = the
  fully sampled SENSE combine; Poisson masks at R = 4, 6 (seeds 1, 2).

Usage: python scripts/bench_prewhiten.py [--threads 2] [--level 0.018] [--noise-samples 1024]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import sigpy.mri
import torch

from mrirecon.data.completion import espirit_maps
from mrirecon.data.formats.ismrmrd_header import whitening_matrix
from mrirecon.data.formats.sample import SampleSource
from mrirecon.data.transforms import fft2c_numpy, ifft2c_numpy
from mrirecon.evaluation import metrics
from mrirecon.methods import build_method
from mrirecon.physics.noise import _radius, estimate_noise_std
from mrirecon.physics.sense import SenseOperator

DATA = Path(__file__).resolve().parents[1] / "tests" / "assets"
METHODS = ("zero_filled", "cg_sense", "cs_wavelet")


def brain_covariance() -> np.ndarray:
    """8x8 noise covariance of the real brain scan from its outermost 10 % of measured k-space."""
    y = np.load(DATA / "brain_8coil_ksp_poisson8x.npy")
    measured = np.abs(y).sum(0) > 0
    radius = _radius(y.shape[1:], torch.device("cpu")).numpy()
    r = np.where(measured, radius, -1.0)
    outer = r >= np.quantile(r[measured], 0.9)
    samples = y[:, outer]
    return samples @ samples.conj().T / samples.shape[1]


def describe(cov: np.ndarray) -> str:
    power = np.real(np.diag(cov))
    corr = np.abs(cov) / np.sqrt(np.outer(power, power))
    off = corr[~np.eye(len(cov), dtype=bool)]
    return (
        f"coil noise power max/min {power.max() / power.min():.2f}, |correlation| median {np.median(off):.2f}, "
        f"max {off.max():.2f}"
    )


def recon(method: str, y: np.ndarray, maps: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    op = SenseOperator(torch.from_numpy(maps[None]), torch.from_numpy(mask[None]))
    with torch.no_grad():
        x = build_method({"name": method}).reconstruct(torch.from_numpy((y * mask)[None]), op, torch.tensor([sigma]))
    return np.abs(x[0].numpy())


def score(clean: np.ndarray, noisy: np.ndarray, mask: np.ndarray, whitening: np.ndarray | None) -> dict[str, float]:
    """PSNR of each method in one arm: clean/noisy k-space (C, X, Y) as acquired."""
    if whitening is not None:
        clean, noisy = (np.einsum("cd,dxy->cxy", whitening, k).astype(np.complex64) for k in (clean, noisy))
    maps = espirit_maps((noisy * mask).astype(np.complex64), 24, 0.02, 0.95)
    reference = np.abs(np.sum(np.conj(maps) * ifft2c_numpy(clean), axis=0))
    if whitening is not None:
        sigma = 1.0
    else:
        sigma = float(estimate_noise_std(torch.from_numpy(noisy * mask), torch.from_numpy(mask)))
    return {m: metrics.psnr(recon(m, noisy.astype(np.complex64), maps, mask, sigma), reference) for m in METHODS}


def correlated(chol: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples (C, n) of complex Gaussian noise with covariance chol chol^H."""
    c = len(chol)
    return chol @ (rng.standard_normal((c, n)) + 1j * rng.standard_normal((c, n))) / np.sqrt(2)


def knee_rows(level: float, noise_samples: int, cov_shape: np.ndarray) -> list[tuple[str, dict, dict]]:
    rng = np.random.default_rng(0)
    sample = SampleSource()
    rows = []
    for i in (12, 13, 14):
        s = sample.read(i)
        clean = fft2c_numpy(s.maps * s.img).astype(np.complex64)
        target = level * np.abs(s.img).max()
        cov = cov_shape * target**2 / np.real(np.trace(cov_shape) / len(cov_shape))
        chol = np.linalg.cholesky(cov)
        noisy = clean + correlated(chol, clean[0].size, rng).reshape(clean.shape)
        scan = correlated(chol, noise_samples, rng)
        w = whitening_matrix(scan @ scan.conj().T / noise_samples)
        rows.append((f"knee slice {i}", score(clean, noisy, s.mask, None), score(clean, noisy, s.mask, w)))
    return rows


def phantom_rows() -> list[tuple[str, dict, dict]]:
    full = np.load(DATA / "phantom_4coil_gre_256.npy")
    corners = [full[:, a, b] for a in (slice(0, 24), slice(-24, None)) for b in (slice(0, 24), slice(-24, None))]
    scan = np.concatenate([c.reshape(full.shape[0], -1) for c in corners], axis=1)
    cov = scan @ scan.conj().T / scan.shape[1]
    print(f"phantom noise scan (its k-space corners, {scan.shape[1]} samples): {describe(cov)}")
    w = whitening_matrix(cov)
    rows = []
    for accel, seed in ((4, 1), (6, 2)):
        mask = (sigpy.mri.poisson(full.shape[1:], accel, calib=(24, 24), seed=seed) != 0).astype(np.float32)
        rows.append(
            (f"phantom R={mask.size / mask.sum():.1f}", score(full, full, mask, None), score(full, full, mask, w))
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--level", type=float, default=0.018)
    parser.add_argument("--noise-samples", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cov = brain_covariance()
    print(f"real brain covariance (outermost 10 % of its measured k-space): {describe(cov)}")
    rows = knee_rows(args.level, args.noise_samples, cov) + phantom_rows()
    print(
        "\nPSNR (dB) against each arm's reference: plain (no prewhitening, periphery sigma) / prewhitened (noise scan)"
    )
    print("| case | " + " | ".join(METHODS) + " |")
    print("|---|" + "---|" * len(METHODS))
    for name, plain, white in rows:
        print(f"| {name} | " + " | ".join(f"{plain[m]:.2f} / {white[m]:.2f}" for m in METHODS) + " |")
    knee = [r for r in rows if r[0].startswith("knee")]
    print(
        "| knee mean | "
        + " | ".join(
            f"{np.mean([p[m] for _, p, _ in knee]):.2f} / {np.mean([w[m] for _, _, w in knee]):.2f}" for m in METHODS
        )
        + " |"
    )


if __name__ == "__main__":
    main()
