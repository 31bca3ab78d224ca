"""Proximal maps and projections of the regularisers the solvers use, on batched complex tensors.

Kept apart from the operators (physics/) and the algorithms (this package's solvers): a prox
is prox_{t g}(v) = argmin_u t g(u) + 0.5 ||u - v||^2.
"""

from __future__ import annotations

import torch

from mrirecon.physics.wavelet import Wavelet


def soft_threshold(c: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """The prox of threshold * ||c||_1 (complex soft thresholding): c * max(0, 1 - threshold / |c|)."""
    mag = c.abs()
    return c * torch.clamp(1 - threshold / mag.clamp_min(1e-30), min=0)


def wavelet_shrinkage(wavelet: Wavelet, x: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """argmin_v threshold * ||W v||_1 + 0.5 ||v - x||^2 over the detail bands (the coarsest
    approximation band is not penalised): W^H soft(W x), exact when W is orthogonal (sides
    divisible by 2^levels), a close approximation when odd bands are padded. x (B, X, Y); a
    tensor threshold (B, 1, 1) gives each slice its own."""
    if isinstance(threshold, torch.Tensor) and threshold.ndim:
        threshold = threshold.reshape(-1, 1)
    coeffs = wavelet.forward(x)
    n = wavelet.approximation_size
    details = soft_threshold(coeffs[:, n:], threshold)
    return wavelet.adjoint(torch.cat([coeffs[:, :n], details], dim=1))


def project_isotropic(q: torch.Tensor, radius: float | torch.Tensor) -> torch.Tensor:
    """Project each pixel's vector over the direction axis 1 of q (B, 2, X, Y) onto the ball
    |q| <= radius (a float or a tensor broadcastable to (B, 1, X, Y)): the prox of the convex
    conjugate of radius * ||.||_{2,1} (isotropic total variation with the gradient)."""
    norm = q.abs().pow(2).sum(1, keepdim=True).sqrt()
    radius = torch.as_tensor(radius, dtype=norm.dtype, device=norm.device).clamp_min(1e-30)
    return q / torch.clamp(norm / radius, min=1.0)


def project_ball(v: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Project each batch element of v (B, ...) onto the l2 ball of radius (B,) about 0."""
    norm = v.abs().pow(2).flatten(1).sum(1).sqrt()
    scale = torch.where(norm > radius, radius / norm.clamp_min(1e-30), torch.ones_like(norm))
    return v * scale.reshape((-1,) + (1,) * (v.ndim - 1))
