"""Sparsifying transforms and their proximal operators, on complex image batches (B, X, Y).

WaveletSparsity: an orthogonal 2-D discrete wavelet transform (ptwt's matrix transform with
QR-orthogonalised boundary wavelets: exactly orthogonal when the sides divide by 2^levels;
otherwise odd bands are zero-padded, an isometry whose prox below is a close approximation)
applied to the real and imaginary parts; the prox of lam * ||W x||_1 soft-thresholds the complex
detail coefficients (the coarsest approximation band is not penalised).
Finite differences: forward-difference gradient (periodic-free, Neumann boundary) and its
negative adjoint, the divergence, for isotropic total variation.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch


def soft_threshold(c: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Complex soft thresholding: c * max(0, 1 - threshold / |c|)."""
    mag = c.abs()
    return c * torch.clamp(1 - threshold / mag.clamp_min(1e-30), min=0)


class WaveletSparsity:
    """||W x||_1 with W an orthogonal wavelet transform of `levels` levels.

    Args:
        wavelet: a PyWavelets name, e.g. 'db4', 'sym8', 'haar'.
        levels: decomposition levels.
    """

    def __init__(self, wavelet: str = "db4", levels: int = 4) -> None:
        import ptwt

        self.forward_transform = ptwt.MatrixWavedec2(wavelet, levels, orthogonalization="qr")
        self.inverse_transform = ptwt.MatrixWaverec2(wavelet, orthogonalization="qr")

    def _decompose(self, x: torch.Tensor) -> list[Any]:
        stacked = torch.cat([x.real, x.imag], dim=0)  # (2B, X, Y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # ptwt's sparse-tensor beta notices
            return list(self.forward_transform(stacked))

    def _compose(self, coeffs: list[Any], batch: int, shape: tuple[int, int]) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            stacked = self.inverse_transform(tuple(coeffs))[..., : shape[0], : shape[1]]  # drop odd-size padding
        return torch.complex(stacked[:batch], stacked[batch:])

    def norm(self, x: torch.Tensor) -> torch.Tensor:
        """||W x||_1 over the detail bands, per batch element: (B, X, Y) -> (B,)."""
        b = x.shape[0]
        coeffs = self._decompose(x)
        total = torch.zeros(b, device=x.device)
        for level in coeffs[1:]:
            for band in level:
                total = total + torch.complex(band[:b], band[b:]).abs().flatten(1).sum(1)
        return total

    def prox(self, x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
        """argmin_v threshold * ||W v||_1 + 0.5 ||v - x||^2 (exact when W is orthogonal); a tensor
        threshold (B, 1, 1) gives each slice its own."""
        b = x.shape[0]
        coeffs = self._decompose(x)
        shrunk = [coeffs[0]]
        for level in coeffs[1:]:
            bands = []
            for band in level:
                c = soft_threshold(torch.complex(band[:b], band[b:]), threshold)
                bands.append(torch.cat([c.real, c.imag], dim=0))
            shrunk.append(type(level)(*bands))
        return self._compose(shrunk, b, (int(x.shape[-2]), int(x.shape[-1])))


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences along X and Y (zero at the far edge): (B, X, Y) -> (B, 2, X, Y)."""
    g = torch.zeros((x.shape[0], 2, *x.shape[1:]), dtype=x.dtype, device=x.device)
    g[:, 0, :-1] = x[:, 1:] - x[:, :-1]
    g[:, 1, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return g


def divergence(g: torch.Tensor) -> torch.Tensor:
    """The negative adjoint of `gradient`: (B, 2, X, Y) -> (B, X, Y)."""
    gx, gy = g[:, 0], g[:, 1]
    d = torch.zeros_like(gx)
    d[:, :-1] += gx[:, :-1]
    d[:, 1:] -= gx[:, :-1]
    d[:, :, :-1] += gy[:, :, :-1]
    d[:, :, 1:] -= gy[:, :, :-1]
    return d


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV: sum over pixels of sqrt(|dx|^2 + |dy|^2); (B, X, Y) -> (B,)."""
    return gradient(x).abs().pow(2).sum(1).sqrt().flatten(1).sum(1)


def project_isotropic(q: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """Project each pixel's vector over the direction axis 1 of q (B, 2, X, Y) onto the ball
    |q| <= radius (a float or a tensor broadcastable to (B, 1, X, Y))."""
    norm = q.abs().pow(2).sum(1, keepdim=True).sqrt()
    radius = torch.as_tensor(radius, dtype=norm.dtype, device=norm.device).clamp_min(1e-30)
    return q / torch.clamp(norm / radius, min=1.0)
