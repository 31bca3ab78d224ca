"""Undersampling masks for fully sampled k-space: Poisson disc (sigpy) and fastMRI's masks.

`fastmri_random` and `fastmri_equispaced` follow fastMRI's `subsample.py` (RandomMaskFunc and
EquispacedMaskFractionFunc with one center fraction and acceleration): columns (the last axis,
phase encodes) are chosen and every row of a chosen column is sampled; the central
`round(W * center_fraction)` columns are always sampled. Every mask is a deterministic function of
its seed, an integer or a tuple of integers as fastMRI's data transforms pass (the file name's
characters, `tuple(map(ord, name))`, so that every slice of a volume gets the same mask); with the
same seed the columns equal fastMRI's (tests/data/test_masks.py checks this against its code).
"""

from __future__ import annotations

import functools

import numpy as np

KINDS = ("poisson", "fastmri_random", "fastmri_equispaced")
BISECTION_STEPS = 64  # sigpy's slope bisection, bounded: float bisection of [0, max(X, Y)] stalls well before
Seed = int | tuple[int, ...]


def volume_seed(seed: int | None, name: str) -> Seed:
    """The mask seed of a volume stored in file `name`: fastMRI's `tuple(map(ord, name))` when
    `seed` is None (the masks fastMRI's own data transforms use), else (seed, *map(ord, name))."""
    characters = tuple(map(ord, name))
    return characters if seed is None else (int(seed), *characters)


def _int_seed(seed: Seed) -> int:
    """An integer seed (for sigpy) from an integer or a tuple seed."""
    return seed if isinstance(seed, int) else int(np.random.RandomState(seed).randint(0, 2**31 - 1))


class MaskError(ValueError):
    """A mask that cannot be made with the parameters given (the message names the parameter)."""


def poisson_mask(shape: tuple[int, int], accel: float, calib: int, seed: int) -> np.ndarray:
    """Variable-density Poisson-disc mask (X, Y) float32 in {0, 1} with a calib x calib centre.

    sigpy's generator misses the acceleration for an occasional seed (e.g. 160x128, accel 6,
    seed 740); then seed + 10^6, seed + 2 * 10^6, ... are tried (4 more); ValueError if all fail.
    """
    for attempt in range(5):
        try:
            return _sigpy_poisson((int(shape[0]), int(shape[1])), accel, (calib, calib), seed + attempt * 10**6)
        except ValueError:
            continue
    raise ValueError(f"Cannot generate mask to satisfy accel={accel}.")


def _sigpy_poisson(shape: tuple[int, int], accel: float, calib: tuple[int, int], seed: int) -> np.ndarray:
    """sigpy.mri.poisson(shape, accel, calib, seed=seed) (sigpy 0.1.27, BSD 3-Clause), with its
    bisection on the density slope bounded to BISECTION_STEPS: sigpy's own `while slope_min <
    slope_max` loop never ends when the target is out of reach and the bisection stalls on equal
    floats (e.g. 32x24, accel 6, calib 8x8, seed 723). Same slopes, same masks, else ValueError.
    Uses sigpy's sampler `sigpy.mri.samp._poisson`; restores NumPy's global RNG as sigpy does."""
    from sigpy.mri.samp import _poisson  # slow import (numba): only when a mask is made

    ny, nx = shape
    y, x = np.mgrid[:ny, :nx]
    x = np.maximum(abs(x - nx / 2) - calib[-1] / 2, 0)
    x /= x.max()
    y = np.maximum(abs(y - ny / 2) - calib[-2] / 2, 0)
    y /= y.max()
    r = np.sqrt(x**2 + y**2)
    state = np.random.get_state()
    try:
        slope_min, slope_max = 0.0, float(max(nx, ny))
        for _ in range(BISECTION_STEPS):
            slope = (slope_max + slope_min) / 2
            radius_x = np.clip((1 + r * slope) * nx / max(nx, ny), 1, None)
            radius_y = np.clip((1 + r * slope) * ny / max(nx, ny), 1, None)
            mask = _poisson(nx, ny, 30, radius_x, radius_y, calib, seed) * (r < 1)
            samples = float(np.sum(mask))
            actual = nx * ny / samples if samples else np.inf
            if abs(actual - accel) < 0.1:
                return (mask != 0).astype(np.float32)
            if actual < accel:
                slope_min = slope
            else:
                slope_max = slope
    finally:
        np.random.set_state(state)
    raise ValueError(f"Cannot generate mask to satisfy accel={accel}.")


def _low_frequencies(num_cols: int, center_fraction: float) -> tuple[int, int]:
    """(number of central columns, first central column), as fastMRI computes them."""
    num_low = round(num_cols * center_fraction)
    return num_low, (num_cols - num_low + 1) // 2


def fastmri_random_columns(num_cols: int, accel: float, center_fraction: float, seed: Seed) -> np.ndarray:
    """fastMRI's RandomMaskFunc: (num_cols,) bool. Outside the centre each column is kept with
    probability (num_cols / accel - num_low) / (num_cols - num_low)."""
    rng = np.random.RandomState(seed)
    num_low, pad = _low_frequencies(num_cols, center_fraction)
    prob = (num_cols / accel - num_low) / (num_cols - num_low) if num_cols > num_low else 1.0
    mask = rng.uniform(size=num_cols) < prob
    mask[pad : pad + num_low] = True
    return mask


def fastmri_equispaced_columns(num_cols: int, accel: float, center_fraction: float, seed: Seed) -> np.ndarray:
    """fastMRI's equispaced mask: (num_cols,) bool. The centre, plus columns at a random offset
    spaced by the adjusted acceleration accel (num_low - W) / (num_low accel - W), so that about
    num_cols / accel columns are sampled in all."""
    rng = np.random.RandomState(seed)
    num_low, pad = _low_frequencies(num_cols, center_fraction)
    mask = np.zeros(num_cols, dtype=bool)
    mask[pad : pad + num_low] = True
    denominator = num_low * accel - num_cols
    if denominator < 0:  # otherwise the centre alone reaches the acceleration
        adjusted = accel * (num_low - num_cols) / denominator
        offset = rng.randint(0, max(round(adjusted), 1))
        picked = np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.int64)
        mask[picked[picked < num_cols]] = True
    return mask


def make_mask(
    kind: str, shape: tuple[int, int], accel: float, calib: int, center_fraction: float, seed: Seed
) -> np.ndarray:
    """An undersampling mask (X, Y) float32 in {0, 1}; MaskError (a ValueError) when impossible.

    Args:
        kind: poisson, fastmri_random or fastmri_equispaced.
        shape: (X, Y); fastMRI masks choose columns of Y (the phase-encode axis).
        accel: target acceleration (> 1).
        calib: side of the Poisson mask's fully sampled square (pixels, >= 0).
        center_fraction: fraction of central columns of the fastMRI masks, in (0, 1).
        seed: the random seed (an integer or a tuple of integers).

    The last few masks are cached (one mask per volume is drawn once, not once per slice);
    each call returns its own copy.
    """
    key = (kind, (shape[0], shape[1]), accel, calib, center_fraction, seed)
    try:
        hash(key)
    except TypeError:  # a malformed value (e.g. a list): _make_mask names it
        return _make_mask(kind, shape, accel, calib, center_fraction, seed)
    return _cached_mask(*key).copy()


@functools.lru_cache(maxsize=8)
def _cached_mask(
    kind: str, shape: tuple[int, int], accel: float, calib: int, center_fraction: float, seed: Seed
) -> np.ndarray:
    return _make_mask(kind, shape, accel, calib, center_fraction, seed)


def _make_mask(
    kind: str, shape: tuple[int, int], accel: float, calib: int, center_fraction: float, seed: Seed
) -> np.ndarray:
    """`make_mask` without the cache."""
    if kind not in KINDS:
        raise MaskError(f"kind: unknown mask '{kind}' (expected {', '.join(KINDS)})")
    if isinstance(accel, bool) or not isinstance(accel, (int, float)) or not accel > 1:
        raise MaskError(f"accel: {accel!r} must be a number > 1")
    if kind == "poisson":
        if isinstance(calib, bool) or not isinstance(calib, int) or not 0 <= calib <= min(shape):
            raise MaskError(f"calib: {calib!r} must be an integer in [0, {min(shape)}]")
        try:
            return poisson_mask((shape[0], shape[1]), float(accel), calib, _int_seed(seed))
        except ValueError:  # sigpy: "Cannot generate mask to satisfy accel=..."
            raise MaskError(
                f"accel: no Poisson-disc mask of acceleration {accel} with a {calib}x{calib} "
                f"calibration square fits {shape[0]}x{shape[1]} (lower calib or accel)"
            ) from None
    if (
        isinstance(center_fraction, bool)
        or not isinstance(center_fraction, (int, float))
        or not 0 < center_fraction < 1
    ):
        raise MaskError(f"center_fraction: {center_fraction!r} must be a number in (0, 1)")
    columns = (fastmri_random_columns if kind == "fastmri_random" else fastmri_equispaced_columns)(
        shape[1], float(accel), float(center_fraction), seed
    )
    return np.broadcast_to(columns[None, :], shape).astype(np.float32)
