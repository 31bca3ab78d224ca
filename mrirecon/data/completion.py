"""Completing raw k-space into DeepInPy slices, shared by the readers of data/source.py.

`ReadOptions` carries the `data.*` settings readers need; `complete_slice` turns one slice of
k-space (C, X, Y) into img, maps, ksp, mask: ESPIRiT maps (unless given), and when the k-space
is fully sampled the SENSE-combined reference sum_c conj(S_c) ifft2c(k_c) and an undersampling
mask from `data/masks.py` that the acquisition could have measured (whole phase-encode lines
for 2D data: `masks.resolve_kind`); undersampled k-space keeps its own pattern and has no
reference.

`MapEstimator` makes the ESPIRiT maps of a file's slices from their fully sampled calibration
block: the largest centred fully sampled square of the imaging k-space or of the calibration
data given with it (ISMRMRD calibration lines), whichever is larger; when it is smaller than
`calib_width` the maps come from the block (a warning names its size, once per file).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from mrirecon.data.h5 import Slice, region_mask, whole_grid
from mrirecon.data.masks import MaskError, Seed, make_mask, resolve_kind
from mrirecon.data.transforms import ifft2c_numpy

Settings = TypeVar("Settings")
log = logging.getLogger(__name__)
KERNEL_WIDTH = 6  # ESPIRiT's kernel (physics/coils.py, sigpy's default): the least calibration block


@dataclass(frozen=True)
class ReadOptions:
    """How readers complete and shape the data (the `data.*` keys preprocess passes on).

    transpose: swap the last two axes (DeepInPy and raw readers).
    calib_width, thresh, crop: ESPIRiT's calibration width (pixels), threshold and crop.
    mask, accel, calib, center_fraction, seed: the undersampling mask of fully sampled k-space
        (masks.resolve_kind, masks.make_mask; auto: whole lines for 2D data, Poisson disc for
        3D); one mask per volume (file), seeded by (seed, the file name's characters) as
        fastMRI's data transforms seed theirs (masks.volume_seed; seed None: fastMRI's own
        file-name seed), for fastMRI, ISMRMRD and BART files alike.
    readout: allow a mask that undersamples the readout of 2D data (poisson on 2D data).
    slices_per_subject: slices per subject in files that record no subjects (None: one subject
        per file when several files are read together).
    device: torch device of the ESPIRiT computation ('cpu', 'cuda', ...).
    prewhiten: 'auto' | 'true' (prewhiten with the noise scans' covariance when the file has
        noise-only readouts: ISMRMRD) | 'false' (never).
    formats: the settings of single formats (e.g. the ISMRMRD reader's buffer), one object per
        format that has any (`source.Format.options`); a format finds its own with `of`.
    """

    transpose: bool = False
    calib_width: int = 24
    thresh: float = 0.02
    crop: float = 0.95
    mask: str = "auto"
    readout: bool = False
    accel: float = 6.0
    calib: int = 24
    center_fraction: float = 0.08
    seed: int | None = 723
    slices_per_subject: int | None = None
    device: str = "cpu"
    prewhiten: str = "auto"
    formats: tuple[object, ...] = ()

    def of(self, kind: type[Settings]) -> Settings:
        """The settings of type `kind` in `formats`, else `kind()` (its defaults)."""
        for found in self.formats:
            if isinstance(found, kind):
                return found
        return kind()


def espirit_maps(ksp: np.ndarray, calib_width: int, thresh: float, crop: float, device: str = "cpu") -> np.ndarray:
    """ESPIRiT coil maps (C, X, Y) or (B, C, X, Y) complex64 from centred k-space of the same
    shape: sigpy's EspiritCalib maps, computed batched in torch on `device`
    (physics/coils.py; scripts/bench_preprocess.py --espirit compares the two)."""
    import torch

    from mrirecon.physics.coils import espirit_maps as torch_espirit

    maps = torch_espirit(torch.from_numpy(np.ascontiguousarray(ksp)).to(device), calib_width, thresh, crop)
    return maps.cpu().numpy()


def mask_label(options: ReadOptions, two_d: bool, reference: bool) -> str:
    """The mask a reader's slices get, for provenance: the kind drawn for fully sampled data
    (`masks.resolve_kind`; the option itself when it does not fit, refused on read), else
    'acquired' (the file's own sampling)."""
    if not reference:
        return "acquired"
    try:
        return resolve_kind(options.mask, two_d, options.readout)
    except MaskError:
        return options.mask


def calibration_block(sampled: np.ndarray) -> int:
    """Side of the largest centred square of `sampled` (X, Y) bool that is all True, placed as
    ESPIRiT's calibration region (start size // 2 - side // 2 on each axis)."""
    x, y = sampled.shape
    side = 0
    while side < min(x, y):
        w = side + 1
        sx, sy = x // 2 - w // 2, y // 2 - w // 2
        if not sampled[sx : sx + w, sy : sy + w].all():
            break
        side = w
    return side


class MapEstimator:
    """ESPIRiT maps of one file's slices from their fully sampled calibration block (see the
    module docstring).

    Args:
        options: calib_width, thresh, crop and device of ESPIRiT.
        name: the file, for the warning.
    """

    def __init__(self, options: ReadOptions, name: str) -> None:
        self.options, self.name = options, name
        self.warned = False

    def __call__(self, ksp: np.ndarray, calibration: np.ndarray | None = None) -> np.ndarray:
        """Maps (C, X, Y) complex64 from k-space (C, X, Y) and optional calibration data of the
        same shape; ValueError when neither has a fully sampled centre of KERNEL_WIDTH^2."""
        candidates = [ksp] if calibration is None else [ksp, calibration]
        sides = [calibration_block(np.abs(k).sum(0) > 0) for k in candidates]
        best = int(np.argmax(sides))
        side, source = sides[best], candidates[best]
        o = self.options
        if side < KERNEL_WIDTH:
            raise ValueError(
                f"no fully sampled calibration block of at least {KERNEL_WIDTH}x{KERNEL_WIDTH} (ESPIRiT's kernel) "
                f"in the k-space centre (largest {side}x{side}): coil maps cannot be estimated"
            )
        width = min(o.calib_width, side)
        if width < o.calib_width and not self.warned:
            log.warning(
                "%s: the fully sampled calibration block is %dx%d, smaller than ESPIRiT's calib_width %d: "
                "coil maps from the %dx%d block",
                self.name,
                side,
                side,
                o.calib_width,
                side,
                side,
            )
            self.warned = True
        return espirit_maps(source, width, o.thresh, o.crop, o.device)


def fully_sampled(ksp: np.ndarray, acquired: tuple[int, int, int, int] | None = None) -> bool:
    """True when every k-space location (X, Y) of `ksp` (C, X, Y) inside the acquired region
    (x0, x1, y0, y1; None: everywhere) holds data in some coil."""
    x0, x1, y0, y1 = whole_grid(ksp.shape) if acquired is None else acquired
    return bool(np.all(np.abs(ksp[:, x0:x1, y0:y1]).sum(0) > 0))


def sense_combine(ksp: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """sum_c conj(S_c) ifft2c(k_c): (X, Y) complex64 from ksp and maps (C, X, Y)."""
    return np.sum(np.conj(maps) * ifft2c_numpy(ksp), axis=0).astype(np.complex64)


def complete_slice(
    ksp: np.ndarray,
    index: int,
    options: ReadOptions,
    maps: np.ndarray | None = None,
    rss: np.ndarray | None = None,
    acquired: tuple[int, int, int, int] | None = None,
    seed: Seed | None = None,
    reference: bool | None = None,
    two_d: bool = False,
) -> Slice:
    """A DeepInPy slice from k-space (C, X, Y): maps (given, or ESPIRiT), and when `ksp` is fully
    sampled inside the acquired region (x0, x1, y0, y1; None: the whole grid) the SENSE-combined
    reference and an `options.mask` mask with `seed` (None: options.seed + index) for 2D data
    (`two_d`: X is a readout) or 3D ((ky, kz) planes); otherwise a zero reference and the
    acquired pattern as the mask. The mask is zero outside the acquired region (padding is never
    measured). `reference` True/False says which case it is (the file declares it; None: decided
    from the data). MaskError for a mask that cannot be made or does not fit the data."""
    ksp = np.ascontiguousarray(ksp, dtype=np.complex64)
    if maps is None:
        maps = espirit_maps(ksp, options.calib_width, options.thresh, options.crop, options.device)
    if fully_sampled(ksp, acquired) if reference is None else reference:
        img = sense_combine(ksp, maps)
        if seed is None:
            seed = (options.seed or 0) + index
        kind = resolve_kind(options.mask, two_d, options.readout)
        columns = None if acquired is None else (acquired[2], acquired[3])
        o = options
        mask = make_mask(kind, ksp.shape[1:], o.accel, o.calib, o.center_fraction, seed, columns)
    else:
        img = np.zeros(ksp.shape[1:], np.complex64)
        mask = (np.abs(ksp).sum(0) > 0).astype(np.float32)
    if acquired is not None:  # padding is never measured
        mask = mask * region_mask(acquired, ksp.shape[1:])
    return Slice(
        img=img,
        maps=np.asarray(maps, np.complex64),
        ksp=ksp,
        mask=mask,
        rss=None if rss is None else np.asarray(rss, np.float32),
        acquired=acquired,
    )


class OneSubjectFile:
    """Mixin for readers of one acquisition per file: no stored splits, every slice one subject
    (the file), no image crop for the metrics unless the reader sets `recon_size`. Needs
    `num_slices`."""

    num_slices: int
    recon_size: tuple[int, int] | None = None

    def splits(self) -> None:
        return None

    def subjects(self) -> np.ndarray:
        return np.zeros(self.num_slices, dtype=np.int64)
