"""The measures of how well a sampling method's std predicts its error
(mrirecon/evaluation/uncertainty.py): Spearman and 2-std coverage over the object's pixels."""

from __future__ import annotations

import numpy as np
import pytest

from mrirecon.evaluation.uncertainty import NAMES, support, uncertainty_metrics


def disc(n: int = 32) -> np.ndarray:
    """A complex disc of radius n/3 on a zero background (n x n)."""
    u, v = np.meshgrid(np.arange(n) - n / 2, np.arange(n) - n / 2, indexing="ij")
    return ((u**2 + v**2) < (n / 3) ** 2).astype(np.complex64) * np.exp(0.3j)


def test_support_is_the_object_not_the_background():
    ref = disc()
    ref[5, 5] = 0.05  # below a tenth of the max: background
    inside = support(ref)
    assert inside.sum() == (np.abs(disc()) > 0).sum() and not inside[5, 5]
    assert not support(np.zeros((4, 4))).any()


def test_a_std_that_ranks_the_error_scores_one_and_a_random_one_about_zero():
    rng = np.random.default_rng(0)
    ref = disc()
    error = rng.uniform(0.01, 0.2, ref.shape)
    recon = np.abs(ref) + error  # magnitude error = error inside the object
    perfect = uncertainty_metrics(recon, ref, error)
    assert perfect["std_spearman"] == pytest.approx(1.0)
    assert perfect["std_coverage"] == 1.0  # error <= 2 error everywhere
    unrelated = uncertainty_metrics(recon, ref, rng.uniform(0.01, 0.2, ref.shape))
    assert abs(unrelated["std_spearman"]) < 0.1
    assert uncertainty_metrics(recon, ref, error / 4)["std_coverage"] == 0.0  # too confident: nothing covered


def test_background_does_not_count():
    """Outside the object the error and the std agree (both zero / both large): including those
    pixels would make this uninformative std look good; over the object it is anti-correlated."""
    rng = np.random.default_rng(1)
    ref = disc()
    inside = np.abs(ref) > 0
    error = np.where(inside, rng.uniform(0.01, 0.2, ref.shape), 0.0)
    std = np.where(inside, 0.21 - error, 0.0)
    measured = uncertainty_metrics(np.abs(ref) + error, ref, std)
    assert measured["std_spearman"] == pytest.approx(-1.0)


def test_coverage_of_a_calibrated_gaussian_posterior_is_095():
    """Samples of the posterior N(x, s^2) per pixel: the truth lies within 2 s of the mean in
    95.4 % of pixels (s known), the rule the coverage's reading rests on."""
    rng = np.random.default_rng(2)
    ref = np.abs(disc(128)).astype(np.float64) + 1.0
    s = rng.uniform(0.05, 0.1, ref.shape)
    mean = ref + s * rng.standard_normal(ref.shape)
    assert uncertainty_metrics(mean, ref, s)["std_coverage"] == pytest.approx(0.954, abs=0.01)


def test_undefined_values_are_nan():
    ref = disc()
    constant = uncertainty_metrics(np.abs(ref) + 0.1, ref, np.zeros(ref.shape))
    assert np.isnan(constant["std_spearman"]) and constant["std_coverage"] == 0.0
    assert all(np.isnan(v) for v in uncertainty_metrics(ref, np.zeros_like(ref), np.ones(ref.shape)).values())
    assert set(uncertainty_metrics(ref, ref, np.ones(ref.shape))) == set(NAMES)
    with pytest.raises(ValueError, match="^std: shape"):
        uncertainty_metrics(ref, ref, np.ones((3, 3)))
