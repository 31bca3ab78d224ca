"""The student project's U-Net: 3x3 conv + ReLU pairs, max-pool down, bilinear up + 1x1 conv."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrirecon.nets import register_net


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


@register_net("unet")
class UNet(nn.Module):
    """U-Net denoiser, (B, in_channels, H, W) -> (B, out_channels, H, W) for any H and W.

    Inputs whose sides are not divisible by 2^(depth-1) are zero-padded and cropped back, so
    80x64, 320x256 and odd sizes such as 230x180 all work.

    Args:
        in_channels: image channels (2 for real/imaginary parts).
        base_channels: channels of the first level, doubled at each level down (student: 32).
        depth: number of levels (student: 3 or 4).
        residual: add the input to the output (learn the correction).
        out_channels: output channels (default in_channels; another number only without
            `residual`: the noise-conditioned denoiser of nets/diffusion.py takes a noise-level
            channel more than it gives).
    """

    def __init__(
        self,
        in_channels: int = 2,
        base_channels: int = 32,
        depth: int = 3,
        residual: bool = True,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth: {depth!r} must be an integer >= 1")
        out_channels = in_channels if out_channels is None else out_channels
        if residual and out_channels != in_channels:
            raise ValueError(f"out_channels: {out_channels} differs from in_channels {in_channels}, so no residual")
        chans = [base_channels * 2**i for i in range(depth)]
        self.down = nn.ModuleList([_double_conv(in_channels, chans[0])])
        self.down.extend(_double_conv(chans[i - 1], chans[i]) for i in range(1, depth))
        self.up_proj = nn.ModuleList(nn.Conv2d(chans[i], chans[i - 1], 1) for i in range(depth - 1, 0, -1))
        self.up_conv = nn.ModuleList(_double_conv(2 * chans[i - 1], chans[i - 1]) for i in range(depth - 1, 0, -1))
        self.out = nn.Conv2d(chans[0], out_channels, 1)
        self.depth, self.residual = depth, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2 ** (self.depth - 1)
        pad_h, pad_w = (-h) % m, (-w) % m
        y = F.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                y = F.max_pool2d(y, 2)
            y = block(y)
            skips.append(y)
        for proj, conv, skip in zip(self.up_proj, self.up_conv, reversed(skips[:-1])):
            y = proj(F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False))
            y = conv(torch.cat([skip, y], dim=1))
        y = self.out(y)[..., :h, :w]
        return x + y if self.residual else y
