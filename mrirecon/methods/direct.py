"""Direct learned methods: one network maps the measured data to the image, trained supervised
(the `direct` trainable family, mrirecon.training.trainables.direct). No data consistency is enforced.

As for the unrolled methods, the network never sees the data's units: y is divided by
s = max |A^H y| of its slice (measured data only), the network maps y / s, and its output is
multiplied by s, so reconstructing c * y gives c * x_hat.
"""

from __future__ import annotations

import torch
from torch import nn

from mrirecon.methods.base import Method, data_scale
from mrirecon.physics.sense import SenseOperator

LOSSES = ("l1", "mse")


class Direct(nn.Module, Method):
    """Base of the direct methods: subclasses implement `map` on normalised data.

    Args:
        loss: the training loss against the reference, per pixel of the normalised image:
            'l1' (mean |x_hat - x|, fastMRI) or 'mse' (mean |x_hat - x|^2).
        residual: the network learns a correction added to a classical image x0 (see the
            subclass) instead of the whole image (the published methods: False): x0 + g N(.),
            with a learned gate g that starts at 0, so training starts from x0 itself.
    """

    checkpoint_kind = "direct"
    amp = False  # run the network under CUDA bf16 autocast (set from hardware.amp)
    fixed_shape = False  # True: built for one image size, given as the keyword `shape`

    def __init__(self, loss: str = "l1", residual: bool = False) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss: {loss!r} must be one of {', '.join(LOSSES)}")
        if not isinstance(residual, bool):
            raise ValueError(f"residual: {residual!r} must be true or false")
        self.loss, self.residual = loss, residual
        if residual:
            self.gate = nn.Parameter(torch.zeros(()))

    def combine(self, x0: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The network's output `out` as the image: x0 + gate * out when residual, else out."""
        return x0 + self.gate * out if self.residual else out

    def map(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        """Normalised masked k-space y (B, C, X, Y) -> image (B, X, Y) complex, in the units of y."""
        raise NotImplementedError

    def run_network(self, net: nn.Module, t: torch.Tensor) -> torch.Tensor:
        """net(t) in float32, under bf16 autocast when `amp` is set and t is on a GPU."""
        if self.amp and t.is_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return net(t).float()
        return net(t)

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        scale = data_scale(y, op)
        view = (-1,) + (1,) * (y.ndim - 1)
        sigma = None if noise_std is None else noise_std / scale
        x = self.map(y / scale.reshape(view).to(y.dtype), op, sigma)
        return x * scale.reshape(view[:-1]).to(x.dtype)

    def forward(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        return self.reconstruct(y, op, noise_std)

    def training_error(self, x_hat: torch.Tensor, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The loss (B,) of reconstructions x_hat against references x (B, X, Y), both divided by
        each slice's data scale (B,), so slices of any intensity units weigh alike."""
        diff = (x_hat - x).abs() / scale.reshape(-1, 1, 1)
        return (diff if self.loss == "l1" else diff.pow(2)).flatten(1).mean(1)
