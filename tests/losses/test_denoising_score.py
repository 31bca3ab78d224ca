"""The diffusion prior's loss: denoising score matching that falls while a tiny denoiser trains,
on images normalised by the measured data's scale (unit-free)."""

from __future__ import annotations

import pytest
import torch
from tiny_training import image_items

from mrirecon.data.batch import collate
from mrirecon.losses.denoising_score import DenoisingScoreMatching, draw_levels, normalised_images
from mrirecon.nets import build_net

TINY = {"name": "diffusion", "base_channels": 8, "depth": 2, "sigma_min": 0.01, "sigma_max": 1.0}


def smooth_images(n: int = 8, shape: tuple[int, int] = (16, 16)) -> torch.Tensor:
    """n smooth blobs (n, X, Y) of random widths and centres: images a denoiser can learn."""
    g = torch.Generator().manual_seed(0)
    u, v = torch.meshgrid(torch.linspace(-1, 1, shape[0]), torch.linspace(-1, 1, shape[1]), indexing="ij")
    centres, widths = torch.rand(n, 2, generator=g) - 0.5, 2 + 4 * torch.rand(n, generator=g)
    d2 = (u - centres[:, 0, None, None]) ** 2 + (v - centres[:, 1, None, None]) ** 2
    return torch.exp(-d2 * widths[:, None, None])


def test_the_score_matching_loss_falls_on_a_tiny_problem():
    torch.manual_seed(0)
    net = build_net(TINY)
    batch = collate(image_items(smooth_images()))
    loss = DenoisingScoreMatching()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)

    def evaluate() -> float:  # the same 8 draws of levels and noise each time
        with torch.no_grad():
            return sum(float(loss(net, batch, torch.Generator().manual_seed(1000 + k))) for k in range(8)) / 8

    before = evaluate()
    for step in range(80):
        opt.zero_grad()
        loss(net, batch, torch.Generator().manual_seed(step)).backward()
        opt.step()
    assert evaluate() < 0.75 * before, (before, evaluate())


def test_images_are_normalised_by_the_measured_data_not_their_units():
    batch = collate(image_items(smooth_images(2)))
    scaled = batch.replace(ksp=batch.ksp * 300.0, img=batch.reference() * 300.0)
    x = normalised_images(batch)
    assert x.shape == (2, 2, 16, 16)
    assert torch.allclose(normalised_images(scaled), x, atol=1e-6)
    assert torch.allclose(x.abs().amax((1, 2, 3)), torch.ones(2), atol=1e-5)  # fully sampled: s = max |x|


def test_noise_levels_are_log_uniform_in_the_range():
    sigma = draw_levels(4000, 0.01, 1.0, torch.Generator().manual_seed(0))
    assert sigma.min() >= 0.01 and sigma.max() <= 1.0
    assert abs(float(sigma.log10().mean()) + 1.0) < 0.03  # the mean of log10 is halfway


def test_the_loss_refuses_a_network_that_is_no_score_model():
    batch = collate(image_items(smooth_images(2)))
    with pytest.raises(TypeError, match="no score model"):
        DenoisingScoreMatching()(build_net({"name": "unet", "base_channels": 4, "depth": 2}), batch, torch.Generator())
