"""The supervised image loss of the unrolled methods (DeepInPy's): per slice the squared error
sum |x_hat - x|^2 against the reference, divided by s^2 (s = max |A^H y| of the network input)."""

from __future__ import annotations

import torch
from torch import nn

from mrirecon.data.batch import Batch
from mrirecon.losses.base import ReconstructionLoss, reconstruct, register_loss, scale_weight


@register_loss("sse")
class SquaredErrorLoss(ReconstructionLoss):
    """mean over the batch of sum |x_hat - x|^2 / s^2, x_hat reconstructed from the measured samples."""

    def __call__(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        x_hat, y, op = reconstruct(model, batch, batch.mask)
        error = (x_hat - batch.reference()).abs().pow(2).flatten(1).sum(1)
        return (scale_weight(y, op) * error).mean()
