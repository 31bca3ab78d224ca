"""Chambolle-Pock primal-dual method for min_x 0.5 ||A x - y||^2 + R(K x), batched.

R's convex conjugate must have a cheap proximal operator (for R = lam * ||.||_{2,1}, the
isotropic TV of K = gradient, it is a projection onto the lam-ball).
"""

from __future__ import annotations

from typing import Callable

import torch

Op = Callable[[torch.Tensor], torch.Tensor]


def primal_dual(
    forward: Op,
    adjoint: Op,
    y: torch.Tensor,
    reg_op: Op,
    reg_adjoint: Op,
    reg_dual_prox: Op,
    x0: torch.Tensor,
    norm_sq: float,
    max_iter: int = 200,
    tol: float = 0.0,
) -> torch.Tensor:
    """Solve min_x 0.5 ||A x - y||^2 + R(K x).

    Args:
        forward, adjoint: A and A^H.
        y: measurements, the shape of A x.
        reg_op, reg_adjoint: K and K^H.
        reg_dual_prox: the prox of sigma * R* (independent of sigma for indicator functions,
            e.g. a projection), applied to the dual variable of K x.
        x0: initial image (B, ...).
        norm_sq: an upper bound of ||A||^2 + ||K||^2 (sets the step sizes).
        max_iter: iterations; tol: stop when every element's relative change is below it.
    """
    step = 0.99 / norm_sq**0.5  # sigma = tau, sigma * tau * ||[A; K]||^2 < 1
    x = x_bar = x0
    p = torch.zeros_like(y)
    q = torch.zeros_like(reg_op(x0))
    for _ in range(max_iter):
        p = (p + step * (forward(x_bar) - y)) / (1 + step)
        q = reg_dual_prox(q + step * reg_op(x_bar))
        x_new = x - step * (adjoint(p) + reg_adjoint(q))
        x_bar = 2 * x_new - x
        change = (x_new - x).abs().flatten(1).norm(dim=1)
        done = tol > 0 and bool((change <= tol * x_new.abs().flatten(1).norm(dim=1)).all())
        x = x_new
        if done:
            break
    return x
