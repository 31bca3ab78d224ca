"""The diffusion prior's loss: denoising score matching (Vincent 2011; Song & Ermon 2019) in
Karras et al. (2022)'s weighting. Each slice's reference image, divided by s = max |A^H y| of its
measured data (as reconstruction divides y by s), is noised at a level sigma drawn log-uniformly
from the network's [sigma_min, sigma_max]; the loss is

    mean over slices and pixels of w(sigma) |D(x + sigma n, sigma) - x|^2,
    w(sigma) = (sigma_c^2 + SIGMA_DATA^2) / (sigma_c SIGMA_DATA)^2, sigma_c = sigma / sqrt(2),

n complex standard normal (E|n|^2 = 1). Minimised by the posterior mean E[x | x + sigma n], whose
residual (D - v) / sigma^2 is the score of the noised image density (Tweedie). w makes the
target of the preconditioned network unit-variance at every level (nets/diffusion.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mrirecon.data.batch import Batch
from mrirecon.losses.base import ScoreLoss, register_loss
from mrirecon.methods.base import data_scale, to_channels
from mrirecon.nets import ScoreModel
from mrirecon.nets.diffusion import SIGMA_DATA
from mrirecon.physics.sense import SenseOperator


def normalised_images(batch: Batch) -> torch.Tensor:
    """The reference images divided by s = max |A^H y| of each slice's measured data, as 2
    channels (B, 2, X, Y) float32."""
    s = data_scale(batch.y, SenseOperator(batch.maps, batch.mask))
    return to_channels(batch.reference() / s.reshape(-1, 1, 1).to(batch.reference().dtype))


def draw_levels(n: int, sigma_min: float, sigma_max: float, generator: torch.Generator) -> torch.Tensor:
    """n noise levels (n,) float32, log-uniform on [sigma_min, sigma_max] (CPU draws)."""
    u = torch.rand(n, generator=generator)
    return torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))


def score_matching(model: ScoreModel, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Weighted denoising error (B,) of clean images x (B, 2, X, Y) noised with the generator's draws."""
    sigma = draw_levels(x.shape[0], model.sigma_min, model.sigma_max, generator).to(x.device)
    noise = torch.randn(x.shape, generator=generator).to(x.device) / math.sqrt(2)  # E|n|^2 = 1 per complex pixel
    s = sigma.reshape(-1, 1, 1, 1)
    sigma_c = s / math.sqrt(2)
    weight = (sigma_c**2 + SIGMA_DATA**2) / (sigma_c * SIGMA_DATA) ** 2
    error = weight * (model(x + s * noise, sigma) - x).pow(2)
    return error.flatten(1).sum(1) / (x[0].numel() / 2)  # per complex pixel


@register_loss("denoising_score")
class DenoisingScoreMatching(ScoreLoss):
    """mean over the batch of the weighted denoising error per pixel (see the module docstring)."""

    def __call__(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        if not isinstance(model, ScoreModel):
            raise TypeError(f"{type(model).__name__} is no score model")
        return score_matching(model, normalised_images(batch), generator).mean()
