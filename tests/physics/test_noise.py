"""Noise estimation from measured k-space: known added noise, and real scans."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri
import torch
from helpers import ASSETS

from mrirecon.data.formats.sample import SampleSource
from mrirecon.physics.noise import complex_noise, estimate_noise_std

DATA = ASSETS
PHANTOM = np.load(DATA / "phantom_4coil_gre_256.npy")
BRAIN = np.load(DATA / "brain_8coil_ksp_poisson8x.npy")


def corner_noise(ksp: np.ndarray, width: int = 24) -> float:
    """Independent truth for fully sampled data: RMS of the four k-space corners (no signal)."""
    corners = [
        ksp[:, a, b] for a in (slice(0, width), slice(-width, None)) for b in (slice(0, width), slice(-width, None))
    ]
    return float(np.sqrt(np.mean(np.concatenate([np.abs(c).ravel() ** 2 for c in corners]))))


def estimate(ksp: np.ndarray, mask: np.ndarray, **kwargs) -> float:
    return float(estimate_noise_std(torch.from_numpy(ksp * mask), torch.from_numpy(mask), **kwargs))


def poisson(shape: tuple[int, int], accel: float, seed: int) -> np.ndarray:
    return (sigpy.mri.poisson(shape, accel, calib=(24, 24), seed=seed, dtype=np.float32) != 0).astype(np.float32)


@pytest.mark.parametrize("accel", [4, 6, 8])
def test_real_phantom_within_10_percent_of_its_kspace_corners(accel):
    truth = corner_noise(PHANTOM)
    mask = poisson(PHANTOM.shape[1:], accel, seed=accel)
    assert estimate(PHANTOM, mask) == pytest.approx(truth, rel=0.10)


def test_locations_that_are_exactly_zero_count_as_not_measured():
    u, v = np.meshgrid(np.linspace(-1, 1, 256), np.linspace(-1, 1, 256), indexing="ij")
    elliptical = PHANTOM * (u**2 + v**2 <= 1)  # a scanner that skipped the k-space corners
    ones = np.ones((256, 256), np.float32)
    assert estimate(elliptical, ones) == pytest.approx(corner_noise(PHANTOM), rel=0.10)


@pytest.mark.parametrize("index", [0, 7, 13])
def test_known_added_noise_on_the_sample(index):
    s = SampleSource().read(index)  # k-space noise of std 0.018 added to real knee anatomy
    assert estimate(s.ksp, s.mask) == pytest.approx(s.noise_std, rel=0.10)
    louder = SampleSource(noise=0.05).read(index)
    assert estimate(louder.ksp, louder.mask) == pytest.approx(0.05, rel=0.10)


def test_real_brain_estimate_is_the_periphery_plateau():
    mask = (np.abs(BRAIN).sum(0) > 0).astype(np.float32)
    outer, wider = estimate(BRAIN, mask, outer=0.05), estimate(BRAIN, mask, outer=0.2)
    assert outer == pytest.approx(wider, rel=0.10)  # flat: noise, not a signal tail
    assert 0.015 < estimate(BRAIN, mask) < 0.02


def test_batched_estimates_equal_single_ones_and_scale_with_the_data():
    s = [SampleSource().read(i) for i in (2, 3)]
    ksp = torch.from_numpy(np.stack([x.ksp * x.mask for x in s]))
    mask = torch.from_numpy(np.stack([x.mask for x in s]))
    batched = estimate_noise_std(ksp, mask)
    assert batched.tolist() == [float(estimate_noise_std(ksp[i], mask[i])) for i in range(2)]
    assert torch.allclose(estimate_noise_std(1e-6 * ksp, mask), 1e-6 * batched, rtol=1e-5)
    assert estimate_noise_std(torch.zeros(1, 2, 8, 8, dtype=torch.complex64), mask[:1, :8, :8]).item() == 0


def test_complex_noise_level():
    n = complex_noise((2, 4, 64, 64), torch.tensor([0.5, 2.0]), torch.Generator().manual_seed(0))
    rms = n.abs().pow(2).flatten(1).mean(1).sqrt()
    assert torch.allclose(rms, torch.tensor([0.5, 2.0]), rtol=0.03)
    assert abs(float(n.real.std() / n.imag.std()) - 1) < 0.02
    with pytest.raises(ValueError, match="outer"):
        estimate_noise_std(n, torch.ones(64, 64), outer=0)
