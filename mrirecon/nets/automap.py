"""AUTOMAP (Zhu et al., Nature 2018): dense layers from k-space to an image, then convolutions.

k-space (B, 2, X, Y) (real and imaginary parts) -> flattened 2N values (N = X * Y) -> dense to
width * N, tanh -> dense to N, tanh -> reshaped to (B, 1, X, Y) -> two 5x5 convolutions with
`conv_channels` channels and ReLU -> a 7x7 transposed convolution to `out_channels`. The dense
layers hold 2 w N^2 + w N^2 weights: they grow with the square of the pixel count, so AUTOMAP is
a small-image method (about 78 million weights at 80x64, 20 billion at 320x256): a size whose
training would need more memory than allowed is refused before anything is allocated.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from mrirecon.nets import register_net

BYTES_PER_WEIGHT = 4  # float32
GB = 1e9
AUTO = "auto"


def machine_memory() -> float:
    """The machine's physical memory in bytes."""
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def automap_weights(shape: tuple[int, int], width: int = 1, conv_channels: int = 64, out_channels: int = 2) -> int:
    """The number of weights of an AUTOMAP for images of `shape` (X, Y)."""
    n = int(shape[0]) * int(shape[1])
    dense = (2 * n + 1) * width * n + (width * n + 1) * n
    conv = (
        (25 + 1) * conv_channels
        + (25 * conv_channels + 1) * conv_channels
        + 49 * conv_channels * out_channels
        + out_channels
    )
    return dense + conv


def training_bytes(shape: tuple[int, int], batch_size: int = 1, **kwargs: int) -> int:
    """Memory (bytes) to train an AUTOMAP for `shape`: weights, gradients and the optimiser's
    state (one float per weight for RMSprop, two for Adam: two counted), plus activations."""
    n = int(shape[0]) * int(shape[1])
    activations = batch_size * n * (4 + 3 * kwargs.get("width", 1) + 4 * kwargs.get("conv_channels", 64))
    return BYTES_PER_WEIGHT * (4 * automap_weights(shape, **kwargs) + 2 * activations)


def check_memory(shape: tuple[int, int], width: int, conv_channels: int, memory_limit_gb: str | float) -> None:
    """ValueError('shape: ...') when training an AUTOMAP for `shape` needs more memory than
    `memory_limit_gb` ('auto': the machine's physical memory; else GB)."""
    limit = machine_memory() if memory_limit_gb == AUTO else float(memory_limit_gb) * GB
    need = training_bytes(shape, width=width, conv_channels=conv_channels)
    if need > limit:
        raise ValueError(
            f"shape: AUTOMAP for {shape[0]}x{shape[1]} images has {automap_weights(shape, width, conv_channels):,} "
            f"weights and needs {need / GB:,.1f} GB to train, more than the {limit / GB:,.1f} GB allowed "
            f"(memory_limit_gb: {memory_limit_gb}); its dense layers grow with the square of the pixel count: "
            "use a quarter-scale variant (80x64 needs about 1.3 GB)"
        )


@register_net("automap")
class Automap(nn.Module):
    """AUTOMAP for images of `shape`, (B, 2, X, Y) input -> (B, out_channels, X, Y).

    Args:
        shape: (X, Y), fixed: the dense layers are made for this size (given by the code that
            builds it, from the data).
        width: the first dense layer's width, in multiples of N = X * Y (the paper: 1).
        conv_channels: channels of the two 5x5 convolutions (the paper: 64).
        out_channels: output channels (2: real and imaginary parts).
        memory_limit_gb: 'auto' (the machine's physical memory) or the memory (GB) that training
            may take; a size that needs more is refused before anything is allocated.
    """

    def __init__(
        self,
        shape: tuple[int, int],
        width: int = 1,
        conv_channels: int = 64,
        out_channels: int = 2,
        memory_limit_gb: str | float = AUTO,
    ) -> None:
        super().__init__()
        for key, value in (("width", width), ("conv_channels", conv_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: {value!r} must be an integer >= 1")
        self.shape = (int(shape[0]), int(shape[1]))
        check_memory(self.shape, width, conv_channels, memory_limit_gb)
        n = self.shape[0] * self.shape[1]
        self.dense = nn.Sequential(nn.Linear(2 * n, width * n), nn.Tanh(), nn.Linear(width * n, n), nn.Tanh())
        self.conv = nn.Sequential(
            nn.Conv2d(1, conv_channels, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(conv_channels, conv_channels, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(conv_channels, out_channels, 7, padding=3),
        )

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        if tuple(k.shape[-2:]) != self.shape:
            raise ValueError(
                f"shape: this AUTOMAP was made for {self.shape[0]}x{self.shape[1]} images, "
                f"not {k.shape[-2]}x{k.shape[-1]}"
            )
        h = self.dense(k.flatten(1)).reshape(k.shape[0], 1, *self.shape)
        return self.conv(h)
