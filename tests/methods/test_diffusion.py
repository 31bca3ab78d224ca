"""Posterior sampling with the diffusion prior: the sampler's shapes, the mean and std of its
samples, reproducible draws, and data consistency that dominates on noiseless full sampling."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_arrays

from mrirecon.methods import build_method
from mrirecon.methods.base import data_scale
from mrirecon.methods.diffusion import noise_schedule
from mrirecon.nets import build_net
from mrirecon.physics.sense import SenseOperator

SHAPE = (16, 12)
FAST = {"name": "diffusion", "samples": 3, "noise_levels": 6, "steps": 2}


def tiny_net():
    torch.manual_seed(0)
    return build_net({"name": "diffusion", "base_channels": 4, "depth": 2, "sigma_min": 0.005, "sigma_max": 1.0})


def problem(n: int = 2, full: bool = False) -> tuple[torch.Tensor, SenseOperator, torch.Tensor]:
    """Noiseless y (n, 3, 16, 12) of tiny images, its operator (all measured when `full`), the images."""
    a = tiny_arrays(n=n, coils=3, shape=SHAPE, seed=4)
    mask = torch.ones(n, *SHAPE) if full else torch.from_numpy(a["masks"])
    return (
        torch.from_numpy(a["ksp"]) * mask.unsqueeze(1),
        SenseOperator(torch.from_numpy(a["maps"]), mask),
        torch.from_numpy(a["imgs"]),
    )


def method(**keys):
    return build_method({**FAST, **keys}, net=tiny_net())


def test_the_schedule_is_geometric_from_sigma_max_to_sigma_min():
    sigmas = noise_schedule(1.0, 0.01, 3)
    assert sigmas == pytest.approx([1.0, 0.1, 0.01])
    assert noise_schedule(1.0, 0.01, 1) == [0.01]


def test_the_sampler_gives_samples_and_the_mean_and_std_are_theirs():
    y, op, _ = problem()
    m, noise = method(), torch.full((2,), 1e-3)
    s = data_scale(y, op)
    with torch.no_grad():
        samples = m.sample(y / s.reshape(-1, 1, 1, 1), op, m.data_variance(noise, s)) * s.reshape(1, -1, 1, 1)
    assert samples.shape == (3, 2, *SHAPE) and torch.isfinite(samples).all()
    mean, std = m.reconstruct_with_std(y, op, noise)
    assert mean.shape == std.shape == (2, *SHAPE) and mean.is_complex() and not std.is_complex()
    assert torch.allclose(mean, samples.mean(0), atol=1e-5 * float(mean.abs().max()))
    assert torch.allclose(
        std, (samples - samples.mean(0)).abs().pow(2).mean(0).sqrt(), atol=1e-5 * float(mean.abs().max())
    )
    assert (std > 0).all()
    assert torch.equal(m.reconstruct(y, op, noise), mean)
    one = method(samples=1).reconstruct_with_std(y, op, noise)[1]
    assert one is None  # one sample: no spread to report (reconstruct writes no std, no measures)


def test_sampling_is_reproducible_and_the_seed_changes_the_draws():
    y, op, _ = problem()
    noise = torch.full((2,), 1e-3)
    first = method().reconstruct(y, op, noise)
    assert torch.equal(first, method().reconstruct(y, op, noise))
    assert not torch.allclose(first, method(seed=1).reconstruct(y, op, noise))


def test_noiseless_full_sampling_gives_the_measured_image_whatever_the_prior():
    """All of k-space measured without noise: the data decide (an untrained prior moves the
    result by about sigma_min); without data consistency (lam 0) the samples are the prior's."""
    y, op, imgs = problem(full=True)
    noise = torch.zeros(2)

    def error(**keys) -> float:
        x = method(**keys).reconstruct(y, op, noise)
        return float((x - imgs).norm() / imgs.norm())

    assert error() < 0.02
    assert error(lam=0) > 0.5


def test_lam_weighs_the_data_and_auto_needs_the_noise():
    y, op, _ = problem()
    with pytest.raises(ValueError, match="^noise_std"):
        method().reconstruct(y, op, None)
    weak, strong = method(lam=1.0).reconstruct(y, op), method(lam=1e6).reconstruct(y, op)
    residual = [float((op.forward(x) - y).norm() / y.norm()) for x in (weak, strong)]
    assert residual[1] < 0.5 * residual[0], residual


@pytest.mark.parametrize(
    "key, value", [("samples", 0), ("steps", 0), ("noise_levels", 1.5), ("step_size", 1.0), ("lam", -1), ("seed", "x")]
)
def test_bad_settings_are_refused_by_name(key, value):
    with pytest.raises(ValueError, match=f"^{key}"):
        method(**{key: value})
