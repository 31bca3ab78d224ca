"""An orthogonal 2-D discrete wavelet transform of complex image batches as a linear operator.

ptwt's matrix transform with QR-orthogonalised boundary wavelets, applied to the real and
imaginary parts: exactly orthogonal when the sides divide by 2^levels; otherwise odd bands are
zero-padded, an isometry (W^H W = I, the adjoint crops). The coefficients of an image are one
flat complex vector, the coarsest approximation band first, then the detail bands of each level
from coarse to fine (horizontal, vertical, diagonal).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from mrirecon.physics.operator import LinearOperator


def _transforms(wavelet: str, levels: int) -> tuple[Any, Any]:
    """ptwt's forward and inverse matrix transforms (ValueError for an unknown wavelet name)."""
    import ptwt

    forward = ptwt.MatrixWavedec2(wavelet, levels, orthogonalization="qr")
    return forward, ptwt.MatrixWaverec2(wavelet, orthogonalization="qr")


def check_wavelet(wavelet: str) -> None:
    """A ValueError when `wavelet` is not a PyWavelets name ptwt knows."""
    _transforms(wavelet, 1)


class Wavelet(LinearOperator):
    """W: image (B, X, Y) -> coefficients (B, N) complex; W^H W = I, so W^H is the inverse.

    Args:
        shape: the image size (X, Y) (it sets the coefficient layout).
        wavelet: a PyWavelets name, e.g. 'db4', 'sym8', 'haar'.
        levels: decomposition levels (ptwt uses fewer where the image is too small).

    Attributes:
        approximation_size: the coarsest approximation band's number of coefficients, the first
            entries of the coefficient vector (sparsity penalties leave them out).
    """

    def __init__(self, shape: tuple[int, int], wavelet: str = "db4", levels: int = 4) -> None:
        self.shape, self.wavelet, self.levels = (int(shape[0]), int(shape[1])), wavelet, levels
        self._pairs: dict[tuple[torch.dtype, torch.device], tuple[Any, Any]] = {}
        coeffs = self._decompose(torch.zeros((2, *self.shape)))  # the layout of this size
        self._kinds = [type(level) for level in coeffs[1:]]
        self._band_shapes = [tuple(coeffs[0].shape[1:])] + [tuple(b.shape[1:]) for lv in coeffs[1:] for b in lv]
        self._sizes = [int(torch.Size(s).numel()) for s in self._band_shapes]
        self.approximation_size = self._sizes[0]

    def _pair(self, like: torch.Tensor) -> tuple[Any, Any]:
        """ptwt's transforms for tensors of like's dtype and device (ptwt builds its matrices
        on the first call and rebuilds them only when the size changes)."""
        key = (like.dtype, like.device)
        if key not in self._pairs:
            self._pairs[key] = _transforms(self.wavelet, self.levels)
        return self._pairs[key]

    def _decompose(self, stacked: torch.Tensor) -> list[Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ptwt's sparse-tensor beta notices
            return list(self._pair(stacked)[0](stacked))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"x: image size {tuple(x.shape[-2:])} does not match the transform's {self.shape}")
        b = x.shape[0]
        coeffs = self._decompose(torch.cat([x.real, x.imag], dim=0))  # (2B, X, Y) real
        bands = [coeffs[0], *(band for level in coeffs[1:] for band in level)]
        flat = torch.cat([band.flatten(1) for band in bands], dim=1)  # (2B, N)
        return torch.complex(flat[:b], flat[b:])

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        b = y.shape[0]
        flat = torch.cat([y.real, y.imag], dim=0)  # (2B, N)
        bands = [part.reshape(2 * b, *s) for part, s in zip(flat.split(self._sizes, dim=1), self._band_shapes)]
        coeffs: list[Any] = [bands[0]]
        for i, kind in enumerate(self._kinds):
            coeffs.append(kind(*bands[1 + 3 * i : 4 + 3 * i]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            stacked = self._pair(flat)[1](tuple(coeffs))[..., : self.shape[0], : self.shape[1]]  # drop odd-size padding
        return torch.complex(stacked[:b], stacked[b:])

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x
