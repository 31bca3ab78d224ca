#!/usr/bin/env python
"""Raw ISMRMRD data as scanners write them: the checks of issue 32 on real k-space.

Files are written with the `ismrmrd` package (tests/ismrmrd_scans.py) from the real 4-coil
phantom scan (tests/assets: fully sampled, real scanner noise), so the truth is known, and read
back with whichever mrirecon is importable (run it with PYTHONPATH=<an older checkout> to see
the numbers before a change). It prints:

- integrated calibration: R = 2 with 24 calibration lines, the lines of the block that are not
  imaging lines flagged ACQ_IS_PARALLEL_CALIBRATION only (as Siemens writes them), and a
  separate reference scan: CG-SENSE PSNR against the fully sampled reference (SENSE combine with
  maps from the truth's full block) with the reader's maps and with the full block's maps;
- phase stabilisation: the relative difference (dB) of the slice of a file with
  ACQ_IS_PHASE_STABILIZATION readouts beside every line from the file without them;
- partial echo (30 of 256 samples missing, and 60 of 512 with 2x oversampling): whether the file
  claims a reference, whether its image is all zero, the mask samples on never-acquired rows;
- the default mask on a fully sampled 2D file (R 4): whole phase-encode lines among the sampled
  ones, and CG-SENSE / L1-wavelet PSNR with a readout-undersampling Poisson disc and with whole
  lines at the same R;
- with --density: CG-SENSE and L1-wavelet PSNR of variable-density line masks (R 4 and 6, 4
  seeds) against the power of the density, the choice of masks.LINE_POWER.

Usage: python scripts/bench_raw_scans.py [--density] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the test files' writers

from ismrmrd_scans import Scan, phantom, write_scan


def recon_psnr(ksp: np.ndarray, mask: np.ndarray, maps: np.ndarray, reference: np.ndarray, method: str) -> float:
    """PSNR (dB) of `method` (at its defaults) from ksp * mask against |reference|."""
    import torch

    from mrirecon.evaluation import metrics
    from mrirecon.methods import build_method
    from mrirecon.physics.noise import estimate_noise_std
    from mrirecon.physics.sense import SenseOperator

    y, m = torch.from_numpy(ksp * mask)[None], torch.from_numpy(np.ascontiguousarray(mask))[None]
    op = SenseOperator(torch.from_numpy(maps)[None], m)
    with torch.no_grad():
        x = build_method({"name": method}).reconstruct(y, op, estimate_noise_std(y, m))[0].numpy()
    return float(metrics.psnr(np.abs(x), np.abs(reference)))


def options(**kw):
    from mrirecon.data.source import ReadOptions

    return ReadOptions(**kw)


def calibration(work: Path, truth: np.ndarray, maps: np.ndarray, reference: np.ndarray) -> None:
    from mrirecon.data.source import open_source

    print("calibration (R 2, 24 lines) | reader's maps: CG-SENSE PSNR | full block's maps | centre of the mask")
    for name, scan in (
        ("integrated", Scan(accel=2, calib=24)),
        ("separate", Scan(accel=2, calib=24, calibration="separate")),
    ):
        s = open_source(str(write_scan(work / f"{name}.h5", truth, scan)), options()).read(0)
        ours, best = (
            recon_psnr(s.ksp, s.mask, s.maps, reference, "cg_sense"),
            recon_psnr(s.ksp, s.mask, maps, reference, "cg_sense"),
        )
        print(f"{name} | {ours:.2f} dB | {best:.2f} dB | {s.mask[128, 122:134].astype(int).tolist()}")


def stabilisation(work: Path, truth: np.ndarray) -> None:
    from mrirecon.data.source import open_source

    for name in ("stab", "plain"):
        (work / name).mkdir()
    scan = Scan(extra=("ACQ_IS_PHASE_STABILIZATION", "ACQ_IS_PHASE_STABILIZATION_REFERENCE"))
    a = open_source(str(write_scan(work / "stab" / "scan.h5", truth, scan)), options()).read(0)
    b = open_source(str(write_scan(work / "plain" / "scan.h5", truth, Scan())), options()).read(0)
    for key in ("ksp", "maps", "img"):
        diff = np.linalg.norm(getattr(a, key) - getattr(b, key)) / np.linalg.norm(getattr(b, key))
        print(f"phase stabilisation, {key}: {20 * np.log10(diff) if diff else -np.inf:.1f} dB from the file without")


def partial_echo(work: Path, truth: np.ndarray) -> None:
    from mrirecon.data.source import open_source

    print("partial echo | has_reference | image all zero | mask samples on never-acquired rows | acquired")
    for echo, factor, rows in ((30, 1, 30), (60, 2, 30)):
        src = open_source(
            str(write_scan(work / f"pe{factor}.h5", truth, Scan(echo=echo, oversampling=factor))), options()
        )
        s = src.read(0)
        print(
            f"{echo} of {256 * factor} samples | {src.has_reference} | {not s.img.any()} | {int(s.mask[:rows].sum())} | {s.acquired}"
        )


def default_mask(work: Path, truth: np.ndarray, maps: np.ndarray, reference: np.ndarray) -> None:
    from mrirecon.data import masks
    from mrirecon.data.source import open_source

    s = open_source(str(write_scan(work / "full.h5", truth, Scan())), options(accel=4)).read(0)
    whole = int((s.mask == 1).all(0).sum())
    print(f"default mask (R 4) on a fully sampled 2D file: {whole} of {int(s.mask.any(0).sum())} sampled lines whole")
    if not hasattr(masks, "vd_lines"):
        return  # a version without line masks
    poisson = masks.poisson_mask((256, 256), 4.0, 24, 723)
    lines = np.broadcast_to(masks.vd_lines(256, 4.0, 24, 723)[None], (256, 256)).astype(np.float32)
    for method in ("cg_sense", "cs_wavelet"):
        got = [recon_psnr(s.ksp, m, maps, reference, method) for m in (poisson, lines)]
        print(f"{method}: Poisson disc (undersamples the readout) {got[0]:.2f} dB, whole lines {got[1]:.2f} dB")


def density(truth: np.ndarray, maps: np.ndarray, reference: np.ndarray) -> None:
    from mrirecon.data import masks

    print("line density (1 - |k|/k_max)^p | R | calib | cg_sense PSNR | cs_wavelet PSNR (mean of seeds 0-3)")
    for accel, calib in ((4, 24), (6, 16)):
        for power in (0, 1, 2, 3, 4):
            masks.LINE_POWER = power
            got = {m: [] for m in ("cg_sense", "cs_wavelet")}
            for seed in range(4):
                mask = np.broadcast_to(masks.vd_lines(256, accel, calib, seed)[None], (256, 256)).astype(np.float32)
                for m, values in got.items():
                    values.append(recon_psnr(truth[0], mask, maps, reference, m))
            print(
                f"p = {power} | {accel} | {calib} | {np.mean(got['cg_sense']):.2f} | {np.mean(got['cs_wavelet']):.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", action="store_true", help="the line-mask density table")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from mrirecon.data.completion import espirit_maps, sense_combine

    torch.set_num_threads(args.threads)
    truth = phantom(1)
    maps = espirit_maps(truth[0], 24, 0.02, 0.95)
    reference = sense_combine(truth[0], maps)
    if args.density:
        density(truth, maps, reference)
        return
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        calibration(work, truth, maps, reference)
        stabilisation(work, truth)
        partial_echo(work, truth)
        default_mask(work, truth, maps, reference)


if __name__ == "__main__":
    main()
