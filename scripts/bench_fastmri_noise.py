#!/usr/bin/env python
"""Noise estimate on fastMRI-layout files with padded phase-encode columns: this reader against
the phase-encode crop in image space that the reader of before made.

Real data: the 4-coil phantom scan (tests/assets/phantom_4coil_gre_256.npy, fully sampled, real
scanner noise) written as a fastMRI file (tests/formats_helpers.write_fastmri) whose outer P
columns a side are zero padding stated by the header's encodingLimits, recon size 256 x 192.
Truth: the RMS of the original k-space's four 24 x 24 corners (no signal there). Simulated data:
smooth 8-coil phantoms (readout 2x oversampled, 48 columns, recon 32 x 32) with white k-space
noise of known level. Each estimate is physics/noise.py's on the slice's measured samples
(fastMRI random mask, R = 4): `reader` is mrirecon's fastMRI reader (padding never measured),
`image-space crop` crops the coil images to the recon width and transforms back (what the
reader did before: the zero padding is smeared over the periphery). Deterministic; prints a table.

Usage: python scripts/bench_fastmri_noise.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # formats_helpers: the test files' writers

import numpy as np
import torch
from formats_helpers import centred_fftn, centred_ifftn, oversampled_coils, write_fastmri

from mrirecon.data.masks import make_mask
from mrirecon.data.source import ReadOptions, open_source
from mrirecon.data.transforms import center_crop
from mrirecon.physics.noise import estimate_noise_std

OPTIONS = ReadOptions(calib_width=12, mask="fastmri_random", accel=4.0)


def estimate(ksp: np.ndarray, mask: np.ndarray) -> float:
    return float(estimate_noise_std(torch.from_numpy(ksp * mask), torch.from_numpy(mask)))


def image_space_crop(path: Path, i: int, recon: tuple[int, int]) -> float:
    """The estimate after cropping the coil images to `recon` (the reader of before)."""
    import h5py

    with h5py.File(path) as f:
        k = f["kspace"][i]
    cropped = centred_fftn(center_crop(centred_ifftn(k, (-2, -1)), recon), (-2, -1)).astype(np.complex64)
    mask = make_mask("fastmri_random", recon, 4.0, 0, 0.08, 723 + i)
    return estimate(cropped, mask)


def reader(path: Path, i: int) -> float:
    s = open_source(str(path), OPTIONS).read(i)
    return estimate(s.ksp, s.mask)


def main() -> None:
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench_fastmri_noise_"))
    phantom = np.load(ROOT / "tests" / "assets" / "phantom_4coil_gre_256.npy")
    corners = [phantom[:, a, b] for a in (slice(0, 24), slice(-24, None)) for b in (slice(0, 24), slice(-24, None))]
    truth = float(np.sqrt(np.mean(np.concatenate([np.abs(c).ravel() ** 2 for c in corners]))))
    rows = []
    for pad in (0, 12, 24):
        path = work / f"phantom_pad{pad}.h5"
        write_fastmri(path, centred_ifftn(phantom, (-2, -1))[None], (256, 192), padding=(pad, 256 - pad))
        rows.append(
            ("real phantom (4 coils)", pad, reader(path, 0) / truth, image_space_crop(path, 0, (256, 192)) / truth)
        )
    sigma = float(np.sqrt(2e-4 + 0.02**2))  # phantom_coils' image noise and the added k-space noise
    coils = oversampled_coils(3)
    for pad in (0, 4, 8):
        path = work / f"synthetic_pad{pad}.h5"
        write_fastmri(path, coils, (32, 32), padding=(pad, 48 - pad), noise=0.02)
        ours = np.median([reader(path, i) for i in range(3)]) / sigma
        before = np.median([image_space_crop(path, i, (32, 32)) for i in range(3)]) / sigma
        rows.append(("simulated (8 coils, median of 3 slices)", pad, ours, before))
    print("| data | padded columns a side | estimate / truth, reader | estimate / truth, image-space crop |")
    print("|---|---|---|---|")
    for name, pad, ours, before in rows:
        print(f"| {name} | {pad} | {ours:.3f} | {before:.3f} |")


if __name__ == "__main__":
    main()
