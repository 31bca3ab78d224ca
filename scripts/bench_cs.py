#!/usr/bin/env python
"""Compressed sensing side by side with BART's `pics` on the same data, maps, masks and iterations.

Data: (1) the embedded sample at full scale (8 coils, 320x256, variant `full`: complex images
with phase, k-space as generated), its 3 test slices; (2) the real 8-coil brain k-space
(8x Poisson disc, no ground truth; ESPIRiT maps) from tests/assets. For each of L1-wavelet
(mrirecon cs_wavelet vs `bart pics -l1`) and total variation (cs_tv vs `bart pics -R T:3:0:lam`)
it sweeps the regularisation weight of each tool over a grid, picks each tool's best weight by
mean PSNR on the sample, and prints PSNR / NRMSE / SSIM, seconds per slice and the time ratio.
On the brain data (no reference) it prints the data-consistency error of both and how far
the two reconstructions are apart. BART is skipped with a message if `bart` is not on PATH
(`apt-get install bart`).

Usage: python scripts/bench_cs.py [--iters 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from mrirecon.data.formats.raw import RawKspaceSource
from mrirecon.data.formats.sample import SampleSource
from mrirecon.evaluation import metrics
from mrirecon.methods import build_method
from mrirecon.physics.sense import SenseOperator

ROOT = Path(__file__).resolve().parents[1]
OURS_GRID = [1e-3, 3e-3, 1e-2, 3e-2]  # w = lam * max|A^H y|; the noisy sample needs 1e-3 and up
BART_GRID = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1]


def write_cfl(base: Path, array: np.ndarray) -> None:
    """BART's .hdr/.cfl pair; `array` in BART's dimension order (column-major on disk)."""
    base.with_suffix(".hdr").write_text("# Dimensions\n" + " ".join(map(str, array.shape)) + "\n")
    np.asfortranarray(array.astype(np.complex64)).ravel(order="F").tofile(base.with_suffix(".cfl"))


def read_cfl(base: Path) -> np.ndarray:
    dims = [int(d) for d in base.with_suffix(".hdr").read_text().splitlines()[1].split()]
    return np.fromfile(base.with_suffix(".cfl"), dtype=np.complex64).reshape(dims, order="F")


def bart_pics(y: np.ndarray, maps: np.ndarray, reg: list[str], iters: int, threads: int) -> tuple[np.ndarray, float]:
    """Run `bart pics` on one slice: y, maps (C, X, Y) -> image (X, Y), wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        write_cfl(t / "ksp", np.transpose(y, (1, 2, 0))[:, :, None, :])
        write_cfl(t / "maps", np.transpose(maps, (1, 2, 0))[:, :, None, :])
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        start = time.perf_counter()
        subprocess.run(
            ["bart", "pics", "-S", "-i", str(iters), *reg, str(t / "ksp"), str(t / "maps"), str(t / "out")],
            check=True,
            capture_output=True,
            env=env,
        )
        seconds = time.perf_counter() - start
        out = read_cfl(t / "out")
        return out.reshape(out.shape[0], out.shape[1]), seconds


def ours(
    name: str, lam: float, y: np.ndarray, maps: np.ndarray, mask: np.ndarray, iters: int
) -> tuple[np.ndarray, float]:
    method = build_method({"name": name, "lam": lam, "max_iter": iters, "tol": 0.0})
    op = SenseOperator(torch.from_numpy(maps[None]), torch.from_numpy(mask[None]))
    start = time.perf_counter()
    x = method.reconstruct(torch.from_numpy(y[None]), op)
    return x[0].numpy(), time.perf_counter() - start


def consistency(x: np.ndarray, y: np.ndarray, maps: np.ndarray, mask: np.ndarray) -> float:
    """||A x - y|| / ||y|| after the best global phase of x: BART's centred FFT differs from
    fft2c by a global sign when a side's half-length is odd (230x180 here), which changes
    nothing in the magnitude image."""
    op = SenseOperator(torch.from_numpy(maps[None]), torch.from_numpy(mask[None]))
    ax = op.forward(torch.from_numpy(x[None].astype(np.complex64)))[0].numpy()
    inner = np.vdot(ax, y)
    phase = inner / abs(inner) if abs(inner) > 0 else 1.0
    return float(np.linalg.norm(phase * ax - y) / np.linalg.norm(y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    have_bart = shutil.which("bart") is not None
    if not have_bart:
        print("bart not found on PATH (apt-get install bart): BART columns skipped")
    sample = SampleSource()
    slices = [sample.read(i) for i in (12, 13, 14)]  # the sample's test split
    data = [(s.ksp * s.mask, s.maps, s.mask, s.img) for s in slices]
    tools = {"cs_wavelet": ["-l1"], "cs_tv": None}
    print(f"sample (8 coils, 320x256, 3 test slices), {args.iters} iterations, {args.threads} threads")
    print(f"{'method':<12}{'tool':<10}{'best lam':>10}{'PSNR':>8}{'NRMSE':>8}{'SSIM':>8}{'s/slice':>9}")
    best_lams = {}
    for name in tools:
        rows = {}
        for tool, grid in (("mrirecon", OURS_GRID), ("bart", BART_GRID if have_bart else [])):
            scored = []
            for lam in grid:
                recs = []
                for y, maps, mask, ref in data:
                    if tool == "mrirecon":
                        x, sec = ours(name, lam, y, maps, mask, args.iters)
                    else:
                        reg = ["-l1", "-r", str(lam)] if name == "cs_wavelet" else ["-R", f"T:3:0:{lam}"]
                        x, sec = bart_pics(y, maps, reg, args.iters, args.threads)
                    recs.append((metrics.slice_metrics(x, ref), sec))
                mean = {k: float(np.mean([m[k] for m, _ in recs])) for k in metrics.NAMES}
                scored.append((mean["psnr"], lam, mean, float(np.mean([s for _, s in recs]))))
            if scored:
                _psnr, lam, mean, sec = max(scored)
                rows[tool] = (lam, mean, sec)
                best_lams[(name, tool)] = lam
                print(
                    f"{name:<12}{tool:<10}{lam:>10.0e}{mean['psnr']:>8.2f}{mean['nrmse']:>8.4f}{mean['ssim']:>8.4f}"
                    f"{sec:>9.3f}"
                )
        if "bart" in rows:
            dpsnr = rows["mrirecon"][1]["psnr"] - rows["bart"][1]["psnr"]
            print(
                f"{name:<12}{'':<10}PSNR mrirecon - BART: {dpsnr:+.2f} dB; BART / mrirecon time: "
                f"{rows['bart'][2] / rows['mrirecon'][2]:.2f}"
            )

    brain = RawKspaceSource(ROOT / "tests" / "assets" / "brain_8coil_ksp_poisson8x.npy").read(0)
    y, maps, mask = brain.ksp * brain.mask, brain.maps, brain.mask
    print(
        "\nreal brain k-space (8 coils, 230x180, 8x Poisson; ESPIRiT maps; no reference), each tool at its best "
        "sample weight"
    )
    print(f"{'method':<12}{'tool':<10}{'DC error':>10}{'s/slice':>9}{'  |ours - bart| / |bart|':>26}")
    for name in tools:
        x, sec = ours(name, best_lams[(name, "mrirecon")], y, maps, mask, args.iters)
        print(f"{name:<12}{'mrirecon':<10}{consistency(x, y, maps, mask):>10.4f}{sec:>9.3f}")
        if have_bart:
            lam = best_lams[(name, "bart")]
            reg = ["-l1", "-r", str(lam)] if name == "cs_wavelet" else ["-R", f"T:3:0:{lam}"]
            xb, secb = bart_pics(y, maps, reg, args.iters, args.threads)
            apart = np.linalg.norm(np.abs(x) - np.abs(xb)) / np.linalg.norm(np.abs(xb))
            print(f"{name:<12}{'bart':<10}{consistency(xb, y, maps, mask):>10.4f}{secb:>9.3f}{apart:>26.4f}")


if __name__ == "__main__":
    main()
