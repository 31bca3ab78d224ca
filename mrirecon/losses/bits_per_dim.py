"""The flow prior's loss: the discrete negative log-likelihood of the dequantised magnitude
images in bits per dimension (a density model's; its validation metric too)."""

from __future__ import annotations

import math

import torch
from torch import nn

from mrirecon.data.batch import Batch
from mrirecon.losses.base import DensityLoss, register_loss
from mrirecon.nets import DensityModel


def magnitude(batch: Batch) -> torch.Tensor:
    """The reference magnitude images (B, 1, X, Y) float32 of a batch."""
    return batch.reference().abs()[:, None]


def dequantize(x: torch.Tensor, bits: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation: x in [0, 1] -> level k = round(x (2**bits - 1)) -> v = (k + u) /
    2**bits - 1/2 with u ~ U[0, 1) (drawn on the CPU from `generator`). Shape kept."""
    levels = 2**bits
    k = torch.round(x * (levels - 1)).clamp_(0, levels - 1)
    u = torch.rand(k.shape, generator=generator, dtype=k.dtype).to(k.device)
    return (k + u) / levels - 0.5


def bits_per_dim(flow: DensityModel, v: torch.Tensor, bits: int) -> torch.Tensor:
    """Discrete negative log-likelihood in bits per dimension of dequantised images v (B, C, H, W)
    under the density model `flow` -> (B,): -log2 p(v) / D + bits (the density of v lives on bins
    of width 2**-bits)."""
    return -flow.log_prob(v) / (flow.dim * math.log(2)) + bits


@register_loss("bits_per_dim")
class BitsPerDim(DensityLoss):
    """mean bits/dim of the batch's magnitude images, dequantised with the generator's draws.

    Args:
        bits: bit depth of the images (given by the family from the data, not a config key).
    """

    def __init__(self, bits: int) -> None:
        self.bits = int(bits)

    def __call__(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        if not isinstance(model, DensityModel):
            raise TypeError(f"{type(model).__name__} is no density model")
        return bits_per_dim(model, dequantize(magnitude(batch), self.bits, generator), self.bits).mean()
