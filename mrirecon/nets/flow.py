"""A multi-scale neural spline flow (Durkan et al. 2019) over real images (B, C, H, W), built
from `nflows`. It knows nothing about k-space: it maps images v (centred, about [-0.5, 0.5])
to latents z (B, D), D = C*H*W, with a standard normal base, and back.

Per level: a squeeze (C, H, W) -> (4C, H/2, W/2), then `steps` of ActNorm (initialised from
the first training batch: the global batch across data-parallel ranks) -> invertible 1x1
convolution (LU) -> rational-quadratic spline coupling (mid-split channel mask, linear tails,
conditioner a residual conv net), then a 1x1 convolution; after every level but the last, half
the channels leave as latents (multi-scale, RealNVP).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.distributed as dist
from nflows import distributions, flows, transforms
from nflows.nn.nets import ConvResidualNet
from nflows.utils import create_mid_split_binary_mask
from torch import nn

from mrirecon.nets import DensityModel, register_net

# nflows 0.14's LU layers call the deprecated torch.triangular_solve; the result is correct.
warnings.filterwarnings("ignore", message="torch.triangular_solve is deprecated", category=UserWarning)


class GlobalActNorm(transforms.ActNorm):
    """nflows' ActNorm whose data-dependent initialisation (per channel: shift and scale that
    give the first training batch zero mean and unit variance) uses the statistics of the
    global batch when torch.distributed runs several ranks (all-reduced counts, sums and squared
    deviations), so every rank starts from the same values as one process with the whole batch.
    Same parameters and buffers as ActNorm."""

    @property
    def collective(self) -> bool:
        """True until initialised: the first training forward talks to the other ranks."""
        return not bool(self.initialized)

    def _initialize(self, inputs: torch.Tensor) -> None:
        if not (dist.is_initialized() and dist.get_world_size() > 1):
            super()._initialize(inputs)
            return
        if inputs.dim() == 4:
            inputs = inputs.permute(0, 2, 3, 1).reshape(-1, inputs.shape[1])
        with torch.no_grad():
            sums = torch.cat([inputs.sum(0), inputs.new_tensor([inputs.shape[0]])])
            dist.all_reduce(sums)
            count, mean = sums[-1], sums[:-1] / sums[-1]
            squares = (inputs - mean).pow(2).sum(0)
            dist.all_reduce(squares)
            std = (squares / (count - 1)).sqrt()  # unbiased, as ActNorm's torch.std
            self.log_scale.data = -torch.log(std)
            self.shift.data = -mean / std
            self.initialized.data = torch.tensor(True, dtype=torch.bool, device=self.initialized.device)


def _checked_shape(
    shape: tuple[int, int, int],
    levels: int,
    steps: int,
    hidden_channels: int,
    num_blocks: int,
    bins: int,
    tail_bound: float,
) -> tuple[int, int, int]:
    """`ImageFlow`'s shape (C, H, W) as ints, after checking its arguments (ValueError naming the first bad one)."""
    for key, value in (
        ("levels", levels),
        ("steps", steps),
        ("hidden_channels", hidden_channels),
        ("num_blocks", num_blocks),
        ("bins", bins),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}: {value!r} must be an integer >= 1")
    if not float(tail_bound) > 0:
        raise ValueError(f"tail_bound: {tail_bound!r} must be > 0")
    c, h, w = (int(s) for s in shape)
    if h % 2**levels or w % 2**levels:
        raise ValueError(f"levels: {levels} levels need image sides divisible by {2**levels}, the images are {h}x{w}")
    return c, h, w


def _flow_step(
    channels: int, conditioner: Callable[[int, int], nn.Module], bins: int, tail_bound: float
) -> transforms.Transform:
    """ActNorm, 1x1 convolution and a rational-quadratic spline coupling on `channels` channels."""
    coupling = transforms.PiecewiseRationalQuadraticCouplingTransform(
        mask=create_mid_split_binary_mask(channels),
        transform_net_create_fn=conditioner,
        num_bins=bins,
        tails="linear",
        tail_bound=tail_bound,
    )
    return transforms.CompositeTransform([GlobalActNorm(channels), transforms.OneByOneConvolution(channels), coupling])


def _multiscale(
    shape: tuple[int, int, int],
    levels: int,
    steps: int,
    conditioner: Callable[[int, int], nn.Module],
    bins: int,
    tail_bound: float,
) -> transforms.MultiscaleCompositeTransform:
    """The multi-scale transform of images `shape`: per level a squeeze, `steps` flow steps and
    a 1x1 convolution, then half of the channels leave (factored out)."""
    c, h, w = shape
    multiscale = transforms.MultiscaleCompositeTransform(num_transforms=levels)
    for _ in range(levels):
        squeeze = transforms.SqueezeTransform()
        c, h, w = squeeze.get_output_shape(c, h, w)
        level = transforms.CompositeTransform(
            [
                squeeze,
                *(_flow_step(c, conditioner, bins, tail_bound) for _ in range(steps)),
                transforms.OneByOneConvolution(c),
            ]
        )
        hidden = multiscale.add_transform(level, (c, h, w))
        if hidden:
            c, h, w = hidden
    return multiscale


@register_net("flow")
class ImageFlow(DensityModel):
    """Neural spline flow over images of a fixed size.

    Args:
        shape: image shape (C, H, W); H and W divisible by 2**levels (given by the code that
            builds it, from the data).
        levels: multi-scale levels (each starts with a squeeze).
        steps: ActNorm + 1x1 conv + spline coupling steps per level.
        hidden_channels: channels of the conditioner nets.
        num_blocks: residual blocks per conditioner.
        bins: spline bins.
        tail_bound: the splines act on [-tail_bound, tail_bound], linear outside.
        dropout: dropout probability in the conditioners.
        batch_norm: batch norm in the conditioners.
    """

    def __init__(
        self,
        shape: tuple[int, int, int],
        levels: int = 3,
        steps: int = 4,
        hidden_channels: int = 32,
        num_blocks: int = 1,
        bins: int = 8,
        tail_bound: float = 3.0,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.shape = _checked_shape(shape, levels, steps, hidden_channels, num_blocks, bins, tail_bound)

        def conditioner(in_channels: int, out_channels: int) -> nn.Module:
            return ConvResidualNet(
                in_channels,
                out_channels,
                hidden_channels=hidden_channels,
                num_blocks=num_blocks,
                dropout_probability=float(dropout),
                use_batch_norm=bool(batch_norm),
            )

        multiscale = _multiscale(self.shape, levels, steps, conditioner, bins, float(tail_bound))
        self.dim = math.prod(self.shape)
        self.flow = flows.Flow(multiscale, distributions.StandardNormal([self.dim]))

    def log_prob(self, v: torch.Tensor) -> torch.Tensor:
        """Log density (nats) of images v (B, C, H, W) -> (B,)."""
        return self.flow.log_prob(v)

    def encode(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images v (B, C, H, W) -> latents z (B, D) and log|det dz/dv| (B,)."""
        return self.flow._transform(v)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents z (B, D) -> images v (B, C, H, W) and log|det dv/dz| (B,)."""
        v, logabsdet = self.flow._transform.inverse(z)
        return v.reshape(z.shape[0], *self.shape), logabsdet

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Standard normal log density of latents z (B, D) -> (B,)."""
        return -0.5 * z.pow(2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, C, H, W) from z ~ N(0, temperature^2 I)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.dim, generator=generator).to(device) * temperature
        return self.decode(z)[0]


# -- images in [0, 1] with 2**bits levels <-> the flow's centred space ----------------------------
def to_flow_space(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Images x in [0, 1] on the levels k / (2**bits - 1) -> v = (k + 1/2) / 2**bits - 1/2,
    the centre of level k's dequantisation interval, in [-0.5, 0.5]."""
    levels = 2**bits
    return (x * (levels - 1) + 0.5) / levels - 0.5


def from_flow_space(v: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of `to_flow_space`: flow-space v -> intensities x (about [0, 1])."""
    levels = 2**bits
    return ((v + 0.5) * levels - 0.5) / (levels - 1)
