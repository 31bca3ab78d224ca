"""Direct learned methods: one network (of mrirecon.nets, the `model` group) maps the measured
data to the image; the `direct` trainable family (mrirecon.training.trainables.direct) trains
it with a loss of mrirecon.losses. No data consistency is enforced.

As for the unrolled methods, the network never sees the data's units: y is divided by
s = max |A^H y| of its slice (measured data only), the network maps y / s, and its output is
multiplied by s, so reconstructing c * y gives c * x_hat.
"""

from __future__ import annotations

import torch
from torch import nn

from mrirecon.methods.base import Method, data_scale
from mrirecon.physics.sense import SenseOperator


class Direct(nn.Module, Method):
    """Base of the direct methods: subclasses implement `map` on normalised data.

    Args:
        net: the network (B, 2, X, Y) -> (B, 2, X, Y) (mrirecon.nets).
        residual: the network learns a correction added to a classical image x0 (see the
            subclass) instead of the whole image (the published methods: False): x0 + g N(.),
            with a learned gate g that starts at 0, so training starts from x0 itself.
    """

    checkpoint_kind = "direct"
    amp = False  # run the network under CUDA bf16 autocast (set from hardware.amp)

    def __init__(self, net: nn.Module, residual: bool = False) -> None:
        super().__init__()
        if not isinstance(residual, bool):
            raise ValueError(f"residual: {residual!r} must be true or false")
        self.residual = residual
        if residual:
            self.gate = nn.Parameter(torch.zeros(()))
        self.net = net

    def combine(self, x0: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The network's output `out` as the image: x0 + gate * out when residual, else out."""
        return x0 + self.gate * out if self.residual else out

    def map(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        """Normalised masked k-space y (B, C, X, Y) -> image (B, X, Y) complex, in the units of y."""
        raise NotImplementedError

    def run_network(self, t: torch.Tensor) -> torch.Tensor:
        """net(t) in float32, under bf16 autocast when `amp` is set and t is on a GPU."""
        if self.amp and t.is_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.net(t).float()
        return self.net(t)

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        scale = data_scale(y, op)
        view = (-1,) + (1,) * (y.ndim - 1)
        sigma = None if noise_std is None else noise_std / scale
        x = self.map(y / scale.reshape(view).to(y.dtype), op, sigma)
        return x * scale.reshape(view[:-1]).to(x.dtype)

    def forward(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        return self.reconstruct(y, op, noise_std)
