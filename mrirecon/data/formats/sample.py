"""The embedded sample: 15 real knee magnitudes turned into a multi-coil DeepInPy dataset.

Real anatomy (Stanford Fully Sampled 3D FSE Knees, see assets/README.md); simulated smooth
phase, birdcage coil maps normalised to sum_c |S_c|^2 = 1, variable-density Poisson-disc
masks with a fully sampled calibration square, and complex Gaussian k-space noise at the peak
SNR of real scans (NOISE: measured on the real scans the tests carry, see the README).
Everything is a deterministic function of the seed. It offers the reading interface of
`DeepInPyFile` (len, read, shape, splits, subjects).

A named source (`data.source=sample`, the default), not a file; its own settings are
`data.sample.*` (conf/preprocess.yaml).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mrirecon.data import masks
from mrirecon.data.completion import ReadOptions
from mrirecon.data.h5 import Slice
from mrirecon.data.source import Format, Source, register_format
from mrirecon.data.transforms import fft2c_numpy, with_noise
from mrirecon.errors import UserError

# Noise standard deviation per k-space sample relative to the image maximum (1 / peak SNR).
# The real scans in tests/assets have peak SNR max|x| / sigma of 50-57 (sigma from the k-space
# periphery, scripts/bench_real.py); 0.018 is about 1 / 55.
NOISE = 0.018

ATTRIBUTION = (
    "Stanford Fully Sampled 3D FSE Knees (mridata.org), slice 160 of 15 subjects, via "
    "LarsonLab/dnlinv (BSD 3-Clause, (c) 2021 Andrew P. Leynes and The Regents of the "
    "University of California); phase, coil maps and masks simulated by mrirecon"
)


@functools.lru_cache(maxsize=1)
def knee_magnitudes() -> np.ndarray:
    """The 15 real knee slices, (15, 320, 256) float32, each scaled to a maximum of 1."""
    with resources.files("mrirecon.data").joinpath("assets/knee_rss_320x256.npz").open("rb") as fh:
        knees = np.load(fh)["knee_rss"].astype(np.float32)
    return knees / knees.max(axis=(1, 2), keepdims=True)


@functools.lru_cache(maxsize=4)
def birdcage_maps(coils: int, shape: tuple[int, int]) -> np.ndarray:
    """Simulated birdcage coil maps (coils, X, Y) complex64 with sum_c |S_c|^2 = 1."""
    import sigpy.mri  # slow import (numba): only when the sample is built

    maps = sigpy.mri.birdcage_maps((coils, *shape))
    maps = maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    return maps.astype(np.complex64)


@functools.lru_cache(maxsize=64)
def poisson_mask(shape: tuple[int, int], accel: float, calib: int, seed: int) -> np.ndarray:
    """Variable-density Poisson-disc mask (X, Y) float32 in {0, 1} with a calib x calib centre (cached)."""
    return masks.poisson_mask(shape, accel, calib, seed)


def smooth_phase(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random second-order polynomial phase map (X, Y) in radians, like a real B0/receive phase."""
    u, v = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    coeffs = rng.normal(0.0, [np.pi, 1.0, 1.0, 0.5, 0.5, 0.5])
    terms = [np.ones_like(u), u, v, u * u, v * v, u * v]
    return sum(c * t for c, t in zip(coeffs, terms)).astype(np.float32)


class SampleSource:
    """The embedded sample as a read-only dataset.

    Args:
        accel: target acceleration of the Poisson-disc masks (> 1).
        calib: side of the fully sampled calibration square (pixels).
        coils: number of simulated coils.
        seed: base seed; slice i uses seed + i.
        noise: k-space noise standard deviation relative to the image maximum (>= 0; 0: none).
    """

    def __init__(
        self, accel: float = 6.0, calib: int = 24, coils: int = 8, seed: int = 723, noise: float = NOISE
    ) -> None:
        if not accel > 1:
            raise UserError(f"data.sample.accel: {accel} must be > 1")
        if not 0 <= calib <= 256 or not coils >= 1:
            raise UserError(f"data.sample: calib {calib} must be in [0, 256] and coils {coils} >= 1")
        if not 0 <= float(noise) < 1:
            raise UserError(f"data.sample.noise: {noise} must be in [0, 1)")
        self.accel, self.calib, self.coils, self.seed = float(accel), int(calib), int(coils), int(seed)
        self.noise = float(noise)
        self.num_slices = knee_magnitudes().shape[0]
        self.num_coils = self.coils
        self.shape: tuple[int, int] = tuple(knee_magnitudes().shape[1:])
        self.path = "sample"
        self.has_reference = True
        self.has_rss = False
        self.recon_size: tuple[int, int] | None = None
        settings = {
            "accel": self.accel,
            "calib": self.calib,
            "coils": self.coils,
            "seed": self.seed,
            "noise": self.noise,
        }
        self.attrs: dict[str, Any] = {"attribution": ATTRIBUTION, **settings}  # preprocess stores source_<key>
        self.attrs["mask"] = "poisson"  # simulated Poisson-disc masks of (ky, kz) planes (3D knees)

    def __len__(self) -> int:
        return self.num_slices

    def read(self, i: int) -> Slice:
        """Slice i: complex image, maps, fully sampled noisy k-space, mask and noise_std."""
        rng = np.random.default_rng(self.seed + i)
        img = (knee_magnitudes()[i] * np.exp(1j * smooth_phase(self.shape, rng))).astype(np.complex64)
        maps = birdcage_maps(self.coils, self.shape)
        ksp = fft2c_numpy(maps * img[None]).astype(np.complex64)
        mask = poisson_mask(self.shape, self.accel, self.calib, self.seed + i)
        clean = Slice(img=img, maps=maps, ksp=ksp, mask=mask)
        std = self.noise * float(np.abs(img).max())
        return (
            with_noise(clean, std, np.random.default_rng((self.seed, i)))
            if std > 0
            else Slice(img=img, maps=maps, ksp=ksp, mask=mask, noise_std=0.0)
        )

    def splits(self) -> None:
        """The sample stores no splits; preprocess makes them."""
        return

    def subjects(self) -> np.ndarray:
        """One subject per slice (each slice comes from another knee)."""
        return np.arange(self.num_slices, dtype=np.int64)

    def close(self) -> None:
        pass


SETTINGS_KEY = "sample"


@dataclass(frozen=True)
class SampleOptions:
    """The keyword arguments of `SampleSource` (checked there)."""

    accel: float = 6.0
    calib: int = 24
    coils: int = 8
    seed: int = 723
    noise: float = NOISE


@register_format("sample")
class Sample(Format):
    """15 real knee magnitudes made into a multi-coil dataset (`SampleSource`)."""

    description = "the embedded sample (data.source=sample)"
    named = True

    @classmethod
    def options(cls, data: Mapping[str, Any]) -> SampleOptions:
        given = dict(data.get(SETTINGS_KEY) or {})
        known = [f.name for f in dataclasses.fields(SampleOptions)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"{SETTINGS_KEY}: unknown key '{unknown[0]}' (expected {', '.join(known)})")
        return SampleOptions(**given)

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        return SampleSource(**dataclasses.asdict(options.of(SampleOptions)))
