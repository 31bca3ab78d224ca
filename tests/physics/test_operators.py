"""The contract every linear operator keeps (physics/operator.py), run over the list OPERATORS:
adjointness <A x, y> = <x, A^H y>, normal = A^H A, A.H.H = A, the algebra (.H, .gram, @, +, *),
batch elements that stay apart, and the norm estimate against the dense matrix's.

A new operator joins by one entry in OPERATORS: a builder returning (operator, example input
(B, ...) in complex128)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from mrirecon.methods.auto_weight import Anchored
from mrirecon.physics.fft import FFT
from mrirecon.physics.finite_differences import NORM_SQUARED_BOUND, FiniteDifferences
from mrirecon.physics.operator import Identity, LinearOperator
from mrirecon.physics.sense import CoilMaps, Mask, SenseOperator
from mrirecon.physics.wavelet import Wavelet

B = 2  # batch elements


def crandn(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.complex128, generator=g)


def maps(shape: tuple[int, int], coils: int = 3) -> torch.Tensor:
    s = crandn(B, coils, *shape, seed=1)
    return s / s.abs().pow(2).sum(1, keepdim=True).sqrt()


def mask(shape: tuple[int, int], batch: int = B) -> torch.Tensor:
    return (torch.rand((batch, *shape), generator=torch.Generator().manual_seed(2)) < 0.4).double()


def sense(shape: tuple[int, int], shared: bool = False) -> SenseOperator:
    m = mask(shape, 1 if shared else B)
    return SenseOperator(maps(shape), m[0] if shared else m)


Case = Callable[[], tuple[LinearOperator, torch.Tensor]]
OPERATORS: dict[str, Case] = {
    "identity": lambda: (Identity(), crandn(B, 6, 5)),
    "fft_even": lambda: (FFT(), crandn(B, 3, 8, 6)),
    "fft_odd": lambda: (FFT(), crandn(B, 7, 5)),
    "mask": lambda: (Mask(mask((8, 6))), crandn(B, 3, 8, 6)),
    "mask_shared": lambda: (Mask(mask((8, 6), 1)[0]), crandn(B, 3, 8, 6)),
    "coil_maps": lambda: (CoilMaps(maps((7, 6))), crandn(B, 7, 6)),
    "sense_even": lambda: (sense((8, 6)), crandn(B, 8, 6)),
    "sense_odd": lambda: (sense((7, 5), shared=True), crandn(B, 7, 5)),
    "sense_composed": lambda: (Mask(mask((8, 5))) @ FFT() @ CoilMaps(maps((8, 5))), crandn(B, 8, 5)),
    "finite_differences": lambda: (FiniteDifferences(), crandn(B, 7, 6)),
    "wavelet_db2": lambda: (Wavelet((8, 8), "db2", 2), crandn(B, 8, 8)),
    "wavelet_odd": lambda: (Wavelet((9, 7), "haar", 2), crandn(B, 9, 7)),
    "anchored": lambda: (Anchored(sense((8, 6)), torch.tensor([0.0, 0.7], dtype=torch.float64)), crandn(B, 8, 6)),
}


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """<a, b> per batch element (B,) complex."""
    return (a.conj() * b).flatten(1).sum(1)


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-10) -> bool:
    return float((a - b).abs().max()) <= tol * max(float(b.abs().max()), 1.0)


def derived(op: LinearOperator, x: torch.Tensor) -> dict[str, tuple[LinearOperator, torch.Tensor]]:
    """Operators the algebra builds from op, each with an example input."""
    y = crandn(*op(x).shape, seed=5)
    scale = torch.tensor([0.5, -2.0], dtype=torch.float64)
    return {
        "A": (op, x),
        "A.H": (op.H, y),
        "A.gram": (op.gram, x),
        "A + A": (op + op, x),
        "complex * A": ((0.5 - 2j) * op, x),
        "per-slice * A": (scale * op, x),
        "A.H @ A": (op.H @ op, x),
        "A @ A.gram": (op @ op.gram, x),
    }


@pytest.fixture(params=sorted(OPERATORS))
def case(request: pytest.FixtureRequest) -> tuple[LinearOperator, torch.Tensor]:
    return OPERATORS[request.param]()


def test_adjointness_and_normal(case):
    """<A x, y> = <x, A^H y> and A^H A x = A^H (A x), for the operator and what the algebra
    builds from it."""
    for name, (a, x) in derived(*case).items():
        y = crandn(*a(x).shape, seed=7)
        lhs, rhs = inner(a.forward(x), y), inner(x, a.adjoint(y))
        assert close(lhs, rhs), (name, lhs, rhs)
        assert close(a.normal(x), a.adjoint(a.forward(x))), name


def test_adjoint_of_adjoint_and_algebra_values(case):
    op, x = case
    y = crandn(*op(x).shape, seed=3)
    assert op.H.H is op
    assert close(op.H(y), op.adjoint(y)) and close(op.H.adjoint(x), op(x))
    assert close(op.gram(x), op.normal(x)) and close((op.H @ op)(x), op.normal(x))
    assert close((op + 2 * op)(x), 3 * op(x))
    assert close((op @ Identity())(x), op(x)) and close((Identity() @ op).normal(x), op.normal(x))
    scale = torch.tensor([0.5, -2.0], dtype=torch.float64)
    out = (scale * op)(x)
    assert close(out[0], 0.5 * op(x)[0]) and close(out[1], -2.0 * op(x)[1])


def test_batch_elements_stay_apart(case):
    """Output element b depends on input element b only."""
    op, x = case
    moved = x.clone()
    moved[0] = crandn(*x.shape[1:], seed=9)
    assert torch.equal(op(moved)[1:], op(x)[1:])
    assert torch.equal(op.normal(moved)[1:], op.normal(x)[1:])


def dense(op: LinearOperator, x: torch.Tensor, b: int) -> torch.Tensor:
    """The matrix of op on batch element b, (outputs, inputs), column by column."""
    n = x[0].numel()
    columns = []
    for j in range(n):
        e = torch.zeros_like(x)
        e[b].view(-1)[j] = 1
        columns.append(op(e)[b].reshape(-1))
    return torch.stack(columns, dim=1)


def test_norm_estimate_matches_the_dense_norm(case):
    """norm_squared: power iteration on A^H A against the largest singular value squared of
    the dense matrix, for each batch element; never above it (an estimate from below)."""
    op, x = case
    estimate = op.norm_squared(x, iters=300)
    for b in range(B):
        exact = float(torch.linalg.matrix_norm(dense(op, x, b), ord=2)) ** 2
        assert float(estimate[b]) == pytest.approx(exact, rel=1e-4)
        assert float(estimate[b]) <= exact * (1 + 1e-9)


def test_the_finite_difference_bound_holds():
    """primal-dual's step uses NORM_SQUARED_BOUND for ||D||^2; it holds with a small margin."""
    for shape in ((7, 6), (16, 16)):
        x = crandn(1, *shape)
        exact = float(torch.linalg.matrix_norm(dense(FiniteDifferences(), x, 0), ord=2)) ** 2
        assert 7.0 < exact < NORM_SQUARED_BOUND


def test_the_algebra_rejects_a_scalar_tensor_of_more_than_one_axis():
    with pytest.raises(ValueError, match="scalar"):
        torch.ones(2, 1) * FFT()
