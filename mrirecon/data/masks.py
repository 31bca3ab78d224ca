"""Undersampling masks for fully sampled k-space: Poisson disc (sigpy), variable-density lines
and fastMRI's masks, and which of them fits the data (`resolve_kind`).

A 2D acquisition (one slice per excitation: 2D multi-slice ISMRMRD, fastMRI) samples whole
readouts, so a mask a scanner could acquire samples whole phase-encode lines (columns, the last
axis); only a 3D acquisition whose readout is already transformed (each slice a (ky, kz) plane)
can be undersampled by a 2D Poisson disc. `resolve_kind` turns `auto` into `lines` or `poisson`
and refuses `poisson` on 2D data unless readout undersampling is asked for.

`vd_lines` draws variable-density random lines: the `calib` central lines always, the others
without replacement with probability proportional to (1 - |k| / k_max)^LINE_POWER (Lustig,
Donoho and Pauly 2007's polynomial density, in one dimension).

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

KINDS = ("auto", "lines", "poisson", "fastmri_random", "fastmri_equispaced")
LINE_POWER = 2  # the density of `vd_lines` (docs/data.md: chosen on the real phantom)
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


def resolve_kind(kind: str, two_d: bool, readout: bool = False) -> str:
    """The mask kind to draw for `kind` (masks.KINDS) on data that are 2D (`two_d`: the first
    axis X is a readout) or 3D ((ky, kz) planes): auto is lines for 2D, poisson for 3D. MaskError
    'kind: ...' for poisson on 2D data unless `readout` (readout undersampling asked for)."""
    if kind not in KINDS:
        raise MaskError(f"kind: unknown mask '{kind}' (expected {', '.join(KINDS)})")
    if kind == "auto":
        return "lines" if two_d else "poisson"
    if kind == "poisson" and two_d and not readout:
        raise MaskError(
            "kind: 'poisson' undersamples the readout of 2D data (whole readouts are what a 2D scan acquires); "
            "use auto or lines (whole phase-encode lines), or allow readout undersampling"
        )
    return kind


def vd_lines(
    num_cols: int, accel: float, calib: int, seed: Seed, acquired: tuple[int, int] | None = None
) -> np.ndarray:
    """Variable-density random phase-encode lines (see the module docstring): (num_cols,) bool.

    Args:
        num_cols: phase-encode lines of the grid; the centre line is num_cols // 2.
        accel: acquired lines / sampled lines (the target count is rounded).
        calib: central lines always sampled (placed as ESPIRiT's calibration region).
        seed: the random seed (an integer or a tuple of integers).
        acquired: [y0, y1) of the lines that were acquired (None: all); none outside is sampled.
    """
    y0, y1 = acquired or (0, num_cols)
    lines = np.arange(num_cols)
    inside = (lines >= y0) & (lines < y1)
    target = round((y1 - y0) / accel)
    mask = np.zeros(num_cols, bool)
    start = num_cols // 2 - calib // 2
    mask[max(start, 0) : start + calib] = True
    mask &= inside
    if mask.sum() > target:
        raise MaskError(
            f"accel: no line mask of acceleration {accel} ({target} of {y1 - y0} lines) holds the {calib} "
            "central calibration lines (lower calib or accel)"
        )
    distance = np.abs(lines - num_cols // 2).astype(np.float64)
    weight = (1 - distance / (distance[inside].max() + 1)) ** LINE_POWER * (inside & ~mask)
    rest = target - int(mask.sum())
    if rest > 0:
        rng = np.random.RandomState(seed)
        mask[rng.choice(num_cols, size=rest, replace=False, p=weight / weight.sum())] = True
    return mask


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


# make_mask's arguments in order (kind, shape, accel, calib, center_fraction, seed, columns)
MaskKey = tuple[str, tuple[int, int], float, int, float, Seed, tuple[int, int] | None]


def make_mask(
    kind: str,
    shape: tuple[int, int],
    accel: float,
    calib: int,
    center_fraction: float,
    seed: Seed,
    columns: tuple[int, int] | None = None,
) -> np.ndarray:
    """An undersampling mask (X, Y) float32 in {0, 1}; MaskError (a ValueError) when impossible.

    Args:
        kind: lines, poisson, fastmri_random or fastmri_equispaced (not auto: `resolve_kind`).
        shape: (X, Y); line and fastMRI masks choose columns of Y (the phase-encode axis).
        accel: target acceleration (> 1).
        calib: side of the Poisson mask's fully sampled square, or central lines of a line mask
            (pixels, >= 0).
        center_fraction: fraction of central columns of the fastMRI masks, in (0, 1).
        seed: the random seed (an integer or a tuple of integers).
        columns: [y0, y1) of the acquired columns a line mask draws from (None: all).

    The last few masks are cached (one mask per volume is drawn once, not once per slice);
    each call returns its own copy.
    """
    key: MaskKey = (kind, (shape[0], shape[1]), accel, calib, center_fraction, seed, columns)
    try:
        hash(key)
    except TypeError:  # a malformed value (e.g. a list): _make_mask names it
        return _make_mask(key)
    return _cached_mask(key).copy()


@functools.lru_cache(maxsize=8)
def _cached_mask(key: MaskKey) -> np.ndarray:
    return _make_mask(key)


def _make_mask(key: MaskKey) -> np.ndarray:
    """`make_mask` without the cache (its arguments in order)."""
    kind, shape, accel, calib, center_fraction, seed, columns = key
    if kind not in KINDS[1:]:
        raise MaskError(f"kind: unknown mask '{kind}' (expected {', '.join(KINDS[1:])})")
    if isinstance(accel, bool) or not isinstance(accel, (int, float)) or not accel > 1:
        raise MaskError(f"accel: {accel!r} must be a number > 1")
    if kind in ("poisson", "lines"):
        most = min(shape) if kind == "poisson" else shape[1]
        if isinstance(calib, bool) or not isinstance(calib, int) or not 0 <= calib <= most:
            raise MaskError(f"calib: {calib!r} must be an integer in [0, {most}]")
        if kind == "lines":
            lines = vd_lines(shape[1], float(accel), calib, seed, columns)
            return np.broadcast_to(lines[None, :], shape).astype(np.float32)
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
    chosen = (fastmri_random_columns if kind == "fastmri_random" else fastmri_equispaced_columns)(
        shape[1], float(accel), float(center_fraction), seed
    )
    return np.broadcast_to(chosen[None, :], shape).astype(np.float32)
