"""AUTOMAP (Zhu et al., Nature 2018) on coil-combined k-space, trained supervised (MSE, RMSprop).

Input: the coil-combined k-space fft2c(A^H y) of the normalised data (one complex value per
pixel), not the C coils' k-space: the first dense layer has (2 N) x N weights for N pixels; with
the 8 coils' k-space as input it would have 8 times as many (419 million at 80x64 instead of
52 million), which does not train on a CPU in minutes. Coil combination with the maps keeps what
SENSE knows about the coils; AUTOMAP learns the rest. The image size is fixed at training.
"""

from __future__ import annotations

import os

import torch

from mrirecon.methods.base import AUTO, from_channels, register, to_channels
from mrirecon.methods.direct import Direct
from mrirecon.nets.automap import Automap, automap_weights, training_bytes
from mrirecon.physics.fft import fft2c
from mrirecon.physics.sense import SenseOperator

GB = 1e9


def machine_memory() -> float:
    """The machine's physical memory in bytes."""
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@register("automap")
class AutomapMethod(Direct):
    """x_hat = AUTOMAP(fft2c(A^H y)) (residual: A^H y + AUTOMAP(fft2c(A^H y))) for images of `shape`.

    Args:
        shape: (X, Y) of the images (given by the trainable family from the data).
        width, conv_channels: see nets.automap.Automap.
        memory_limit_gb: 'auto' (the machine's physical memory) or the memory (GB) that
            training may take; a size that needs more is refused before anything is allocated.
        loss, residual: see `Direct` (the paper: 'mse', no residual).
    """

    fixed_shape = True  # built for one image size: the trainable family passes `shape`

    def __init__(
        self,
        shape: tuple[int, int],
        width: int = 1,
        conv_channels: int = 64,
        memory_limit_gb: str | float = AUTO,
        loss: str = "mse",
        residual: bool = False,
    ) -> None:
        super().__init__(loss, residual)
        shape = (int(shape[0]), int(shape[1]))
        limit = machine_memory() if memory_limit_gb == AUTO else float(memory_limit_gb) * GB
        need = training_bytes(shape, width=width, conv_channels=conv_channels)
        if need > limit:
            raise ValueError(
                f"shape: AUTOMAP for {shape[0]}x{shape[1]} images has {automap_weights(shape, width, conv_channels):,} "
                f"weights and needs {need / GB:,.1f} GB to train, more than the {limit / GB:,.1f} GB allowed "
                f"(memory_limit_gb: {memory_limit_gb}); its dense layers grow with the square of the pixel count: "
                "use a quarter-scale variant (80x64 needs about 1.3 GB)"
            )
        self.net = Automap(shape, width, conv_channels)

    def map(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        x0 = op.adjoint(y)
        x = from_channels(self.run_network(self.net, to_channels(fft2c(x0))))
        return self.combine(x0, x)
