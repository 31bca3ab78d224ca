"""The fastMRI baseline (Zbontar et al. 2018): an image-domain U-Net that maps the zero-filled
(or CG-SENSE) image to the reference (trained supervised with an L1 loss and RMSprop: its
config's train_defaults)."""

from __future__ import annotations

import torch
from torch import nn

from mrirecon.methods.base import REGISTRY, from_channels, register, to_channels
from mrirecon.methods.direct import Direct
from mrirecon.physics.sense import SenseOperator


@register("unet_image")
class ImageUNet(Direct):
    """x_hat = N(x0) (residual: x0 + N(x0)), x0 = the `input` method's image of the normalised
    data (complex images as real and imaginary channels).

    Args:
        net: the network (fastMRI's U-Net: model=fastmri_unet, the default of its config).
        input: the classical method that makes the network's input: 'zero_filled' (A^H y) or
            'cg_sense' (with its defaults: lam by the discrepancy principle).
        residual: see `Direct`.
    """

    def __init__(self, net: nn.Module, input: str = "zero_filled", residual: bool = False) -> None:
        super().__init__(net, residual)
        if input not in ("zero_filled", "cg_sense"):
            raise ValueError(f"input: {input!r} must be 'zero_filled' or 'cg_sense'")
        self.input = REGISTRY[input]()

    def map(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            x0 = self.input.reconstruct(y, op, noise_std)
        x = from_channels(self.run_network(to_channels(x0)))
        return self.combine(x0, x)
