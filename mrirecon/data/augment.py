"""Training augmentations that multiply a small data set: new random sampling masks, exact
flips, random phase and extra k-space noise, applied to a training batch before the loss. With `measured_only`
(unsupervised training) they touch measured k-space samples only.

Torch only; no network knowledge. Every draw comes from the step's `torch.Generator` (CPU),
so a step repeats exactly on resume, and every slice of the batch gets its own draws.
`augment` is the entry point (used by the trainable families; any trainable may call it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mrirecon.data.batch import Batch, collate
from mrirecon.data.masks import fastmri_random_columns, poisson_mask
from mrirecon.physics.fft import fft2c, ifft2c
from mrirecon.physics.noise import complex_noise

log = logging.getLogger(__name__)
_SEED_MAX = 2**31 - 1 - 5 * 10**6  # poisson_mask adds up to 4 * 10^6 to the seed on a retry


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, _SEED_MAX, (1,), generator=generator))


def _uniform(generator: torch.Generator, low: float, high: float, n: int = 1) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


# -- masks ----------------------------------------------------------------------------------------
def _centred_start(size: int, side: int) -> int:
    """First index of a centred block of `side` in `size` (sigpy's placement of the calibration)."""
    return math.floor(size / 2 - side / 2)


def calibration_size(mask: np.ndarray) -> int:
    """Side of the largest centred fully sampled square of a mask (X, Y) (sigpy's placement)."""
    x, y = mask.shape
    sampled = mask != 0
    best = 0
    for side in range(1, min(x, y) + 1):
        sx, sy = _centred_start(x, side), _centred_start(y, side)
        if sampled[sx : sx + side, sy : sy + side].all():
            best = side
    return best


def is_column_mask(mask: np.ndarray) -> bool:
    """True when every row of each column is equal (fastMRI style: whole phase-encode columns)."""
    return bool((mask == mask[:1, :]).all())


def central_columns(columns: np.ndarray) -> int:
    """Number of central columns always sampled (largest centred run, fastMRI's placement)."""
    w = len(columns)
    best = 0
    for num in range(1, w + 1):
        pad = (w - num + 1) // 2
        if columns[pad : pad + num].all():
            best = num
    return best


def random_mask_like(
    mask: np.ndarray, generator: torch.Generator, acquired: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """A new random mask (X, Y) float32 with the same number of measured samples and the same
    calibration as `mask`, drawn inside the acquired region `acquired` (x0, x1, y0, y1), half-open,
    e.g. without fastMRI's zero padding (None: the whole grid); zero outside it.

    Column masks (fastMRI): a fastMRI random column mask with the same central columns, then
    random non-central columns added or removed so that the column count is exactly the same.
    Other masks: a Poisson-disc mask (sigpy) with the same calibration square and acceleration
    X*Y / samples (sigpy meets it within its tolerance, about 2 % of the samples at 6x); when
    sigpy cannot make one, the slice keeps its own mask. A fully sampled or empty mask is kept.
    """
    mask = np.asarray(mask)
    if acquired is not None and tuple(acquired) != (0, mask.shape[0], 0, mask.shape[1]):
        x0, x1, y0, y1 = acquired
        out = np.zeros(mask.shape, dtype=np.float32)
        out[x0:x1, y0:y1] = random_mask_like(mask[x0:x1, y0:y1], generator)
        return out
    x, y = mask.shape
    samples = int((mask != 0).sum())
    if samples in (0, mask.size):
        return mask.astype(np.float32)
    if is_column_mask(mask):
        columns = mask[0] != 0
        count, num_low = int(columns.sum()), central_columns(columns)
        new = fastmri_random_columns(y, y / count, num_low / y, _seed(generator))
        pad = (y - num_low + 1) // 2
        outside = np.ones(y, dtype=bool)
        outside[pad : pad + num_low] = False
        diff = count - int(new.sum())
        if diff != 0:  # exact count: add (remove) random non-central unsampled (sampled) columns
            pool = np.flatnonzero(outside & (~new if diff > 0 else new))
            pick = pool[torch.randperm(len(pool), generator=generator)[: abs(diff)].numpy()]
            new[pick] = diff > 0
        return np.broadcast_to(new[None, :], (x, y)).astype(np.float32)
    calib = calibration_size(mask)
    try:
        return poisson_mask((x, y), mask.size / samples, calib, _seed(generator))
    except ValueError:
        return mask.astype(np.float32)


# -- phase ----------------------------------------------------------------------------------------
def smooth_phase(
    shape: tuple[int, int],
    generator: torch.Generator,
    amplitude: float = math.pi,
    waves: int = 3,
    max_cycles: float = 1.0,
) -> torch.Tensor:
    """A random smooth phase field phi (X, Y) float32 in radians: a uniform constant in
    [-pi, pi) plus a sum of `waves` random cosines of at most `max_cycles` cycles per field of
    view along each axis, scaled so that its largest magnitude is uniform in [0, amplitude]."""
    x, y = shape
    u = (torch.arange(x, dtype=torch.float64) / x - 0.5).view(-1, 1)
    v = (torch.arange(y, dtype=torch.float64) / y - 0.5).view(1, -1)
    field = torch.zeros(x, y, dtype=torch.float64)
    for _ in range(waves):
        fu, fv = _uniform(generator, -max_cycles, max_cycles, 2)
        offset = _uniform(generator, 0.0, 2 * math.pi)
        field = field + torch.cos(2 * math.pi * (fu * u + fv * v) + offset)
    peak = field.abs().max()
    scale = _uniform(generator, 0.0, amplitude) / peak if peak > 0 else 0.0
    constant = _uniform(generator, -math.pi, math.pi)
    return (constant + scale * field).to(torch.float32)


# -- flips ----------------------------------------------------------------------------------------
def reverse_frequencies(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Centred k-space samples (or a mask) at frequency f moved to -f along `dim`: a flip for an
    odd size; for an even size N, where the grid runs from -N/2 to N/2 - 1, a flip and a roll
    by one sample (-N/2 stays in place). A permutation: no value is changed."""
    flipped = torch.flip(t, [dim])
    return flipped if t.shape[dim] % 2 else torch.roll(flipped, 1, dim)


def flip_kspace(ksp: torch.Tensor, dim: int) -> torch.Tensor:
    """The centred k-space of torch.flip(image, dim) from the centred k-space `ksp` of the image
    (fft2c's convention), without touching the image: for an odd size the flip maps position
    p -> -p, so k(f) -> k(-f); for an even size N it maps p -> -p - 1 (the grid's centre is
    N/2), so k(f) -> exp(2 pi i f / N) k(-f). Measured samples go to measured places of the
    mask flipped by `reverse_frequencies`, so no unmeasured sample is read."""
    out = reverse_frequencies(ksp, dim)
    n = ksp.shape[dim]
    if n % 2:
        return out
    f = torch.arange(n, dtype=torch.float64, device=ksp.device) - n // 2
    ramp = torch.polar(torch.ones_like(f), 2 * math.pi * f / n).to(ksp.dtype)
    return out * ramp.reshape([n if d == dim % ksp.ndim else 1 for d in range(ksp.ndim)])


def _flip_slice(item: Batch, dims: list[int]) -> Batch:
    """A batch of one slice flipped along the image axes `dims`: images and maps by torch.flip,
    k-space and mask exactly in k-space (`flip_kspace`, `reverse_frequencies`)."""
    for dim in dims:
        item = item.replace(
            ksp=flip_kspace(item.ksp, dim),
            mask=reverse_frequencies(item.mask, dim),
            maps=torch.flip(item.maps, [dim]),
            img=None if item.img is None else torch.flip(item.img, [dim]),
        )
    return item


def _rotate_slice(item: Batch, phase: torch.Tensor) -> Batch:
    """A batch of one slice: its coil images and reference times exp(i phase) (radians, a scalar
    or (X, Y)); a scalar multiplies k-space directly (exact, sample by sample), a field goes
    through the coil images (a convolution in k-space: fully sampled k-space only)."""
    ksp = item.ksp
    rot = torch.polar(torch.ones_like(phase), phase).to(device=ksp.device, dtype=ksp.dtype)
    return item.replace(
        ksp=ksp * rot if phase.ndim == 0 else fft2c(ifft2c(ksp) * rot).to(ksp.dtype),
        img=None if item.img is None else item.img * rot.to(item.img.dtype),
    )


# -- the batch ------------------------------------------------------------------------------------
def measured(batch: Batch) -> Batch:
    """The batch with its k-space zero wherever the mask is 0: what was measured, nothing else."""
    ksp = batch.ksp
    return batch.replace(ksp=torch.where(batch.mask.unsqueeze(1) != 0, ksp, ksp.new_zeros(())))


def add_noise(batch: Batch, stdev: float, generator: torch.Generator) -> Batch:
    """The batch with complex Gaussian noise of std `stdev` (the file's k-space units) added to
    its k-space and its noise std the total, sqrt(noise_std^2 + stdev^2) (NaN stays NaN:
    estimated later); unchanged for stdev 0."""
    if stdev <= 0:
        return batch
    ksp = batch.ksp + complex_noise(tuple(batch.ksp.shape), stdev, generator, batch.ksp.dtype).to(batch.ksp.device)
    noise_std = batch.noise_std.to(ksp.real.dtype)
    return batch.replace(ksp=ksp, noise_std=(noise_std**2 + stdev**2).sqrt())


def augment(
    batch: Batch,
    generator: torch.Generator,
    *,
    random_masks: bool = False,
    flip: bool = False,
    random_phase: bool = False,
    stdev: float = 0.0,
    measured_only: bool = False,
) -> Batch:
    """Augment one training batch; returns a new batch (the input tensors are not modified).

    Args:
        batch: the slices (its reference `img` may be absent: unsupervised training; its
            `acquired` regions are where random masks are drawn, so fastMRI's zero padding stays
            unmeasured); `noise_std`, `index`, `crop` pass through unchanged (but for `stdev`).
        generator: CPU generator; the only source of randomness (each slice draws its own).
        random_masks: a new random mask per slice with the slice's number of samples and
            calibration (`random_mask_like`); needs fully sampled k-space.
        flip: per slice a random left-right (last axis) and a random up-down (X axis) flip,
            each with probability 1/2, done exactly: maps and img by torch.flip, k-space and
            mask by the matching permutation of frequencies (and, for even sizes, a linear
            phase: `flip_kspace`), so measured samples stay measured and the noise stays white.
        random_phase: coil images and img times exp(i phi): phi a random smooth field
            (`smooth_phase`, radians) on fully sampled k-space; a random constant phase with
            `measured_only` (a smooth field would mix unmeasured samples into measured ones).
            Maps unchanged, so ksp = fft2c(maps * img) still holds. Meaningful for complex data.
        stdev: extra complex k-space noise of this std added last (`add_noise`; 0: none).
        measured_only: the k-space outside the mask is never read (unsupervised training): it
            is zeroed first, every augmentation maps measured samples to measured samples, and
            random_masks is refused (a new mask with the same number of samples needs samples
            that were not measured).

    Order per slice: mask, flip, phase; then the noise. Without measured_only and with no
    option set the batch is returned as is.
    """
    if measured_only:
        if random_masks:
            raise ValueError(
                "random_masks: a new mask with the slice's number of samples needs k-space that was not "
                "measured; with measured data only, the SSDU holdout draws a new subset of the mask instead"
            )
        batch = measured(batch)
    if random_masks:
        batch = batch.replace(mask=_random_masks(batch.mask, generator, batch.acquired))
    if flip or random_phase:
        batch = _flip_and_rotate(batch, generator, flip, random_phase, measured_only)
    return add_noise(batch, stdev, generator)


def _random_masks(mask: torch.Tensor, generator: torch.Generator, acquired: torch.Tensor) -> torch.Tensor:
    """A new random mask (B, X, Y) per slice like `mask`'s (`random_mask_like`), inside each
    slice's acquired region (B, 4), drawn slice by slice in a fixed order."""
    mask_np = mask.detach().cpu().numpy()
    regions = [(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in acquired.tolist()]
    masks = [random_mask_like(mask_np[k], generator, regions[k]) for k in range(mask.shape[0])]
    return torch.from_numpy(np.stack(masks)).to(dtype=mask.dtype, device=mask.device)


def _flip_and_rotate(
    batch: Batch, generator: torch.Generator, flip: bool, random_phase: bool, measured_only: bool
) -> Batch:
    """`augment`'s flips and phases, slice by slice: the flips of all slices are drawn first,
    then their phases (a constant with `measured_only`, else a smooth field)."""
    b, (x, y) = batch.size, batch.ksp.shape[-2:]
    flips = (torch.rand(b, 2, generator=generator) < 0.5).tolist() if flip else [[False, False]] * b
    phases: list[torch.Tensor | None] = [None] * b
    if random_phase:
        phases = [
            _uniform(generator, -math.pi, math.pi)[0] if measured_only else smooth_phase((x, y), generator)
            for _ in range(b)
        ]
    slices = []
    for k in range(b):
        item = _flip_slice(batch.part(k, k + 1), [d for d, on in zip((-1, -2), flips[k]) if on])
        phase = phases[k]
        slices.append(item if phase is None else _rotate_slice(item, phase))
    return collate(slices)


def augmentations_for(train: Mapping[str, Any], bits: int | None) -> dict[str, bool]:
    """The keyword arguments of `augment` from a training config's random_masks, flip and
    random_phase; random_phase is dropped (logged) for data of a bit depth (real images)."""
    chosen = {key: bool(train.get(key, False)) for key in ("random_masks", "flip", "random_phase")}
    if chosen["random_phase"] and bits is not None:
        log.info("train.random_phase skipped: the %d-bit variant has real (magnitude) images", bits)
        chosen["random_phase"] = False
    return chosen


def augmentation_label(augmentations: Mapping[str, bool]) -> dict[str, str]:
    """{'augment': 'random_masks+flip'} for the augmentations used, {} for none: recorded in a
    reconstruction's method config, so evaluate tells augmented runs apart."""
    used = [name for name, on in augmentations.items() if on]
    return {"augment": "+".join(used)} if used else {}
