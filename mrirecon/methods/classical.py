"""Classical baselines: zero-filled adjoint and CG-SENSE."""

from __future__ import annotations

import torch

from mrirecon.methods.base import Method, check_nonnegative, check_positive_int, register
from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient


@register("zero_filled")
class ZeroFilled(Method):
    """x_hat = A^H y: coil-combined inverse FFT of the zero-filled k-space."""

    def reconstruct(self, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        return op.adjoint(y)


@register("cg_sense")
class CGSense(Method):
    """Tikhonov-regularised SENSE: solve (A^H A + lam I) x = A^H y with conjugate gradient.

    Args:
        lam: Tikhonov weight (>= 0), in the units of A^H A (maps normalised to sum |S|^2 = 1).
        max_iter: CG iterations (>= 1).
        tol: stop when the relative residual falls under this.
    """

    def __init__(self, lam: float = 1e-3, max_iter: int = 30, tol: float = 1e-6) -> None:
        self.lam = check_nonnegative("method.lam", lam)
        self.max_iter = check_positive_int("method.max_iter", max_iter)
        self.tol = check_nonnegative("method.tol", tol)

    def reconstruct(self, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        return conjugate_gradient(op.normal, op.adjoint(y), lam=self.lam, max_iter=self.max_iter, tol=self.tol)
