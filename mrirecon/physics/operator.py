"""Linear operators on batched complex tensors, with an algebra: adjoint `.H`, Gram `.gram`,
composition `@`, sums `+` and scalar multiples `*`.

An operator maps a batch (B, ...) to a batch (B, ...): element b of the output depends only on
element b of the input (so a slice's result never depends on its batch). Subclasses implement
`forward` and `adjoint`, and may override `normal` (A^H A) with a fused, faster version. So

    (Mask(mask) @ FFT() @ CoilMaps(maps)).gram + w * FiniteDifferences().gram

reads as the maths. Operators never modify their input in place; an output may be the input
itself (identities), so callers must not modify outputs in place either.
"""

from __future__ import annotations

import torch

Scalar = float | complex | torch.Tensor  # a number, or a tensor (B,) with one value per batch element


class LinearOperator:
    """A linear map A between batched tensors: forward A x, adjoint A^H y, normal A^H A x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x."""
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^H y."""
        raise NotImplementedError

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x (subclasses may fuse the two)."""
        return self.adjoint(self.forward(x))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    @property
    def H(self) -> LinearOperator:
        """The adjoint operator A^H (A.H.H is A)."""
        return Adjoint(self)

    @property
    def gram(self) -> LinearOperator:
        """The Gram operator A^H A, self-adjoint, applied by `normal`."""
        return Gram(self)

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        return Composition(self, other)

    def __add__(self, other: LinearOperator) -> LinearOperator:
        return Sum(self, other)

    def __mul__(self, scalar: Scalar) -> LinearOperator:
        return Scaled(self, scalar)

    __rmul__ = __mul__

    def norm_squared(self, like: torch.Tensor, iters: int = 20) -> torch.Tensor:
        """||A||^2, the largest eigenvalue of A^H A, for each batch element (B,): power iteration
        from the same seeded start vector for every element (`like` (B, ...) gives the input's
        shape, dtype and device). An estimate from below that tightens with `iters`."""
        g = torch.Generator().manual_seed(0)
        start = torch.randn(like.shape[1:], dtype=like.dtype, generator=g).to(like.device)
        v = start.expand_as(like).clone()
        value = torch.ones(like.shape[0], device=like.device, dtype=like.real.dtype)
        for _ in range(iters):
            v = v / v.abs().flatten(1).norm(dim=1).clamp_min(1e-30).reshape((-1,) + (1,) * (v.ndim - 1))
            w = self.normal(v)
            value = (v.conj() * w).real.flatten(1).sum(1)
            v = w
        return value


def _broadcast(values: Scalar, like: torch.Tensor) -> Scalar:
    """A tensor of (B,) values reshaped to (B, 1, ..., 1) to broadcast against `like` (B, ...);
    a number as it is."""
    if isinstance(values, torch.Tensor) and values.ndim:
        return values.reshape((-1,) + (1,) * (like.ndim - 1))
    return values


class Identity(LinearOperator):
    """I x = x, any shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Adjoint(LinearOperator):
    """A^H as an operator of its own."""

    def __init__(self, op: LinearOperator) -> None:
        self.op = op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.op.forward(y)

    @property
    def H(self) -> LinearOperator:
        return self.op


class Gram(LinearOperator):
    """A^H A, self-adjoint; forward and adjoint use A's (fused) `normal`."""

    def __init__(self, op: LinearOperator) -> None:
        self.op = op

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.forward(y)  # self-adjoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.normal(x)


class Composition(LinearOperator):
    """outer @ inner: x -> outer(inner(x)); its normal uses the outer operator's fused normal."""

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        self.outer, self.inner = outer, inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer.forward(self.inner.forward(x))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.adjoint(self.outer.normal(self.inner.forward(x)))


class Sum(LinearOperator):
    """first + second, both with the same input and output shapes."""

    def __init__(self, first: LinearOperator, second: LinearOperator) -> None:
        self.first, self.second = first, second

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.first.forward(x) + self.second.forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.first.adjoint(y) + self.second.adjoint(y)


class Scaled(LinearOperator):
    """s A for a number s or a tensor s (B,) (one factor per batch element); adjoint conj(s) A^H."""

    def __init__(self, op: LinearOperator, scalar: Scalar) -> None:
        if isinstance(scalar, torch.Tensor) and scalar.ndim > 1:
            raise ValueError(f"scalar must be a number or a (B,) tensor, got shape {tuple(scalar.shape)}")
        self.op, self.scalar = op, scalar

    def _conj(self) -> Scalar:
        return self.scalar.conj() if isinstance(self.scalar, torch.Tensor) else self.scalar.conjugate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.op.forward(x)
        return _broadcast(self.scalar, out) * out

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        out = self.op.adjoint(y)
        return _broadcast(self._conj(), out) * out

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        out = self.op.normal(x)
        power = self.scalar.abs() ** 2 if isinstance(self.scalar, torch.Tensor) else abs(self.scalar) ** 2
        return _broadcast(power, out) * out
