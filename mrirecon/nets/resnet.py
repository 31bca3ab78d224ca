"""DeepInPy's ResNet denoiser: pre-activation residual blocks with a global residual."""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """ReLU -> conv -> ReLU -> conv (optionally batch norm before each ReLU, dropout) + skip."""

    def __init__(self, channels: int, kernel_size: int, batch_norm: bool, dropout: float, bias: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(2):
            if batch_norm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.ReLU())
            if dropout > 0 and i == 1:
                layers.append(nn.Dropout2d(dropout))
            layers.append(nn.Conv2d(channels, channels, kernel_size, padding="same", bias=bias))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet(nn.Module):
    """Residual CNN denoiser, (B, in_channels, H, W) -> (B, in_channels, H, W), any H and W.

    Args:
        in_channels: image channels (2 for real/imaginary parts).
        channels: latent channels (DeepInPy: 64).
        num_blocks: residual blocks (DeepInPy: 3).
        kernel_size: convolution size (DeepInPy: 7; 3 is about 5x cheaper).
        batch_norm: batch norm in the blocks (DeepInPy: off).
        dropout: dropout probability inside each block (0: off).
        bias: convolution biases (DeepInPy: off).
    """

    def __init__(
        self,
        in_channels: int = 2,
        channels: int = 64,
        num_blocks: int = 3,
        kernel_size: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.head = nn.Conv2d(in_channels, channels, kernel_size, padding="same", bias=bias)
        self.blocks = nn.Sequential(
            *(ResBlock(channels, kernel_size, batch_norm, dropout, bias) for _ in range(num_blocks))
        )
        self.tail = nn.Conv2d(channels, in_channels, kernel_size, padding="same", bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.tail(self.blocks(self.head(x)))
