"""Chambolle-Pock primal-dual method for min_x 0.5 ||A x - y||^2 + R(K x), batched.

A and K are `LinearOperator`s; R's convex conjugate must have a cheap proximal operator (for
R = lam * ||.||_{2,1}, the isotropic TV of K = `FiniteDifferences`, it is a projection onto the
lam-ball: `solvers.prox.project_isotropic`). Every batch element has its own step sizes and
stops on its own, so its result does not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mrirecon.physics.operator import LinearOperator
from mrirecon.solvers.fista import batch_view, relative_change


def primal_dual(
    op: LinearOperator,
    y: torch.Tensor,
    reg_op: LinearOperator,
    reg_dual_prox: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    norm_sq: torch.Tensor,
    max_iter: int = 200,
    tol: float = 0.0,
) -> torch.Tensor:
    """Solve min_x 0.5 ||A x - y||^2 + R(K x).

    Args:
        op: A; y: measurements, the shape of A x.
        reg_op: K.
        reg_dual_prox: the prox of sigma * R* (independent of sigma for indicator functions,
            e.g. a projection), applied to the dual variable of K x.
        x0: initial image (B, ...).
        norm_sq: an upper bound (B,) of ||A||^2 + ||K||^2 per element (sets its step sizes).
        max_iter: iterations; tol: an element stops once its relative change is below it.
    """
    step = 0.99 / norm_sq.sqrt()  # sigma = tau, sigma * tau * ||[A; K]||^2 < 1
    x = x_bar = x0
    p = torch.zeros_like(y)
    q = torch.zeros_like(reg_op(x0))
    sp, sq, sx = batch_view(step, p), batch_view(step, q), batch_view(step, x0)
    active = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    for _ in range(max_iter):
        p = torch.where(batch_view(active, p), (p + sp * (op.forward(x_bar) - y)) / (1 + sp), p)
        q = torch.where(batch_view(active, q), reg_dual_prox(q + sq * reg_op.forward(x_bar)), q)
        x_new = x - sx * (op.adjoint(p) + reg_op.adjoint(q))
        keep = batch_view(active, x_new)
        x_bar = torch.where(keep, 2 * x_new - x, x_bar)
        converged = relative_change(x_new, x) <= tol if tol > 0 else torch.zeros_like(active)
        x = torch.where(keep, x_new, x)
        active = active & ~converged
        if not bool(active.any()):
            break
    return x
