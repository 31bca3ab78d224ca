"""Finite differences: the forward-difference gradient of an image batch, the operator of total
variation. Its adjoint is the negative divergence.
"""

from __future__ import annotations

import torch

from mrirecon.physics.operator import LinearOperator

NORM_SQUARED_BOUND = 8.0  # ||D||^2 < 8 for any size: each pixel enters at most 4 differences


class FiniteDifferences(LinearOperator):
    """D: image (B, X, Y) -> forward differences along X and Y (B, 2, X, Y), zero at the far
    edge (Neumann boundary); D^H = -divergence: (B, 2, X, Y) -> (B, X, Y)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.zeros((x.shape[0], 2, *x.shape[1:]), dtype=x.dtype, device=x.device)
        g[:, 0, :-1] = x[:, 1:] - x[:, :-1]
        g[:, 1, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
        return g

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        gx, gy = y[:, 0], y[:, 1]
        d = torch.zeros_like(gx)
        d[:, :-1] -= gx[:, :-1]
        d[:, 1:] += gx[:, :-1]
        d[:, :, :-1] -= gy[:, :, :-1]
        d[:, :, 1:] += gy[:, :, :-1]
        return d
