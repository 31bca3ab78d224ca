"""Accelerated proximal gradient methods for min_x 0.5 ||A x - y||^2 + g(x), batched over images.

A is a `LinearOperator` (the gradient of the data term, A^H A x - A^H y, uses its fused normal),
g has a cheap proximal operator (`solvers.prox`); the step is at most 1/L, L = ||A||^2. Every batch element
has its own step size and stops on its own: after `max_iter` iterations, or once its relative
change ||x_k - x_{k-1}|| / ||x_k|| falls under `tol` (it is then frozen while the others go on).
So each element's result is what it would be alone in its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from mrirecon.physics.operator import LinearOperator

SAFETY = 1.02  # `lipschitz` inflates the power-iteration estimate (from below) by this
# (v, step) -> prox_{step * g}(v); step is a (B, 1, ..., 1) tensor broadcastable against v
Prox = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batch_view(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) values reshaped to (B, 1, ..., 1) to broadcast against `like` (B, ...)."""
    return values.reshape((-1,) + (1,) * (like.ndim - 1))


def relative_change(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """||new - old|| / ||new|| per batch element (B,) (inf where new is zero)."""
    return (new - old).abs().flatten(1).norm(dim=1) / new.abs().flatten(1).norm(dim=1)


def lipschitz(op: LinearOperator, like: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """The Lipschitz constant (B,) of the gradient of 0.5 ||A x - y||^2 for each batch element:
    ||A||^2 by power iteration (`LinearOperator.norm_squared`; `like` (B, ...) an input), times
    SAFETY so that a step of 1/L is safe."""
    return op.norm_squared(like, iters) * SAFETY


def _freeze(active: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """`new` for active batch elements, `old` for the others."""
    return torch.where(batch_view(active, new), new, old)


def least_squares_gradient(op: LinearOperator, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> A^H A x - A^H y, the gradient of 0.5 ||A x - y||^2 (A^H y computed once)."""
    rhs = op.adjoint(y)
    return lambda x: op.normal(x) - rhs


def fista(
    op: LinearOperator, y: Tensor, prox: Prox, x0: Tensor, step: Tensor, max_iter: int = 100, tol: float = 0.0
) -> Tensor:
    """FISTA (Beck & Teboulle 2009) for min_x 0.5 ||A x - y||^2 + g(x), prox the prox of g, from
    x0 (B, ...) with per-element steps `step` (B,) <= 1/L."""
    grad = least_squares_gradient(op, y)
    step = batch_view(step, x0)
    x, z, t = x0, x0, 1.0
    active = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    for _ in range(max_iter):
        x_new = prox(z - step * grad(z), step)
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z_new = x_new + ((t - 1) / t_new) * (x_new - x)
        converged = relative_change(x_new, x) <= tol if tol > 0 else torch.zeros_like(active)
        x, z, t = _freeze(active, x_new, x), _freeze(active, z_new, z), t_new
        active = active & ~converged
        if not bool(active.any()):
            break
    return x


def pogm(
    op: LinearOperator, y: Tensor, prox: Prox, x0: Tensor, step: Tensor, max_iter: int = 100, tol: float = 0.0
) -> Tensor:
    """Proximal optimised gradient method (Taylor et al. 2017; Kim & Fessler 2018), about
    twice as fast as FISTA in the worst case; the problem and arguments of `fista`."""
    grad = least_squares_gradient(op, y)
    step = batch_view(step, x0)
    x = w = z = x0
    theta = 1.0
    gamma = step
    active = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    for k in range(1, max_iter + 1):
        factor = 8 if k == max_iter else 4
        theta_new = (1 + math.sqrt(1 + factor * theta * theta)) / 2
        gamma_new = step * (2 * theta + theta_new - 1) / theta_new
        w_new = x - step * grad(x)
        z_new = (
            w_new
            + ((theta - 1) / theta_new) * (w_new - w)
            + (theta / theta_new) * (w_new - x)
            + ((theta - 1) / theta_new) * (step / gamma) * (z - x)
        )
        x_new = prox(z_new, gamma_new)
        converged = relative_change(x_new, x) <= tol if tol > 0 else torch.zeros_like(active)
        x, w, z = _freeze(active, x_new, x), _freeze(active, w_new, w), _freeze(active, z_new, z)
        theta, gamma = theta_new, gamma_new
        active = active & ~converged
        if not bool(active.any()):
            break
    return x
