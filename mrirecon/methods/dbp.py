"""Deep basis pursuit (Tamir et al. 2019): a learned denoiser inside ADMM with a noise-ball
data constraint ||A x - y|| <= eps."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mrirecon.methods.base import AUTO, auto_or_nonnegative, check_positive_int, known_noise_std, register
from mrirecon.methods.unrolled import Unrolled
from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient
from mrirecon.solvers.prox import project_ball


@register("dbp")
class DeepBasisPursuit(Unrolled):
    """min ||D-residual|| s.t. ||A x - y|| <= eps, eps = sqrt(C * sum(mask)) * stdev.

    Start x = A^H y, z = A x, u = 0. Each unroll: r = D(x), then `num_admm` steps:
    x = CG solve of (l2lam A^H A + I) x = l2lam A^H (z - u) + r;
    z = y + proj_eps(A x + u - y); u = u + A x - z. With stdev = 0, z = y (hard consistency).

    Args (besides those of `Unrolled`):
        num_admm: ADMM steps per unroll (>= 1).
        stdev: 'auto' (the slice's noise std: the stored estimate, plus any training noise) or
            a noise standard deviation per k-space sample in the data's units (>= 0).
    """

    inference_keys = (*Unrolled.inference_keys, "num_admm", "stdev")

    def __init__(self, denoiser: nn.Module, num_admm: int = 2, stdev: str | float = AUTO, **kwargs: Any) -> None:
        super().__init__(denoiser, **kwargs)
        self.num_admm = check_positive_int("num_admm", num_admm)
        self.stdev = auto_or_nonnegative("stdev", stdev)

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(self.stdev, str):  # a fixed std in the data's units (else AUTO)
            noise_std = torch.full((y.shape[0],), self.stdev, device=y.device)
        return super().reconstruct(y, op, noise_std)

    def unroll(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        lam = self.l2lam
        coils = y.shape[1]
        samples = op.mask.flatten(1).sum(1).expand(y.shape[0])
        eps = (coils * samples).sqrt() * known_noise_std(noise_std, "stdev=auto")

        def body(x: torch.Tensor, z: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
            r = self.denoise(x)
            for _ in range(self.num_admm):
                rhs = op.adjoint(z - u) + r / lam
                x = conjugate_gradient(op.gram, rhs, x0=x, lam=1 / lam, max_iter=self.cg_max_iter, tol=self.cg_eps)
                ax = op.forward(x)
                z = y + project_ball(ax + u - y, eps)
                u = u + ax - z
            return x, z, u

        x = op.adjoint(y)
        z = op.forward(x)
        u = torch.zeros_like(y)
        for _ in range(self.num_unrolls):
            x, z, u = self.step(body, x, z, u)
        return x
