"""The fastMRI baseline U-Net (Zbontar et al. 2018, arXiv:1811.08839; the architecture of
fastMRI's models/unet.py, MIT licence, written anew here): at each level two 3x3 convolutions
without bias, each followed by instance norm, LeakyReLU(0.2) and dropout; 2x2 average pooling
down, 2x2 transposed convolution (+ instance norm, LeakyReLU) up, skip connections by
concatenation, a final 1x1 convolution. Not residual: it maps its input image to the output."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrirecon.nets import register_net


def _conv_block(cin: int, cout: int, drop_prob: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in ((cin, cout), (cout, cout)):
        layers += [
            nn.Conv2d(a, b, 3, padding=1, bias=False),
            nn.InstanceNorm2d(b),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(drop_prob),
        ]
    return nn.Sequential(*layers)


def _up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False), nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)
    )


@register_net("fastmri_unet")
class FastMRIUNet(nn.Module):
    """fastMRI's U-Net, (B, in_channels, H, W) -> (B, out_channels, H, W) for any H and W (inputs
    are zero-padded to a multiple of 2^num_pools and cropped back).

    Args:
        in_channels: input channels (2: real and imaginary parts of a complex image).
        out_channels: output channels (None: as many as the input).
        chans: channels of the first level, doubled at each pooling (fastMRI: 32).
        num_pools: pooling levels (fastMRI: 4).
        drop_prob: dropout probability (fastMRI: 0).
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int | None = None,
        chans: int = 32,
        num_pools: int = 4,
        drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        for key, value in (("in_channels", in_channels), ("chans", chans), ("num_pools", num_pools)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: {value!r} must be an integer >= 1")
        if not 0 <= float(drop_prob) < 1:
            raise ValueError(f"drop_prob: {drop_prob!r} must be in [0, 1)")
        out_channels = in_channels if out_channels is None else out_channels
        widths = [chans * 2**i for i in range(num_pools + 1)]  # the last one: the bottom block
        self.down = nn.ModuleList([_conv_block(in_channels, widths[0], drop_prob)])
        self.down.extend(_conv_block(widths[i], widths[i + 1], drop_prob) for i in range(num_pools))
        self.up = nn.ModuleList(_up_block(widths[i + 1], widths[i]) for i in reversed(range(num_pools)))
        self.merge = nn.ModuleList(_conv_block(2 * widths[i], widths[i], drop_prob) for i in reversed(range(num_pools)))
        self.out = nn.Conv2d(widths[0], out_channels, 1)
        self.num_pools = num_pools

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.num_pools
        if min(h + (-h) % m, w + (-w) % m) < 2 * m:  # instance norm needs >= 2x2 pixels at the bottom
            raise ValueError(
                f"num_pools: {self.num_pools} pooling levels need images of at least {2 * m}x{2 * m} "
                f"pixels, not {h}x{w} (use fewer pools)"
            )
        y = F.pad(x, (0, (-w) % m, 0, (-h) % m))
        skips = []
        for i, block in enumerate(self.down):
            y = block(y if i == 0 else F.avg_pool2d(y, 2))
            skips.append(y)
        skips.pop()  # the bottom block's output is y itself
        for up, merge in zip(self.up, self.merge):
            y = merge(torch.cat([up(y), skips.pop()], dim=1))
        return self.out(y)[..., :h, :w]
