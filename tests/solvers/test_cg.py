"""Conjugate gradient against dense solves."""

from __future__ import annotations

import pytest
import torch

from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient


def dense_normal(op: SenseOperator, rhs: torch.Tensor, b: int) -> torch.Tensor:
    """The matrix of A^H A for batch element b, (n, n) complex128 with n pixels of rhs[b]."""
    n = rhs[0].numel()
    eye = torch.eye(n, dtype=torch.complex64).reshape(n, *rhs.shape[1:])
    cols = []
    for e in eye:
        batch = torch.zeros_like(rhs)
        batch[b] = e
        cols.append(op.normal(batch)[b].reshape(-1))
    return torch.stack(cols, dim=1).to(torch.complex128)


@pytest.fixture
def system():
    g = torch.Generator().manual_seed(1)
    shape = (6, 4)
    maps = torch.randn(2, 3, *shape, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = (torch.rand((2, *shape), generator=g) < 0.5).float()
    rhs = torch.randn(2, *shape, dtype=torch.complex64, generator=g)
    return SenseOperator(maps, mask), rhs


@pytest.mark.parametrize("lam", [0.05, 1.0])
def test_cg_matches_linalg_solve(system, lam):
    op, rhs = system
    n = rhs[0].numel()
    x = conjugate_gradient(op.gram, rhs, lam=lam, max_iter=200, tol=1e-7)
    for b in range(2):
        matrix = dense_normal(op, rhs, b) + lam * torch.eye(n, dtype=torch.complex128)
        expected = torch.linalg.solve(matrix, rhs[b].reshape(-1).to(torch.complex128))
        err = (x[b].reshape(-1).to(torch.complex128) - expected).norm() / expected.norm()
        assert err < 1e-4


def test_cg_warm_start_at_solution_does_nothing(system):
    op, rhs = system
    x = conjugate_gradient(op.gram, rhs, lam=0.5, max_iter=200, tol=1e-7)
    again = conjugate_gradient(op.gram, rhs, x0=x, lam=0.5, max_iter=1, tol=1e-3)
    assert torch.allclose(again, x, atol=1e-6)


def test_cg_respects_max_iter_and_reduces_residual(system):
    op, rhs = system
    residual = lambda x: float((op.normal(x) + 0.1 * x - rhs).abs().norm())  # noqa: E731
    r0 = conjugate_gradient(op.gram, rhs, lam=0.1, max_iter=0)
    assert torch.equal(r0, torch.zeros_like(rhs))
    r1, r5 = (conjugate_gradient(op.gram, rhs, lam=0.1, max_iter=k, tol=0.0) for k in (1, 5))
    assert residual(r5) < residual(r1) < float(rhs.abs().norm())


def double_system(system):
    op, rhs = system
    return SenseOperator(op.maps.to(torch.complex128), op.mask[:, 0].double()), rhs.to(torch.complex128)


def test_cg_per_batch_lambda_and_implicit_gradient(system):
    """Converged, x solves (N + lam I) x = b, so dx/dlam = -(N + lam I)^-1 x (implicit
    differentiation): backpropagation through the iterations must give that gradient of
    L = ||x||^2 for each slice's own lam."""
    op, rhs = double_system(system)
    lam = torch.tensor([0.1, 10.0], dtype=torch.float64, requires_grad=True)
    x = conjugate_gradient(op.gram, rhs, lam=lam, max_iter=200, tol=1e-12)
    # large lambda shrinks the solution towards rhs / lam
    assert torch.allclose(x[1], rhs[1] / 10.0, atol=0.05 * float(rhs[1].abs().max()))
    x.abs().pow(2).sum().backward()
    n = rhs[0].numel()
    for b in range(2):
        matrix = dense_normal(op, rhs, b) + float(lam[b].detach()) * torch.eye(n, dtype=torch.complex128)
        xb = torch.linalg.solve(matrix, rhs[b].reshape(-1))
        dx = -torch.linalg.solve(matrix, xb)
        implicit = 2 * float((xb.conj() * dx).real.sum())
        assert float(lam.grad[b]) == pytest.approx(implicit, rel=1e-8)


def test_cg_gradients_match_finite_differences(system):
    """gradcheck (complex128, central differences) of a fixed number of CG iterations with
    respect to the right-hand side, the warm start and a per-slice lam."""
    op, rhs = double_system(system)
    x0 = torch.randn(rhs.shape, dtype=torch.complex128, generator=torch.Generator().manual_seed(2))
    lam = torch.tensor([0.3, 2.0], dtype=torch.float64)
    inputs = tuple(t.clone().requires_grad_(True) for t in (rhs, x0, lam))
    assert torch.autograd.gradcheck(
        lambda b, start, weight: conjugate_gradient(op.gram, b, x0=start, lam=weight, max_iter=4, tol=0.0),
        inputs,
        fast_mode=True,
    )


def test_cg_zero_rhs_stays_zero(system):
    op, rhs = system
    x = conjugate_gradient(op.gram, torch.zeros_like(rhs), lam=0.1, max_iter=10)
    assert torch.equal(x, torch.zeros_like(rhs))


def test_cg_rejects_negative_iterations(system):
    op, rhs = system
    with pytest.raises(ValueError):
        conjugate_gradient(op.gram, rhs, max_iter=-1)
