"""Posterior sampling with a diffusion prior: annealed Langevin dynamics with the SENSE likelihood
(Jalal et al. 2021, "Robust compressed sensing MRI with deep generative priors"; the sampler of
Song & Ermon 2019 with a data-consistency gradient added).

The data are normalised as in training: y' = y / s, s = max |A^H y| of the slice, sigma' = its
noise std / s. The denoiser D(x, sigma) of a trained `mrirecon train model=diffusion` gives the
prior score of the noised images, (D(x, sigma) - x) / sigma^2 (complex noise, E|n|^2 = sigma^2
per pixel). The noise levels sigma_1 > ... > sigma_L are geometric from the network's sigma_max to
its sigma_min (`noise_levels` L); at each level `steps` Langevin steps

    x <- x + eta_i [ (D(x, sigma_i) - x) / sigma_i^2 + lam_i A^H (y' - A x) ] + sqrt(2 eta_i) z,
    eta_i = step_size * sigma_i^2,   lam_i = 1 / (1 / lam + sigma_i^2),   z ~ CN(0, I),

the complex form of Langevin's x <- x + alpha grad log p + sqrt(2 alpha) xi on the real and
imaginary parts (alpha = eta / 2). lam_i is the data-consistency weight: the likelihood of y'
given the iterate with its noise, Gaussian with variance 1 / lam + sigma_i^2 per sample (Jalal et
al.'s annealed gamma_i^2; the iterate's noise is counted whole, as for one coil whose map is 1:
‖A‖ <= 1 for maps with sum |S_c|^2 <= 1). `lam: auto` sets lam = 1 / sigma'^2, the precision of
the data's own noise, so lam_i follows the noise at any SNR (noiseless data: lam_i = 1 /
sigma_i^2); a number sets the precision in units of 1 / s^2 (0: no data consistency, samples of
the prior). With step_size < 1 each step contracts (eta_i / sigma_i^2 = step_size, eta_i lam_i <=
step_size, A^H A <= I). The chain starts at x = A^H y' + sigma_1 z; the last step adds no noise.

`samples` chains run from independent seeded draws (sample k's noise from a generator seeded by
(seed, k), the same for every slice: a slice's result does not depend on its batch); the
reconstruction is their mean, and `reconstruct_with_std` also gives their per-pixel std.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mrirecon.methods.base import (
    AUTO,
    Method,
    auto_or_nonnegative,
    check_positive_int,
    data_scale,
    from_channels,
    known_noise_std,
    register,
    to_channels,
)
from mrirecon.nets import ScoreModel
from mrirecon.physics.sense import SenseOperator


def noise_schedule(sigma_max: float, sigma_min: float, levels: int) -> list[float]:
    """`levels` noise levels, geometric from sigma_max down to sigma_min (one level: sigma_min)."""
    if levels == 1:
        return [sigma_min]
    ratio = math.log(sigma_min / sigma_max) / (levels - 1)
    return [sigma_max * math.exp(ratio * i) for i in range(levels)]


class Draws:
    """The chains' noise: chain k's from its own generator seeded by (seed, k), one (X, Y)
    complex draw per step shared by every slice, as (K * B, X, Y) (chain-major)."""

    def __init__(self, seed: int, chains: int, slices: int, shape: tuple[int, int], device: torch.device) -> None:
        self.generators = [
            torch.Generator().manual_seed(int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
            for k in range(chains)
        ]
        self.slices, self.shape, self.device = slices, shape, device

    def next(self) -> torch.Tensor:
        """CN(0, 1) per pixel (E|z|^2 = 1), (K * B, X, Y) complex64."""
        z = torch.stack([torch.randn(self.shape, dtype=torch.complex64, generator=g) for g in self.generators])
        return z[:, None].expand(-1, self.slices, *self.shape).reshape(-1, *self.shape).to(self.device)


@register("diffusion")
class DiffusionPosterior(Method):
    """Posterior sampling with a trained diffusion prior (see the module docstring).

    Args:
        net: the trained noise-conditioned denoiser (its sigma_min, sigma_max set the schedule).
        samples: posterior samples (chains) per slice, >= 1; the reconstruction is their mean.
        noise_levels: noise levels L of the annealing, >= 1.
        steps: Langevin steps per noise level, >= 1.
        step_size: eta_i / sigma_i^2, in (0, 1).
        lam: 'auto' (1 / sigma'^2: the data's noise) or the data's precision in units of 1 / s^2 (>= 0).
        seed: seeds the chains' draws.
    """

    checkpoint_kind = "diffusion"

    def __init__(
        self,
        net: ScoreModel,
        samples: int = 4,
        noise_levels: int = 40,
        steps: int = 3,
        step_size: float = 0.5,
        lam: str | float = AUTO,
        seed: int = 0,
    ) -> None:
        self.net = net.eval().requires_grad_(False)
        self.samples = check_positive_int("samples", samples)
        self.noise_levels = check_positive_int("noise_levels", noise_levels)
        self.steps = check_positive_int("steps", steps)
        if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not 0 < step_size < 1:
            raise ValueError(f"step_size: {step_size!r} must be a number in (0, 1)")
        self.step_size = float(step_size)
        self.lam = auto_or_nonnegative("lam", lam)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: {seed!r} must be an integer")
        self.seed = seed

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        """y (B, C, X, Y) -> the mean of the posterior samples (B, X, Y) complex."""
        return self.reconstruct_with_std(y, op, noise_std)[0]

    def reconstruct_with_std(
        self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """y (B, C, X, Y) -> (mean (B, X, Y) complex, std (B, X, Y) real) of `samples` posterior
        samples; one sample has no spread to report (std None, not zeros)."""
        scale = data_scale(y, op)
        variance = self.data_variance(noise_std, scale)
        with torch.no_grad():
            x = self.sample(y / scale.reshape(-1, 1, 1, 1).to(y.dtype), op, variance)
        mean = x.mean(0)
        if self.samples == 1:
            return mean * scale.reshape(-1, 1, 1).to(mean.dtype), None
        std = (x - mean).abs().pow(2).mean(0).sqrt()
        return mean * scale.reshape(-1, 1, 1).to(mean.dtype), std * scale.reshape(-1, 1, 1).to(std.dtype)

    def data_variance(self, noise_std: torch.Tensor | None, scale: torch.Tensor) -> torch.Tensor:
        """1 / lam per slice (B,) in the normalised units: sigma'^2 for lam auto (inf for lam 0)."""
        if self.lam == AUTO:
            return (known_noise_std(noise_std, "diffusion lam: auto").to(scale) / scale) ** 2
        return torch.full_like(scale, math.inf if self.lam == 0 else 1 / float(self.lam))

    def sample(self, y: torch.Tensor, op: SenseOperator, variance: torch.Tensor) -> torch.Tensor:
        """`samples` chains of normalised data y (B, C, X, Y) with data variance (B,) -> (K, B, X, Y)."""
        b, k, shape = y.shape[0], self.samples, tuple(y.shape[-2:])
        mask = op.mask[:, 0].expand(b, *shape)
        chains = SenseOperator(op.maps.repeat(k, 1, 1, 1), mask.repeat(k, 1, 1))
        data, variance = y.repeat(k, 1, 1, 1), variance.repeat(k).reshape(-1, 1, 1)
        draws = Draws(self.seed, k, b, (shape[0], shape[1]), y.device)
        sigmas = noise_schedule(self.net.sigma_max, self.net.sigma_min, self.noise_levels)
        x = chains.adjoint(data) + sigmas[0] * draws.next()
        for i, sigma in enumerate(sigmas):
            weight = sigma**2 / (variance + sigma**2)  # eta_i lam_i / step_size
            level = torch.full((k * b,), sigma, device=y.device)
            for t in range(self.steps):
                denoised = from_channels(self.net(to_channels(x), level))
                dc = chains.adjoint(data - chains.forward(x))
                x = x + self.step_size * ((denoised - x) + weight * dc)
                if i < len(sigmas) - 1 or t < self.steps - 1:
                    x = x + math.sqrt(2 * self.step_size) * sigma * draws.next()
        return x.reshape(k, b, *shape)
