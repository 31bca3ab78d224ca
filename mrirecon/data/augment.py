"""Training augmentations that multiply a small data set: new random sampling masks, exact
flips and smooth random phase, applied to a training batch before the loss.

Torch only; no network knowledge. Every draw comes from the step's `torch.Generator` (CPU),
so a step repeats exactly on resume, and every slice of the batch gets its own draws.
`augment` is the entry point (used by the unrolled trainable; any trainable may call it).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mrirecon.data.masks import fastmri_random_columns, poisson_mask
from mrirecon.physics.fft import fft2c, ifft2c

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


def random_mask_like(mask: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """A new random mask (X, Y) float32 with the same number of measured samples and the same
    calibration as `mask`.

    Column masks (fastMRI): a fastMRI random column mask with the same central columns, then
    random non-central columns added or removed so that the column count is exactly the same.
    Other masks: a Poisson-disc mask (sigpy) with the same calibration square and acceleration
    X*Y / samples (sigpy meets it within its tolerance, about 2 % of the samples at 6x); when
    sigpy cannot make one, the slice keeps its own mask. A fully sampled or empty mask is kept.
    """
    mask = np.asarray(mask)
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


# -- the batch ------------------------------------------------------------------------------------
def augment(
    batch: dict[str, torch.Tensor],
    generator: torch.Generator,
    *,
    random_masks: bool = False,
    flip: bool = False,
    random_phase: bool = False,
) -> dict[str, torch.Tensor]:
    """Augment one training batch; returns a new dict (the input tensors are not modified).

    Args:
        batch: 'ksp' (B, C, X, Y) complex fully sampled k-space (with the data's own noise),
            'maps' (B, C, X, Y) complex coil maps, 'mask' (B, X, Y) float in {0, 1}, optionally
            'img' (B, X, Y) complex reference (absent in unsupervised training); other keys
            ('noise_std', 'index', ...) pass through unchanged.
        generator: CPU generator; the only source of randomness (each slice draws its own).
        random_masks: a new random mask per slice with the slice's number of samples and
            calibration (`random_mask_like`); the k-space is fully sampled, so nothing else changes.
        flip: per slice a random left-right (last axis) and a random up-down (X axis) flip,
            each with probability 1/2, done exactly: coil images ifft2c(ksp), maps and img are
            flipped alike and ksp = fft2c(flipped coil images) (the unitary FFT keeps the
            noise white). The mask is kept.
        random_phase: coil images and img times exp(i phi), phi a random smooth field
            (`smooth_phase`, radians), ksp = fft2c(the new coil images); maps unchanged, so
            ksp = fft2c(maps * img) still holds. Meaningful for complex data only.

    Order per slice: mask, flip, phase. With no option set the batch is returned as is.
    """
    if not (random_masks or flip or random_phase):
        return batch
    out = dict(batch)
    ksp, maps, mask = batch["ksp"], batch["maps"], batch["mask"]
    img = batch.get("img")
    b, (x, y) = ksp.shape[0], ksp.shape[-2:]
    flips: list[tuple[bool, bool]] = [(False, False)] * b
    phases: list[torch.Tensor | None] = [None] * b
    if random_masks:  # draws slice by slice, in a fixed order
        mask_np = mask.detach().cpu().numpy()
        masks = [random_mask_like(mask_np[k], generator) for k in range(b)]
        out["mask"] = torch.from_numpy(np.stack(masks)).to(dtype=mask.dtype, device=mask.device)
    if flip:
        draws = torch.rand(b, 2, generator=generator) < 0.5
        flips = [(bool(draws[k, 0]), bool(draws[k, 1])) for k in range(b)]
    if random_phase:
        phases = [smooth_phase((x, y), generator) for _ in range(b)]
    if not (flip or random_phase):
        return out
    coil = ifft2c(ksp)
    new_coil, new_maps, new_img = [], [], []
    for k in range(b):
        c, m, i = coil[k], maps[k], None if img is None else img[k]
        dims = [d for d, on in zip((-1, -2), flips[k]) if on]
        if dims:
            c, m = torch.flip(c, dims), torch.flip(m, dims)
            i = None if i is None else torch.flip(i, dims)
        if phases[k] is not None:
            rot = torch.polar(torch.ones_like(phases[k]), phases[k]).to(device=ksp.device, dtype=ksp.dtype)
            c = c * rot
            i = None if i is None else i * rot.to(i.dtype)
        new_coil.append(c)
        new_maps.append(m)
        new_img.append(i)
    out["ksp"] = fft2c(torch.stack(new_coil)).to(ksp.dtype)
    out["maps"] = torch.stack(new_maps)
    if img is not None:
        out["img"] = torch.stack(new_img)
    return out


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
