"""MoDL (Aggarwal et al. 2019): alternate a shared denoiser and CG data consistency."""

from __future__ import annotations

import torch

from mrirecon.methods.base import register
from mrirecon.methods.unrolled import Unrolled
from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient


@register("modl")
class MoDL(Unrolled):
    """x0 = A^H y; each unroll: r = D(x), x = CG solve of (A^H A + l2lam I) x = A^H y + l2lam r."""

    def unroll(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        lam = self.l2lam
        aty = op.adjoint(y)

        def body(x: torch.Tensor) -> tuple[torch.Tensor]:
            r = self.denoise(x)
            return (
                conjugate_gradient(op.gram, aty + lam * r, x0=x, lam=lam, max_iter=self.cg_max_iter, tol=self.cg_eps),
            )

        x = aty
        for _ in range(self.num_unrolls):
            (x,) = self.step(body, x)
        return x
