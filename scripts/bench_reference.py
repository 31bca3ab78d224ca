"""Reference implementations the benchmarks compare against (not part of the package)."""

from __future__ import annotations

import torch

from mrirecon.physics.operator import LinearOperator


class ReferenceSense(LinearOperator):
    """Textbook SENSE: explicit ifftshift -> fft2 -> fftshift around every transform,
    multiply-then-sum coil combination. Same interface as mrirecon's SenseOperator."""

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor) -> None:
        self.maps = maps
        self.mask = (mask if mask.ndim == 3 else mask.unsqueeze(0)).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = torch.fft.fftshift(
            torch.fft.fft2(torch.fft.ifftshift(self.maps * x.unsqueeze(1), dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
        )
        return self.mask * k

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        im = torch.fft.fftshift(
            torch.fft.ifft2(torch.fft.ifftshift(self.mask * y, dim=(-2, -1)), norm="ortho"), dim=(-2, -1)
        )
        return (self.maps.conj() * im).sum(dim=1)

    # normal: the base class's A^H (A x), nothing fused
