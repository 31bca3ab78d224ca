"""DeepInPy's ResNet denoiser: pre-activation residual blocks with a global residual."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from mrirecon.nets import register_net

PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]  # torch.nn.Conv2d's padding modes


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


@register_net("resnet")
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


class ProjectionBlock(nn.Module):
    """DeepInPy's ResNetBlock: [BN] ReLU -> conv -> [BN] [ReLU] -> conv (dropout after each conv)
    plus a skip that is a 1x1 convolution when the channel count changes."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        latent_channels: int,
        kernel_size: int,
        final_relu: bool,
        batch_norm: bool,
        dropout: float,
        bias: bool,
        padding_mode: PaddingMode,
    ) -> None:
        super().__init__()
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1, bias=bias)
        conv = lambda i, o: nn.Conv2d(i, o, kernel_size, padding="same", padding_mode=padding_mode, bias=bias)  # noqa: E731
        layers: list[nn.Module] = [nn.BatchNorm2d(in_channels)] if batch_norm else []
        layers += [nn.ReLU(), conv(in_channels, latent_channels)]
        layers += [nn.Dropout(dropout)] if dropout > 0 else []
        layers += [nn.BatchNorm2d(latent_channels)] if batch_norm else []
        layers += [nn.ReLU(inplace=True)] if final_relu else []
        layers += [conv(latent_channels, out_channels)]
        layers += [nn.Dropout(dropout)] if dropout > 0 else []
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


@register_net("resnet_deepinpy")
class DeepInPyResNet(nn.Module):
    """DeepInPy's ResNet exactly (models/resnet/resnet.py): the first block maps in_channels to
    `channels` and the last block back (each with a 1x1 projection skip; the last block without
    its inner ReLU), the blocks between stay at `channels`; a global residual. Same weights
    count as DeepInPy's for the same settings. (B, in_channels, H, W) -> same shape.

    Args:
        in_channels: image channels (2 for real/imaginary parts).
        channels: latent channels (DeepInPy: 64).
        num_blocks: residual blocks (DeepInPy: 3; 1 gives one block in -> channels -> in).
        kernel_size: convolution size (DeepInPy: 7).
        batch_norm, dropout, bias: as DeepInPy (off, 0, off).
        padding_mode: "reflect" (DeepInPy's ReflectionPad2d) or "zeros".
    """

    def __init__(
        self,
        in_channels: int = 2,
        channels: int = 64,
        num_blocks: int = 3,
        kernel_size: int = 7,
        batch_norm: bool = False,
        dropout: float = 0.0,
        bias: bool = False,
        padding_mode: PaddingMode = "reflect",
    ) -> None:
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks: {num_blocks} must be >= 1")
        sizes = [in_channels] + [channels] * (num_blocks - 1) + [in_channels]
        self.blocks = nn.Sequential(
            *(
                ProjectionBlock(
                    sizes[i],
                    sizes[i + 1],
                    channels,
                    kernel_size,
                    i < num_blocks - 1,
                    batch_norm,
                    dropout,
                    bias,
                    padding_mode,
                )
                for i in range(num_blocks)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.blocks(x)
