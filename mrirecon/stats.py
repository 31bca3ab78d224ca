"""Paired statistics at the level of the independent units: subjects when recorded, else slices.

Slices of one subject are not independent, so when the subject of each slice is known the subject
is the unit: a unit's value is the sum of its slices' values (S_j over N_j slices), and

- the estimate is the mean over slices, sum_j S_j / sum_j N_j (the table's mean);
- its interval is a t-interval with a cluster-robust standard error over the units (k units, k - 1
  degrees of freedom): SE^2 = k / (k - 1) * sum_j (S_j - mean N_j)^2 / (sum_j N_j)^2, which is the
  t-interval of the subject means when every subject has the same number of slices, and the plain
  t-interval of the values when each unit is one slice;
- the test of "no difference" is a two-sided sign-flip permutation test of that estimate: under the
  null every unit's paired difference is as likely to have either sign, so the p-value is the share
  of the 2^k sign assignments of the units' sums whose |sum| is at least the observed one (exact for
  k <= EXACT_UP_TO, else DRAWS random assignments with a fixed seed). With k units the smallest
  possible p is 2 / 2^k: fewer than 6 units can never reach ALPHA = 0.05, and the decision then reads
  "too few <units>" rather than a "not resolved" that would look like evidence of a tie.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
LEVEL = 0.95
EXACT_UP_TO = 16  # units: 2^16 sign assignments enumerated
DRAWS = 10_000  # random sign assignments above EXACT_UP_TO units
SEED = 0


def unit_sums(values: np.ndarray, units: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit sums S_j and counts N_j of `values` (n,); `units`: a label per value, or None
    (each value its own unit)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if units is None:
        return values, np.ones_like(values)
    if len(units) != len(values):
        raise ValueError(f"units: {len(units)} labels for {len(values)} values")
    _, inverse = np.unique(np.asarray(units), return_inverse=True)
    return np.bincount(inverse, weights=values), np.bincount(inverse).astype(np.float64)


def mean_interval(
    values: np.ndarray, units: np.ndarray | None = None, level: float = LEVEL
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` and its `level` t-interval over the units (see the
    module docstring). (nan, nan, nan) without values or with a non-finite one; the interval is
    (nan, nan) with fewer than 2 units."""
    sums, counts = unit_sums(values, units)
    if sums.size == 0 or not np.isfinite(sums).all():
        return math.nan, math.nan, math.nan
    k, total = len(sums), counts.sum()
    mean = float(sums.sum() / total)
    if k < 2:
        return mean, math.nan, math.nan
    se = math.sqrt(k / (k - 1) * float(np.sum((sums - mean * counts) ** 2))) / total
    half = float(sps.t.ppf(0.5 + level / 2, k - 1)) * se
    return mean, mean - half, mean + half


@functools.lru_cache(maxsize=EXACT_UP_TO + 1)
def _all_signs(k: int) -> np.ndarray:
    """Every sign assignment of k units, (2^k, k) of +-1."""
    return np.array(list(itertools.product((1.0, -1.0), repeat=k)))


def sign_flip_p(sums: np.ndarray, draws: int = DRAWS, seed: int = SEED) -> float:
    """Two-sided sign-flip permutation p-value of sum(sums) = 0: the share of sign assignments s
    with |s . sums| >= |sum(sums)| (exact up to EXACT_UP_TO units, else (1 + hits) / (1 + draws)
    over random assignments). nan without units; 1.0 when every sum is 0."""
    sums = np.asarray(sums, dtype=np.float64).reshape(-1)
    k = sums.size
    if k == 0:
        return math.nan
    observed = abs(float(sums.sum()))
    tolerance = 1e-9 * float(np.abs(sums).sum())  # ties up to rounding count as "at least as extreme"
    if observed <= tolerance:
        return 1.0
    if k <= EXACT_UP_TO:
        return float(np.mean(np.abs(_all_signs(k) @ sums) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, draws, 1000):  # chunks bound the memory: 1000 x k signs at a time
        signs = rng.choice((-1.0, 1.0), size=(min(1000, draws - start), k))
        hits += int(np.sum(np.abs(signs @ sums) >= observed - tolerance))
    return (1 + hits) / (1 + draws)


def smallest_p(units: int) -> float:
    """The smallest p-value the sign-flip test can give with `units` units: 2 / 2^units."""
    return min(1.0, 2.0 / 2.0**units) if units > 0 else 1.0


@dataclass(frozen=True)
class Paired:
    """The paired difference a - b: its mean over slices, interval and test over the units."""

    slices: int  # pairs compared
    unit: str  # what the units are: "subjects", "volumes" or "slices"
    units: int  # number of units
    mean: float  # mean difference over the slices (or volumes)
    low: float  # LEVEL interval over the units
    high: float
    p: float  # two-sided sign-flip p over the units
    decision: str  # "resolved", "not resolved" or "too few <unit>"

    @property
    def resolved(self) -> bool:
        return self.decision == "resolved"


def paired(a: np.ndarray, b: np.ndarray, units: np.ndarray | None = None, unit: str = "slices") -> Paired:
    """Paired comparison of per-slice values `a` and `b` (same slices, same order, all finite:
    non-finite values are failures to count, not to compare). `units`: the unit (e.g. subject) of
    each slice, None: each slice is a unit; `unit` names them ("subjects", "volumes", "slices")."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"a, b: shapes {a.shape} and {b.shape} differ")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"a, b: {int(np.sum(~(np.isfinite(a) & np.isfinite(b))))} pairs are not finite")
    d = a - b
    sums, _ = unit_sums(d, units)
    mean, low, high = mean_interval(d, units)
    p = sign_flip_p(sums)
    if smallest_p(len(sums)) >= ALPHA:
        decision = f"too few {unit}"
    else:
        decision = "resolved" if p < ALPHA else "not resolved"
    return Paired(int(d.size), unit, len(sums), mean, low, high, p, decision)
