"""Paired statistics over the independent units: subjects when recorded, else slices (volumes).

Slices of one subject are not independent, so when the subject of each slice is known the subject
is the unit. The estimand is the mean over the units of each unit's mean (every subject weighted
equally, however many slices it has): with x_j the mean of unit j's values (j = 1..k), the
estimate is mean_j x_j. "The estimand is mu" is tested two ways:

- the sign-flip permutation test of sum_j (x_j - mu): the share of sign assignments s with
  |sum_j s_j (x_j - mu)| >= |sum_j (x_j - mu)| (all 2^k up to EXACT_UP_TO units, else DRAWS random
  ones with a fixed seed). Exact (level <= ALPHA) whenever the x_j are symmetric about mu, however
  unequal their spreads; with k units its smallest p is 2 / 2^k, so fewer than MIN_UNITS = 6 units
  can never reach ALPHA, and the decision then reads "too few <units>";
- the equal-tailed bootstrap-t test (BOOTSTRAP resamples of the units, fixed seed): the studentized
  mean's distribution estimated by resampling, which follows the skewness of the x_j (second-order
  accurate) where the sign-flip test assumes symmetry.

p is the larger of the two p-values (resolved only when both tests reject) and the interval is the
set of mu that neither test rejects (the hull of their two intervals), intersected with the range
the estimand can take (`bounds`): the true value lies in that range, so the intersection covers
whenever the interval does. scripts/stats_null.py measures level, coverage and power by simulation
(unbalanced, skewed, heavy-tailed and heteroscedastic data; docs/statistics.md).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
LEVEL = 0.95
MIN_UNITS = 6  # the smallest k with 2 / 2^k < ALPHA
EXACT_UP_TO = 16  # units: 2^16 sign assignments enumerated
DRAWS = 10_000  # random sign assignments above EXACT_UP_TO units
BOOTSTRAP = 9_999  # bootstrap resamples: B + 1 a multiple of 2 / ALPHA
SEED = 0
CHUNK = 1 << 21  # elements of a (rows x draws) block held at once
Bounds = tuple[float, float]
UNBOUNDED: Bounds = (-math.inf, math.inf)


def unit_means(values: np.ndarray, units: np.ndarray | None = None) -> np.ndarray:
    """The mean of `values` (n,) over each unit, (k,) in the order of the sorted labels; `units`:
    a label per value, or None (each value its own unit)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if units is None:
        return values
    if len(units) != len(values):
        raise ValueError(f"units: {len(units)} labels for {len(values)} values")
    _, inverse = np.unique(np.asarray(units), return_inverse=True)
    return np.bincount(inverse, weights=values) / np.bincount(inverse)


def smallest_p(units: int) -> float:
    """The smallest p-value the sign-flip test can give with `units` units: 2 / 2^units."""
    return min(1.0, 2.0 / 2.0**units) if units > 0 else 1.0


Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


def _by_rows(fn: Callable[[np.ndarray], Triple], x: np.ndarray, width: int) -> Triple:
    """fn over blocks of rows of x (rows, k) holding at most CHUNK (rows x width) elements at a time."""
    step = max(1, CHUNK // max(width, 1))
    parts = [fn(x[start : start + step]) for start in range(0, len(x), step)]
    return (
        np.concatenate([q[0] for q in parts]),
        np.concatenate([q[1] for q in parts]),
        np.concatenate([q[2] for q in parts]),
    )


@functools.lru_cache(maxsize=EXACT_UP_TO + 1)
def _all_signs(k: int) -> np.ndarray:
    """Every sign assignment of k units up to the overall sign, (2^(k-1), k) of +-1: s and -s are
    equally extreme for every mu, so counting one of each pair gives the same shares."""
    return np.array([(1.0, *rest) for rest in itertools.product((1.0, -1.0), repeat=k - 1)])


def _signs(k: int) -> tuple[np.ndarray, bool]:
    """The sign assignments the test uses for k units and whether they are all of them."""
    if k <= EXACT_UP_TO:
        return _all_signs(k), True
    return np.random.default_rng(SEED).choice((-1.0, 1.0), size=(DRAWS, k)), False


def sign_flip(x: np.ndarray, alpha: float = ALPHA) -> Triple:
    """Two-sided sign-flip test of "mean 0" for each row of x (rows, k), and the 1 - alpha interval
    of the mu whose test of x - mu gives p >= alpha: (p, low, high), each (rows,). p is the share of
    sign assignments at least as extreme as the observed one (exact), or (1 + hits) / (1 + DRAWS).
    A sign assignment s is at least as extreme for x - mu exactly when mu lies between
    (T - s.x) / (k - sum s) and (T + s.x) / (k + sum s) (T = sum x; all mu when s = +-1), so the
    interval's ends are order statistics of these bounds."""
    k = x.shape[1]
    signs, exact = _signs(k)
    count = len(signs)
    need = math.ceil(alpha * count - 1e-9) if exact else math.ceil(alpha * (1 + count) - 1e-9) - 1
    sizes = signs.sum(axis=1)
    full = np.abs(sizes) == k

    def block(rows: np.ndarray) -> Triple:
        total = rows.sum(axis=1, keepdims=True)
        tolerance = 1e-9 * np.abs(rows).sum(axis=1, keepdims=True)  # ties up to rounding count as extreme
        flipped = rows @ signs.T
        hits = np.sum(np.abs(flipped) >= np.abs(total) - tolerance, axis=1)
        p = hits / count if exact else (1 + hits) / (1 + count)
        p = np.where(np.abs(total[:, 0]) <= tolerance[:, 0], 1.0, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            one, two = (total - flipped) / (k - sizes), (total + flipped) / (k + sizes)
        upper = np.where(full, np.inf, np.maximum(one, two))
        lower = np.where(full, -np.inf, np.minimum(one, two))
        high = -np.partition(-upper, need - 1, axis=1)[:, need - 1]
        return p, np.partition(lower, need - 1, axis=1)[:, need - 1], high

    return _by_rows(block, x, count)


def _resample_counts(k: int) -> Iterator[np.ndarray]:
    """BOOTSTRAP resamples of k units as counts (B, k), in blocks, from a fixed seed."""
    rng = np.random.default_rng(SEED)
    step = max(1, min(BOOTSTRAP, CHUNK // max(k, 1)))
    for start in range(0, BOOTSTRAP, step):
        yield rng.multinomial(k, np.full(k, 1.0 / k), size=min(step, BOOTSTRAP - start)).astype(np.float64)


def _studentized(rows: np.ndarray, counts: Sequence[np.ndarray]) -> np.ndarray:
    """The bootstrap's studentized means (rows, B): sqrt(k) (m* - m) / s* per resample (+-inf
    where a resample has no spread, 0 where it also has the mean)."""
    k = rows.shape[1]
    centred = rows - rows.mean(axis=1, keepdims=True)
    spread = np.sqrt(np.sum(centred**2, axis=1, keepdims=True) / (k - 1))
    out = []
    for c in counts:
        shift = centred @ c.T / k
        sd = np.sqrt(np.maximum(centred**2 @ c.T / k - shift**2, 0.0) * k / (k - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(sd > 1e-9 * spread, shift * math.sqrt(k) / sd, np.sign(shift) * np.inf)
        out.append(np.nan_to_num(t, nan=0.0, posinf=np.inf, neginf=-np.inf))
    return np.concatenate(out, axis=1)


def bootstrap_t(x: np.ndarray, alpha: float = ALPHA) -> Triple:
    """Equal-tailed bootstrap-t test of "mean 0" for each row of x (rows, k) and its 1 - alpha
    interval: (p, low, high), each (rows,). With t = sqrt(k) mean / sd and t* the resamples'
    studentized means, p = 2 (1 + min(#{t* <= t}, #{t* >= t})) / (B + 1), and the interval holds
    the mu whose p >= alpha: [mean - t*_(B+1-r) se, mean - t*_(r) se], r = ceil(alpha (B+1) / 2) - 1.
    Rows without spread (beyond rounding): the interval is the mean, p = 1 when it is 0, else
    2 / (B + 1)."""
    k = x.shape[1]
    counts = list(_resample_counts(k))
    r = math.ceil(alpha * (BOOTSTRAP + 1) / 2 - 1e-9) - 1

    def block(rows: np.ndarray) -> Triple:
        mean = rows.mean(axis=1)
        se = np.std(rows, axis=1, ddof=1) / math.sqrt(k)
        flat = se <= 1e-12 * np.max(np.abs(rows), axis=1)  # no spread beyond rounding
        star = _studentized(rows, counts)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(flat, 0.0, mean / se)[:, None]
        tail = np.minimum(np.sum(star <= t, axis=1), np.sum(star >= t, axis=1))
        p = np.minimum(1.0, 2 * (1 + tail) / (BOOTSTRAP + 1))
        p = np.where(flat, np.where(mean == 0, 1.0, 2 / (BOOTSTRAP + 1)), p)
        ends = np.partition(star, (r - 1, BOOTSTRAP - r), axis=1)
        low, high = mean - ends[:, BOOTSTRAP - r] * se, mean - ends[:, r - 1] * se
        return p, np.where(flat, mean, low), np.where(flat, mean, high)

    return _by_rows(block, x, BOOTSTRAP)


def mean_test(x: np.ndarray, bounds: Bounds = UNBOUNDED, alpha: float = ALPHA) -> Triple:
    """The test of "mean 0" and the 1 - alpha interval of the mean for each row of x (..., k) of
    unit values (see the module docstring): (p, low, high), each (...). p: the larger of the
    sign-flip and bootstrap-t p-values; interval: the hull of theirs, clipped to `bounds`, NaN
    where it is unbounded (fewer than MIN_UNITS units: the sign-flip test excludes no value)."""
    x = np.asarray(x, dtype=np.float64)
    shape, k = x.shape[:-1], x.shape[-1]
    if k < 2:
        nan = np.full(shape, np.nan)
        return np.ones(shape), nan, nan.copy()
    rows = x.reshape(-1, k)
    p_flip, low_flip, high_flip = sign_flip(rows, alpha)
    p_boot, low_boot, high_boot = bootstrap_t(rows, alpha)
    low, high = np.minimum(low_flip, low_boot), np.maximum(high_flip, high_boot)
    bounded = np.isfinite(low) & np.isfinite(high)
    low = np.where(bounded, np.clip(low, *bounds), np.nan)
    high = np.where(bounded, np.clip(high, *bounds), np.nan)
    return np.maximum(p_flip, p_boot).reshape(shape), low.reshape(shape), high.reshape(shape)


def mean_interval(
    values: np.ndarray, units: np.ndarray | None = None, level: float = LEVEL, bounds: Bounds = UNBOUNDED
) -> tuple[float, float, float]:
    """(estimate, low, high): the mean over the units of their means of `values`, and its `level`
    interval (see mean_test). (nan, nan, nan) without values or with a non-finite one; the interval
    is (nan, nan) with fewer than MIN_UNITS units."""
    x = unit_means(values, units)
    if x.size == 0 or not np.isfinite(x).all():
        return math.nan, math.nan, math.nan
    _, low, high = mean_test(x, bounds, 1 - level)
    return float(x.mean()), float(low), float(high)


def holm(p: Sequence[float], family: int | None = None) -> np.ndarray:
    """Holm's step-down adjusted p-values of `p` (m,), in a family of `family` >= m hypotheses of
    which only these m are tested: the j-th smallest is multiplied by family - j + 1, and the
    adjusted values are made non-decreasing. Rejecting where the adjusted p < ALPHA controls the
    family-wise error at ALPHA."""
    values = np.asarray(p, dtype=np.float64).reshape(-1)
    family = len(values) if family is None else family
    if family < len(values):
        raise ValueError(f"family: {family} hypotheses, fewer than the {len(values)} p-values")
    order = np.argsort(values, kind="stable")
    adjusted = np.maximum.accumulate(np.minimum(1.0, (family - np.arange(len(values))) * values[order]))
    out = np.empty_like(values)
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class Paired:
    """The paired difference a - b: its mean over the units' means, interval and test."""

    slices: int  # pairs compared
    unit: str  # what the units are: "subjects", "volumes" or "slices"
    units: int  # number of units
    mean: float  # mean over the units of each unit's mean difference
    low: float  # LEVEL interval (NaN with fewer than MIN_UNITS units)
    high: float
    p: float  # two-sided: the larger of the sign-flip and bootstrap-t p-values
    decision: str  # "resolved", "not resolved" or "too few <unit>"

    @property
    def resolved(self) -> bool:
        return self.decision == "resolved"


def paired(
    a: np.ndarray, b: np.ndarray, units: np.ndarray | None = None, unit: str = "slices", bounds: Bounds = UNBOUNDED
) -> Paired:
    """Paired comparison of per-slice values `a` and `b` (same slices, same order, all finite:
    non-finite values are failures to count, not to compare). `units`: the unit (e.g. subject) of
    each slice, None: each slice is a unit; `unit` names them ("subjects", "volumes", "slices");
    `bounds`: the range the mean difference can take (the interval is clipped to it)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a, b: shapes {a.shape} and {b.shape} differ")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"a, b: {int(np.sum(~(np.isfinite(a) & np.isfinite(b))))} pairs are not finite")
    x = unit_means(a - b, units)
    if x.size == 0:
        return Paired(0, unit, 0, math.nan, math.nan, math.nan, math.nan, f"too few {unit}")
    p, low, high = (float(v) for v in mean_test(x, bounds))
    if smallest_p(x.size) >= ALPHA:
        decision = f"too few {unit}"
    else:
        decision = "resolved" if p < ALPHA else "not resolved"
    return Paired(int(a.size), unit, int(x.size), float(x.mean()), low, high, p, decision)
