"""evaluate's decision rules under the null and under a real effect, by simulation: one command,
two markdown tables (.venv/bin/python scripts/stats_null.py [sims], default 2000; about five
minutes on one core). docs/statistics.md's tables are its output.

Paired differences of n subjects, slice value = effect + subject effect + slice noise; the rule
sees every slice with its subject, as evaluate does. Subject effects have mean 0, so under the null
the estimand (the mean over subjects of each subject's mean) is 0. Scenarios:

- balanced Gaussian: 15 slices per subject, subject effect N(0, 1), slice noise N(0, 1);
- unbalanced: 3-40 slices per subject (uniform), Gaussian subject effects and slice noise;
- skewed: 3-40 slices, subject effect exponential(1) - 1 (sd 1, skewness 2), slice noise t3 (sd 1);
- strongly skewed: as skewed with subject effect (chi2(1) - 1) / sqrt(2) (sd 1, skewness 2.8):
  the rule used before gives here the false-resolved rates issue 33 reports (8-13 %);
- heteroscedastic: 3-40 slices, subject effect N(0, 0.5^2), slice noise t3 times a per-subject
  sd drawn log-uniform in [0.25, 4].

Table 1, per scenario and number of subjects: the share of simulations called `resolved` under the
null, the share whose 95 % interval covers the true mean (0), the power (resolved at effect
POWER_AT), and for contrast the rule used before (mean over slices, cluster-robust t-interval,
sign-flip test of the subject sums). Table 2, the `best` column: TABLE_ROWS methods of equal
performance (their method-by-subject effects and slice noise as in the scenario), the observed
best row by mean, every other row tested against it: the share of tables in which some row is
marked resolved-worse (Holm over the k(k-1)/2 pairs, as evaluate; for contrast Holm over the k-1
comparisons with the best only, and no correction), and the power: one method better by
BEST_EFFECT, the share of tables where it is the best row and marked `*`.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from mrirecon.evaluation import stats

SUBJECTS = (4, 6, 8, 12, 20)
POWER_AT = 1.0  # effect, in subject-effect sd
TABLE_ROWS, TABLE_SUBJECTS, BEST_EFFECT = 10, 12, 2.0
Draw = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(0.0, 1.0, shape)


def t3(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_t(3, shape) / math.sqrt(3.0)  # sd 1, heavy tails


def exponential(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.exponential(1.0, shape) - 1.0  # mean 0, sd 1, skewness 2


def chi2(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return (rng.chisquare(1.0, shape) - 1.0) / math.sqrt(2.0)  # mean 0, sd 1, skewness 2.8


@dataclass(frozen=True)
class Scenario:
    name: str
    slices: tuple[int, int]  # per subject, uniform over this range (inclusive)
    effect: Draw  # subject effects (mean 0, sd 1) ...
    effect_sd: float  # ... times this
    noise: Draw  # slice noise (mean 0, sd 1) ...
    spread: float  # ... times a per-subject sd, log-uniform in [1 / spread, spread]


SCENARIOS = (
    Scenario("balanced Gaussian", (15, 15), gaussian, 1.0, gaussian, 1.0),
    Scenario("unbalanced", (3, 40), gaussian, 1.0, gaussian, 1.0),
    Scenario("skewed", (3, 40), exponential, 1.0, t3, 1.0),
    Scenario("strongly skewed", (3, 40), chi2, 1.0, t3, 1.0),
    Scenario("heteroscedastic", (3, 40), gaussian, 0.5, t3, 4.0),
)


def draw(
    rng: np.random.Generator, sc: Scenario, sims: int, subjects: int, methods: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Subject means (sims, subjects), or (sims, methods, subjects) of `methods` methods of equal
    performance on the same slices, and the slice counts (sims, subjects)."""
    counts = rng.integers(sc.slices[0], sc.slices[1] + 1, (sims, subjects))
    scale = np.exp(rng.uniform(-math.log(sc.spread), math.log(sc.spread), (sims, subjects)))
    shape = (sims, subjects) if not methods else (sims, methods, subjects)
    if methods:
        counts_all, scale = np.broadcast_to(counts[:, None], shape), scale[:, None]
    else:
        counts_all = counts
    index = np.repeat(np.arange(counts_all.size), counts_all.ravel())
    noise = np.bincount(index, sc.noise(rng, (index.size,)), counts_all.size).reshape(shape) / counts_all
    return sc.effect_sd * sc.effect(rng, shape) + scale * noise, counts


def old_rule(means: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rule used before, per simulation: (resolved, interval covers 0)."""
    sums, k = means * counts, counts.shape[1]
    total = counts.sum(axis=1)
    mean = sums.sum(axis=1) / total
    se = np.sqrt(k / (k - 1) * np.sum((sums - mean[:, None] * counts) ** 2, axis=1)) / total
    half = sps.t.ppf(0.5 + stats.LEVEL / 2, k - 1) * se
    resolved = (stats.sign_flip(sums)[0] < stats.ALPHA) & (stats.smallest_p(k) < stats.ALPHA)
    return resolved, np.abs(mean) <= half


def rates(sc: Scenario, subjects: int, sims: int, seed: int) -> list[float]:
    """False resolved, coverage and power of evaluate's rule; false resolved and coverage of the old."""
    rng = np.random.default_rng(seed)
    means, counts = draw(rng, sc, sims, subjects)
    p, low, high = stats.mean_test(means)
    decides = stats.smallest_p(subjects) < stats.ALPHA
    shifted, _ = draw(rng, sc, sims, subjects)
    power = np.mean(stats.mean_test(shifted + POWER_AT)[0] < stats.ALPHA) if decides else 0.0
    old_resolved, old_covered = old_rule(means, counts)
    covered = np.mean((low <= 0) & (high >= 0)) if decides else math.nan
    found = [np.mean(p < stats.ALPHA) if decides else 0.0, covered, power, old_resolved.mean(), old_covered.mean()]
    return [float(v) for v in found]


def best_column(sc: Scenario, sims: int, seed: int, effect: float = 0.0) -> list[float]:
    """TABLE_ROWS methods at TABLE_SUBJECTS subjects, the first better by `effect`: the share of
    tables with a row resolved worse than the observed best (Holm over all pairs, Holm over the
    k-1 comparisons, uncorrected), the share of the other rows resolved worse (Holm over all
    pairs) and the share of tables where the first method is the best and starred."""
    rng = np.random.default_rng(seed)
    means, _ = draw(rng, sc, sims, TABLE_SUBJECTS, TABLE_ROWS)
    means[:, 0] += effect
    best = np.argmax(means.mean(axis=2), axis=1)
    others = np.array([[m for m in range(TABLE_ROWS) if m != b] for b in best])
    diffs = np.take_along_axis(means, others[:, :, None], axis=1) - means[np.arange(sims), best][:, None]
    p = stats.mean_test(diffs)[0]  # (sims, k - 1)
    pairs = TABLE_ROWS * (TABLE_ROWS - 1) // 2
    all_pairs = np.array([stats.holm(row, pairs) < stats.ALPHA for row in p])
    to_best = np.array([stats.holm(row) < stats.ALPHA for row in p])
    starred = (best == 0) & all_pairs.all(axis=1)
    found = [all_pairs.any(axis=1), to_best.any(axis=1), (p < stats.ALPHA).any(axis=1), all_pairs, starred]
    return [float(np.mean(f)) for f in found]


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def main() -> None:
    sims = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{sims} simulations per cell; ALPHA {stats.ALPHA}; power at effect {POWER_AT} (subject-effect sd)\n")
    print("| scenario | subjects | null: resolved | coverage | power | old rule: null resolved | old rule: coverage |")
    print("|---|---|---|---|---|---|---|")
    for s, sc in enumerate(SCENARIOS):
        for n in SUBJECTS:
            cells = " | ".join(_cell(v) for v in rates(sc, n, sims, 1000 * s + n))
            print(f"| {sc.name} | {n} | {cells} |", flush=True)
    print(f"\n`best`: {TABLE_ROWS} rows, {TABLE_SUBJECTS} subjects; power: one row better by {BEST_EFFECT}\n")
    print(
        "| scenario | null: some row resolved worse (Holm, all pairs) | Holm, k-1 comparisons | uncorrected "
        "| power: rows resolved worse | power: best row starred |"
    )
    print("|---|---|---|---|---|---|")
    for s, sc in enumerate(SCENARIOS):
        null = best_column(sc, sims, 7 + s)[:3]
        power = best_column(sc, sims, 70 + s, BEST_EFFECT)[3:]
        print(f"| {sc.name} | {' | '.join(_cell(v) for v in null + power)} |", flush=True)


if __name__ == "__main__":
    main()
