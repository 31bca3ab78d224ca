"""The model-error check of the coil maps on the calibration region (physics/model_error.py): its
noise normalisation, and on real acquired k-space: silent with the maps ESPIRiT estimates, firing
where their support is cut; silent on the simulated sample, noisy or noiseless."""

from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri
import torch
from helpers import ASSETS
from scipy import ndimage

from mrirecon.data.completion import espirit_maps
from mrirecon.data.formats.sample import SampleSource
from mrirecon.physics.model_error import MIN_WIDTH, calibration_width, model_error
from mrirecon.physics.noise import estimate_noise_std


def check(y: np.ndarray, maps: np.ndarray, mask: np.ndarray, sigma: float):
    """The check of one slice: (ratio, fraction, fires)."""
    found = model_error(
        torch.from_numpy(y[None]), torch.from_numpy(maps[None]), torch.from_numpy(mask[None]), torch.tensor([sigma])
    )
    return float(found.ratio[0]), float(found.fraction[0]), bool(found.exceeds()[0])


def cut(maps: np.ndarray, pixels: int) -> np.ndarray:
    """Maps zeroed outside their support eroded by `pixels` (the object's rim outside the model)."""
    inside = ndimage.binary_erosion(np.abs(maps).sum(0) > 0, iterations=pixels)
    return (maps * inside).astype(np.complex64)


@pytest.fixture(scope="module")
def phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The real fully sampled 4-coil phantom, Poisson R = 6 (24x24 calibration), ESPIRiT maps from
    the undersampled data, sigma estimated: (y, maps, mask, sigma)."""
    full = np.load(ASSETS / "phantom_4coil_gre_256.npy")
    mask = (sigpy.mri.poisson(full.shape[1:], 6.0, calib=(24, 24), seed=2) != 0).astype(np.float32)
    y = (full * mask).astype(np.complex64)
    sigma = float(estimate_noise_std(torch.from_numpy(y), torch.from_numpy(mask)))
    return y, espirit_maps(y, 24, 0.02, 0.95), mask, sigma


def test_pure_noise_gives_a_ratio_of_one():
    """Noise only, smooth full-support maps: the residual is at its noise expectation."""
    rng = np.random.default_rng(0)
    shape, coils = (64, 64), 6
    u, v = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    maps = np.stack([np.exp(-((u - np.cos(a)) ** 2 + (v - np.sin(a)) ** 2)) for a in np.arange(coils)])
    maps = (maps / np.sqrt((maps**2).sum(0))).astype(np.complex64)
    noise = 0.1 * (rng.standard_normal((coils, *shape)) + 1j * rng.standard_normal((coils, *shape))) / np.sqrt(2)
    ratio, _, fires = check(noise.astype(np.complex64), maps, np.ones(shape, np.float32), 0.1)
    assert ratio == pytest.approx(1.0, abs=0.1) and not fires


def test_calibration_width_is_the_fully_sampled_centre():
    mask = np.zeros((40, 30), np.float32)
    mask[20 - 9 : 20 + 9, 15 - 9 : 15 + 9] = 1
    assert calibration_width(torch.from_numpy(mask)) == 18
    mask[20, 15] = 0
    assert calibration_width(torch.from_numpy(mask)) == 0  # nothing fully sampled around the centre
    small = np.zeros((40, 30), np.float32)
    small[20 - 5 : 20 + 5, 15 - 5 : 15 + 5] = 1
    assert calibration_width(torch.from_numpy(small)) == 0 < MIN_WIDTH  # too small to check
    y = np.ones((2, 40, 30), np.complex64)
    ratio, _, fires = check(y, y, small, 1.0)
    assert np.isnan(ratio) and not fires


def test_real_phantom_silent_with_its_maps_firing_with_cut_maps(phantom):
    y, maps, mask, sigma = phantom
    ratio, fraction, fires = check(y, maps, mask, sigma)
    assert not fires and ratio < 3, (ratio, fraction)
    ratio, fraction, fires = check(y, cut(maps, 12), mask, sigma)
    assert fires and ratio > 6, (ratio, fraction)
    tight = espirit_maps(y, 24, 0.02, 0.995)  # ESPIRiT whose crop cuts the bottle's rim
    assert check(y, tight, mask, sigma)[2]


def test_real_brain_silent_with_its_maps_firing_with_cut_maps():
    y = np.load(ASSETS / "brain_8coil_ksp_poisson8x.npy")
    mask = (np.abs(y).sum(0) > 0).astype(np.float32)
    sigma = float(estimate_noise_std(torch.from_numpy(y), torch.from_numpy(mask)))
    maps = espirit_maps(y, 24, 0.02, 0.95)
    ratio, fraction, fires = check(y, maps, mask, sigma)
    assert not fires and ratio < 3, (ratio, fraction)
    ratio, fraction, fires = check(y, cut(maps, 12), mask, sigma)
    assert fires and ratio > 6, (ratio, fraction)


@pytest.mark.parametrize("noise", [None, 0.0])
def test_silent_on_the_sample(noise):
    """The sample (simulation: true birdcage maps), with its noise and noiseless (sigma 0: the
    ratio is infinite, the fraction of the calibration energy decides)."""
    s = (SampleSource() if noise is None else SampleSource(noise=noise)).read(13)
    ratio, fraction, fires = check((s.ksp * s.mask).astype(np.complex64), s.maps, s.mask, s.noise_std)
    assert not fires, (ratio, fraction)
