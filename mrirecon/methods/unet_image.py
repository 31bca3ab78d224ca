"""The fastMRI baseline (Zbontar et al. 2018): an image-domain U-Net that maps the zero-filled
(or CG-SENSE) image to the reference, trained supervised with an L1 loss and RMSprop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mrirecon.methods.base import REGISTRY, from_channels, register, to_channels
from mrirecon.methods.direct import Direct
from mrirecon.nets import build_net
from mrirecon.physics.sense import SenseOperator


@register("unet_image")
class ImageUNet(Direct):
    """x_hat = N(x0) (residual: x0 + N(x0)), x0 = the `input` method's image of the normalised
    data (complex images as real and imaginary channels).

    Args:
        net: the network's config, {name, ...} of mrirecon.nets (fastMRI's U-Net: fastmri_unet).
        input: the classical method that makes the network's input: 'zero_filled' (A^H y) or
            'cg_sense' (with its defaults: lam by the discrepancy principle).
        loss, residual: see `Direct`.
    """

    def __init__(
        self, net: Mapping[str, Any], input: str = "zero_filled", loss: str = "l1", residual: bool = False
    ) -> None:
        super().__init__(loss, residual)
        if input not in ("zero_filled", "cg_sense"):
            raise ValueError(f"input: {input!r} must be 'zero_filled' or 'cg_sense'")
        self.input = REGISTRY[input]()
        try:
            self.net = build_net(net)
        except ValueError as exc:
            raise ValueError(f"net.{exc}") from None

    def map(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            x0 = self.input.reconstruct(y, op, noise_std)
        x = from_channels(self.run_network(self.net, to_channels(x0)))
        return self.combine(x0, x)
