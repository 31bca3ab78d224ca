"""AUTOMAP (Zhu et al., Nature 2018) on coil-combined k-space, trained supervised (MSE, RMSprop).

Input: the coil-combined k-space fft2c(A^H y) of the normalised data (one complex value per
pixel), not the C coils' k-space: the first dense layer has (2 N) x N weights for N pixels; with
the 8 coils' k-space as input it would have 8 times as many (419 million at 80x64 instead of
52 million), which does not train on a CPU in minutes. Coil combination with the maps keeps what
SENSE knows about the coils; AUTOMAP learns the rest. The network (nets/automap.py, model=automap,
the default of its config) is made for the image size of the training data.
"""

from __future__ import annotations

import torch

from mrirecon.methods.base import from_channels, register, to_channels
from mrirecon.methods.direct import Direct
from mrirecon.physics.fft import fft2c
from mrirecon.physics.sense import SenseOperator


@register("automap")
class AutomapMethod(Direct):
    """x_hat = N(fft2c(A^H y)) (residual: A^H y + g N(fft2c(A^H y))), N the network (AUTOMAP's:
    model=automap); `Direct` has the arguments (the paper: no residual)."""

    def map(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        x0 = op.adjoint(y)
        x = from_channels(self.run_network(to_channels(fft2c(x0))))
        return self.combine(x0, x)
