"""The paired statistics of evaluate, checked by simulation: the false-"resolved" rate under the
null stays at most ALPHA with 2-10 subjects of many slices each, a real effect is found, and the
interval's coverage is nominal (within a binomial band, so over-coverage fails too)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from mrirecon import stats

SIMS = 2000
SLICES = 15  # per subject


def clustered(rng: np.random.Generator, subjects: int, effect: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Paired differences of `subjects` x SLICES slices: effect + subject effect (sd 1) + slice
    noise (sd 1), and the subject of each slice."""
    labels = np.repeat(np.arange(subjects), SLICES)
    d = effect + np.repeat(rng.normal(0, 1, subjects), SLICES) + rng.normal(0, 1, labels.size)
    return d, labels


def monte_carlo_bound(rate: float, sims: int = SIMS) -> float:
    """rate plus three binomial standard errors."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / sims)


@pytest.mark.parametrize("subjects", [2, 3, 4, 6, 10])
def test_false_resolved_rate_under_the_null_is_at_most_alpha(subjects):
    rng = np.random.default_rng(subjects)
    decisions = []
    for _ in range(SIMS):
        d, labels = clustered(rng, subjects)
        decisions.append(stats.paired(d, np.zeros_like(d), labels, "subjects").decision)
    rate = decisions.count("resolved") / SIMS
    assert rate <= monte_carlo_bound(stats.ALPHA), (subjects, rate)
    if subjects < 6:  # 2 / 2^n >= 0.05: the test cannot resolve anything, and says so
        assert set(decisions) == {"too few subjects"}
    else:
        assert "too few subjects" not in decisions


def test_the_null_simulation_catches_a_test_over_slices():
    """The same simulation with the slices taken as independent (the clustering ignored) resolves
    far more often than ALPHA: the check above can fail."""
    rng = np.random.default_rng(4)
    resolved = 0
    for _ in range(200):
        d, _ = clustered(rng, 4)
        resolved += stats.paired(d, np.zeros_like(d)).resolved
    assert resolved / 200 > 0.3, resolved / 200


@pytest.mark.parametrize(("subjects", "effect", "power"), [(10, 1.5, 0.9), (6, 2.5, 0.8)])
def test_power_on_a_real_effect(subjects, effect, power):
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(400):
        d, labels = clustered(rng, subjects, effect)
        found += stats.paired(d, np.zeros_like(d), labels, "subjects").resolved
    assert found / 400 >= power, found / 400


@pytest.mark.parametrize("subjects", [3, 10])
def test_interval_coverage_is_nominal_within_a_binomial_band(subjects):
    rng = np.random.default_rng(11 + subjects)
    covered = 0
    for _ in range(SIMS):
        d, labels = clustered(rng, subjects, effect=0.7)
        _, low, high = stats.mean_interval(d, labels)
        covered += low <= 0.7 <= high
    band = 3 * math.sqrt(stats.LEVEL * (1 - stats.LEVEL) / SIMS)
    assert abs(covered / SIMS - stats.LEVEL) <= band, covered / SIMS


def test_interval_over_equal_subjects_is_the_t_interval_of_their_means():
    rng = np.random.default_rng(2)
    d, labels = clustered(rng, 5)
    means = d.reshape(5, SLICES).mean(axis=1)
    mean, low, high = stats.mean_interval(d, labels)
    expected = sps.t.interval(0.95, 4, loc=means.mean(), scale=sps.sem(means))
    assert mean == pytest.approx(d.mean()) and (low, high) == pytest.approx(expected)
    unequal = np.array([0, 0, 0, 1, 2, 2])  # unequal sizes: the estimate stays the mean over slices
    assert stats.mean_interval(np.arange(6.0), unequal)[0] == pytest.approx(2.5)
    assert np.isnan(stats.mean_interval(np.ones(3), np.zeros(3))[1])  # one unit: no interval


def test_sign_flip_p_values():
    assert stats.sign_flip_p(np.ones(6)) == 2 / 64  # all agree: the smallest p, 2 / 2^n
    assert stats.sign_flip_p(np.array([3.0, 1.0, -1.0])) == 6 / 8  # by hand: |s.x| >= 3 for 6 of 8 sign patterns
    assert stats.sign_flip_p(np.array([1.0, -1.0])) == 1.0 and stats.sign_flip_p(np.zeros(4)) == 1.0
    assert stats.smallest_p(5) > stats.ALPHA > stats.smallest_p(6)
    x = np.random.default_rng(5).normal(0.4, 1, 17)  # above EXACT_UP_TO: random sign assignments
    exact = np.mean([abs(np.dot(s, x)) >= abs(x.sum()) - 1e-12 for s in itertools.product((1, -1), repeat=17)])
    assert stats.sign_flip_p(x) == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / stats.DRAWS) + 1e-4)


def test_paired_decisions_and_refusals():
    three = stats.paired(np.array([31.0, 32.0, 33.0]), np.array([30.0, 30.5, 31.0]))
    assert three.decision == "too few slices" and three.p == 0.25 and not three.resolved
    eight = stats.paired(np.arange(8.0) + 1, np.zeros(8))
    assert eight.resolved and eight.p == 2 / 256 and (eight.unit, eight.units) == ("slices", 8)
    subjects = stats.paired(np.arange(12.0) + 1, np.zeros(12), np.repeat(np.arange(2), 6), "subjects")
    assert subjects.decision == "too few subjects" and subjects.units == 2 and subjects.slices == 12
    with pytest.raises(ValueError, match="a, b"):
        stats.paired(np.ones(2), np.ones(3))
    with pytest.raises(ValueError, match="not finite"):  # failures are counted, never compared
        stats.paired(np.array([1.0, np.nan]), np.ones(2))
