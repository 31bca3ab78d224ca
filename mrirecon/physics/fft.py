"""Centred, orthonormal 2-D FFT over the last two axes.

Convention (docs/data.md): ``fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))``.
For even sizes the shifts equal a checkerboard modulation, which `SenseOperator` folds into
the coil maps and the mask so that the hot loop runs plain FFTs. `FFT` is the transform as a
`LinearOperator` (unitary: its adjoint is the inverse).
"""

from __future__ import annotations

import torch

from mrirecon.physics.operator import LinearOperator

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal FFT of a complex tensor (..., X, Y) -> (..., X, Y)."""
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.fft2(x, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse FFT (..., X, Y) -> (..., X, Y); the adjoint of `fft2c`."""
    k = torch.fft.ifftshift(k, dim=_DIMS)
    k = torch.fft.ifft2(k, norm="ortho")
    return torch.fft.fftshift(k, dim=_DIMS)


class FFT(LinearOperator):
    """F = fft2c over the last two axes of any (..., X, Y) complex tensor; F^H = ifft2c, F^H F = I."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x


def checkerboard(shape: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """(-1)^(i+j) of shape (X, Y), float32. For even X and Y:
    ``fft2c(x) = s * c * fft2(c * x)`` and ``ifft2c(k) = s * c * ifft2(c * k)`` with
    ``c = checkerboard`` and ``s = (-1)^((X+Y)/2)`` (see `centring_sign`)."""
    i = torch.arange(shape[0], device=device).view(-1, 1)
    j = torch.arange(shape[1], device=device).view(1, -1)
    return 1.0 - 2.0 * ((i + j) % 2).to(torch.float32)


def centring_sign(shape: tuple[int, int]) -> float:
    """The constant sign s = (-1)^((X+Y)/2) of the checkerboard identity (even sizes only)."""
    return -1.0 if ((shape[0] + shape[1]) // 2) % 2 else 1.0


def folds_into_checkerboard(shape: tuple[int, int]) -> bool:
    """True when both sizes are even, so the centring shifts fold into a checkerboard."""
    return shape[0] % 2 == 0 and shape[1] % 2 == 0
