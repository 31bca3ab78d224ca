"""Paired statistics over slices: bootstrap confidence intervals and the Wilcoxon signed-rank test.

Intervals are percentile bootstrap intervals of the mean with Hesterberg's "expanded percentile"
correction for small samples (the percentiles are widened so that the interval matches a
t-interval's coverage; with 2 or 3 values it is the range of the bootstrap means, i.e. of the
values). With `clusters` (the subject of each slice) a cluster bootstrap resamples whole subjects
instead of slices. A difference is `resolved` when its interval excludes 0 and the Wilcoxon
signed-rank test rejects "no difference" at `ALPHA` (two-sided). The second condition keeps
small samples honest: a bootstrap interval over 2 or 3 values excludes 0 whenever one method wins
on every slice, which happens by chance with probability 1/2 or 1/4; the smallest two-sided
Wilcoxon p is 2 / 2^n, so at least 6 slices are needed to resolve anything.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

RESAMPLES = 10_000
ALPHA = 0.05
SEED = 0


def expanded_level(n: int, level: float = 0.95) -> float:
    """The percentile level that gives a bootstrap interval over `n` values the coverage of a
    t-interval (Hesterberg 2015): 1 - 2 Phi(-sqrt(n / (n - 1)) t_{n-1}); `level` for n < 2."""
    if n < 2:
        return level
    t = sps.t.ppf(0.5 + level / 2, n - 1)
    return 1.0 - 2.0 * float(sps.norm.cdf(-math.sqrt(n / (n - 1)) * t))


def bootstrap_ci(
    values: np.ndarray,
    clusters: np.ndarray | None = None,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float]:
    """Expanded-percentile bootstrap interval of the mean of `values` (finite, 1-D).

    clusters: a label per value (e.g. the subject of each slice): resample whole clusters and
    take the mean over all values of the drawn clusters. (nan, nan) for no values; (v, v) for one.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if clusters is not None and len(clusters) != len(values):
        raise ValueError(f"clusters: {len(clusters)} labels for {len(values)} values")
    if values.size == 0:
        return float("nan"), float("nan")
    if clusters is None:
        sums, counts = values, np.ones_like(values)
    else:
        _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        sums = np.bincount(inverse, weights=values)
        counts = np.bincount(inverse).astype(np.float64)
    k = len(sums)
    if k == 1:
        mean = float(values.mean())
        return mean, mean
    draws = np.random.default_rng(seed).integers(0, k, size=(resamples, k))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - expanded_level(k, level)) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired `differences` (scipy, zeros dropped).

    nan with fewer than 2 differences (no test possible); 1.0 when every difference is 0.
    """
    d = np.asarray(differences, dtype=np.float64).reshape(-1)
    if d.size < 2:
        return float("nan")
    if not np.any(d != 0):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(sps.wilcoxon(d).pvalue)
        except ValueError:
            return float("nan")


@dataclass(frozen=True)
class Paired:
    """The paired difference a - b over the slices both were measured on."""

    slices: int
    subjects: int | None  # None: subjects not recorded
    mean: float
    low: float  # interval over slices
    high: float
    low_subjects: float  # interval over subjects (cluster bootstrap); nan when not recorded
    high_subjects: float
    p: float  # Wilcoxon signed-rank over slices
    resolved: bool  # the interval over subjects (if recorded, else over slices) excludes 0 and p < ALPHA


def paired(
    a: np.ndarray,
    b: np.ndarray,
    subjects: np.ndarray | None = None,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Paired:
    """Paired comparison of per-slice values `a` and `b` (same slices, same order); pairs with a
    non-finite value are left out. `subjects`: the subject of each slice, or None."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a, b: shapes {a.shape} and {b.shape} differ")
    keep = np.isfinite(a) & np.isfinite(b)
    d = (a - b)[keep]
    low, high = bootstrap_ci(d, None, level, resamples, seed)
    if subjects is None:
        groups, low_s, high_s = None, float("nan"), float("nan")
        decide, units = (low, high), int(d.size)
    else:
        labels = np.asarray(subjects)[keep]
        groups = len(np.unique(labels))
        low_s, high_s = bootstrap_ci(d, labels, level, resamples, seed)
        decide, units = (low_s, high_s), groups
    p = wilcoxon_p(d)
    resolved = bool(units >= 2 and (decide[0] > 0 or decide[1] < 0) and p < ALPHA)
    mean = float(d.mean()) if d.size else float("nan")
    return Paired(int(d.size), groups, mean, low, high, low_s, high_s, p, resolved)
