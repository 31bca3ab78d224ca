"""Self-supervised data splitting (SSDU, Yaman et al. 2020; deepinv's loss/measplit.py): the
method sees part of each slice's measured samples and the loss is its error on the held-out
rest, in k-space; the reference image is never read. With holdout 0 it is DeepInPy's
unsupervised loss on all measured samples."""

from __future__ import annotations

import torch
from torch import nn

from mrirecon.data.batch import Batch
from mrirecon.losses.base import ReconstructionLoss, reconstruct, register_loss, scale_weight
from mrirecon.physics.sense import SenseOperator


def split_mask(
    mask: torch.Tensor, holdout: float, generator: torch.Generator, keep_center: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each sampling mask (B, X, Y) into disjoint (input, loss) masks, with a random
    `holdout` fraction of the measured samples in the loss mask. Samples in the central
    `keep_center` fraction of each k-space dimension always stay in the input, as the centre is
    always measured."""
    draw = torch.rand(mask.shape, generator=generator).to(mask.device)
    held = draw < holdout
    if keep_center > 0:
        x, y = mask.shape[-2:]
        hx, hy = max(1, round(x * keep_center / 2)), max(1, round(y * keep_center / 2))
        held[..., x // 2 - hx : x // 2 + hx, y // 2 - hy : y // 2 + hy] = False
    loss_mask = mask * held.to(mask.dtype)
    return mask - loss_mask, loss_mask


@register_loss("ssdu")
class SplitLoss(ReconstructionLoss):
    """mean over the batch of ||M_h (A x_hat - y)||^2 / s^2, x_hat reconstructed from the measured
    samples outside M_h (a new random split every step).

    Args:
        holdout: fraction of each slice's measured samples held out for the loss, in [0, 1)
            (0: no split, the loss on every measured sample: DeepInPy's).
        holdout_center: central fraction of k-space (per dimension) never held out, in [0, 1).
    """

    reference = False

    def __init__(self, holdout: float = 0.4, holdout_center: float = 0.1) -> None:
        for key, value in (("holdout", holdout), ("holdout_center", holdout_center)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{key}: {value!r} is not in [0, 1)")
        self.holdout, self.holdout_center = float(holdout), float(holdout_center)

    def __call__(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        mask = batch.mask
        input_mask, loss_mask = (
            split_mask(mask, self.holdout, generator, self.holdout_center) if self.holdout > 0 else (mask, mask)
        )
        x_hat, y, op = reconstruct(model, batch, input_mask)
        residual = SenseOperator(batch.maps, loss_mask).forward(x_hat) - batch.ksp * loss_mask.unsqueeze(1)
        return (scale_weight(y, op) * residual.abs().pow(2).flatten(1).sum(1)).mean()
