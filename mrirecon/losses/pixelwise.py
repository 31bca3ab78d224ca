"""The direct methods' supervised losses (fastMRI's L1, AUTOMAP's MSE): per pixel of the image
divided by s = max |A^H y| of its slice, the mean of |x_hat - x| or |x_hat - x|^2."""

from __future__ import annotations

import torch
from torch import nn

from mrirecon.data.batch import Batch
from mrirecon.losses.base import ReconstructionLoss, reconstruct, register_loss
from mrirecon.methods.base import data_scale


class PixelLoss(ReconstructionLoss):
    """mean over the batch and the pixels of |x_hat - x| / s to the power `power`."""

    power = 1

    def __call__(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        x_hat, y, op = reconstruct(model, batch, batch.mask)
        diff = (x_hat - batch.reference()).abs() / data_scale(y, op).reshape(-1, 1, 1)
        return (diff if self.power == 1 else diff.pow(self.power)).flatten(1).mean(1).mean()


@register_loss("l1")
class L1Loss(PixelLoss):
    """mean |x_hat - x| / s (fastMRI's)."""


@register_loss("mse")
class MSELoss(PixelLoss):
    """mean (|x_hat - x| / s)^2 (AUTOMAP's)."""

    power = 2
