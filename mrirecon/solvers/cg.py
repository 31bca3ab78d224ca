"""Batched conjugate gradient for Hermitian positive-definite systems on complex images."""

from __future__ import annotations

import torch

from mrirecon.physics.operator import LinearOperator


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of <a, b> per batch element: (B, ...) x (B, ...) -> (B,).

    Re(conj(a) b) = a_re b_re + a_im b_im: one batched matrix product of the real views,
    with no complex temporary.
    """
    batch = a.shape[0]
    ra = torch.view_as_real(a).reshape(batch, 1, -1)
    rb = torch.view_as_real(b).reshape(batch, -1, 1)
    return torch.bmm(ra, rb).reshape(batch)


def conjugate_gradient(
    operator: LinearOperator,
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    lam: float | torch.Tensor = 0.0,
    max_iter: int = 10,
    tol: float = 1e-4,
) -> torch.Tensor:
    """Solve (N + lam I) x = rhs for every batch element, N Hermitian positive semi-definite.

    Differentiable through autograd (no in-place updates of tracked tensors). Stops after
    `max_iter` iterations or when every element's relative residual ||r|| / ||rhs|| < `tol`;
    converged elements are frozen while the rest go on.

    Args:
        operator: N, x (B, ...) -> N x (B, ...), e.g. the Gram operator `op.gram` = A^H A.
        rhs: right-hand side b, (B, ...) complex.
        x0: warm start, (B, ...); zeros when None.
        lam: Tikhonov weight, a float or a tensor broadcastable to (B,) (may be learnable).
        max_iter: maximum number of iterations (>= 0).
        tol: relative residual tolerance.

    Returns:
        x: (B, ...) the approximate solution.
    """
    if max_iter < 0:
        raise ValueError(f"max_iter must be >= 0, got {max_iter}")
    lam_t = torch.as_tensor(lam, dtype=rhs.real.dtype, device=rhs.device)
    view = (-1,) + (1,) * (rhs.ndim - 1)
    lam_b = lam_t.reshape(-1).reshape(view) if lam_t.ndim else lam_t

    def system(v: torch.Tensor) -> torch.Tensor:
        return operator(v) + lam_b * v

    if x0 is None:
        x = torch.zeros_like(rhs)
        r = rhs
    else:
        x = x0
        r = rhs - system(x0)
    p = r
    rs = _dot(r, r)
    threshold = (tol**2) * _dot(rhs, rhs)
    for _ in range(max_iter):
        active = rs > threshold
        if not bool(active.any()):
            break
        ap = system(p)
        pap = _dot(p, ap)
        alpha = torch.where(active, rs / torch.where(active, pap, torch.ones_like(pap)), torch.zeros_like(rs))
        step = alpha.reshape(view).to(p.dtype)
        x = torch.addcmul(x, step, p)
        r = torch.addcmul(r, step, ap, value=-1)
        rs_new = _dot(r, r)
        beta = torch.where(active, rs_new / torch.where(active, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = torch.addcmul(r, beta.reshape(view).to(p.dtype), p)
        rs = torch.where(active, rs_new, rs)
    return x
