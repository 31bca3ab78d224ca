"""Thermal noise of multi-coil k-space: estimation from measured data and simulation.

Model: y_c(k) = (A x)_c(k) + n_c(k) on the measured samples, n_c(k) ~ CN(0, sigma_c^2)
independent (complex Gaussian, E|n|^2 = sigma_c^2). With the orthonormal FFT and coil maps
normalised to sum_c |S_c|^2 = 1, sigma is also the noise standard deviation of the
coil-combined image of fully sampled data, so max|x| / sigma is the image's peak SNR.

`estimate_noise_std` is a data-driven estimate in the spirit of BART's `estvar`, but from the
periphery of k-space instead of the calibration matrix: the outermost measured samples hold
almost no signal on real scans (the signal of an image falls off as 1/|k|^2 or faster; thermal
noise is white), and there |y_c|^2 / sigma_c^2 follows an exponential law whose median is
ln 2. The median makes it robust to the few samples that still carry edge signal. Checked
against the corners of a fully sampled real scan (tests and scripts/bench_real.py).

`resolve_noise_std` is the one place where a slice's noise level is decided: the stored value
where there is one, else this estimate. Reconstruct and the training families call it once per
batch; the methods receive its result and never estimate.
"""

from __future__ import annotations

import math

import torch


def _radius(shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Normalised distance of every k-space location from the centre (X, Y): 1 at the middle
    of each edge, sqrt(2) in the corners."""
    x, y = shape
    kx = (torch.arange(x, device=device, dtype=torch.float32) - x // 2) / (x / 2)
    ky = (torch.arange(y, device=device, dtype=torch.float32) - y // 2) / (y / 2)
    return torch.sqrt(kx[:, None] ** 2 + ky[None, :] ** 2)


def estimate_noise_std(
    ksp: torch.Tensor, mask: torch.Tensor, outer: float = 0.1, min_locations: int = 64
) -> torch.Tensor:
    """Noise standard deviation per complex k-space sample, from measured multi-coil data.

    Takes the outermost `outer` fraction of the measured locations (at least `min_locations`),
    estimates each coil's variance as median(|y_c|^2) / ln 2 there and returns the root mean
    square over coils. Locations where every coil is exactly zero count as not measured (e.g.
    k-space corners a scanner skipped), whatever the mask says. Each slice is estimated on its
    own, so a slice's estimate does not depend on its batch.

    Args:
        ksp: measured k-space (B, C, X, Y) or (C, X, Y), complex, centred; zeros off the mask.
        mask: sampling pattern (B, X, Y) or (X, Y), {0, 1}.
        outer: fraction of the measured locations, by distance from the centre, to use.
        min_locations: use at least this many locations (all if fewer are measured).

    Returns:
        sigma (B,) float32 (a 0-dim tensor for unbatched input); 0 where nothing is measured.
    """
    if not 0 < outer <= 1:
        raise ValueError(f"outer must be in (0, 1], got {outer}")
    unbatched = ksp.ndim == 3
    if unbatched:
        ksp = ksp[None]
    if ksp.ndim != 4 or not ksp.is_complex():
        raise ValueError(f"ksp must be complex (B, C, X, Y) or (C, X, Y), got {tuple(ksp.shape)} {ksp.dtype}")
    mask = mask.to(ksp.device)
    mask = mask.expand(ksp.shape[0], *ksp.shape[-2:]) if mask.ndim == 2 else mask
    radius = _radius((int(ksp.shape[-2]), int(ksp.shape[-1])), ksp.device)
    out = torch.zeros(ksp.shape[0], dtype=torch.float32, device=ksp.device)
    for b in range(ksp.shape[0]):
        power = ksp[b].abs().pow(2)  # (C, X, Y)
        measured = (mask[b] > 0) & (power.sum(0) > 0)
        count = int(measured.sum())
        if count == 0:
            continue
        k = min(count, max(min_locations, math.ceil(outer * count)))
        where = torch.where(measured, radius, torch.full_like(radius, -1.0)).flatten()
        outermost = torch.topk(where, k).indices
        per_coil = power.flatten(1)[:, outermost].median(dim=1).values / math.log(2)
        out[b] = per_coil.mean().sqrt()
    return out[0] if unbatched else out


def resolve_noise_std(y: torch.Tensor, mask: torch.Tensor, noise_std: torch.Tensor | None = None) -> torch.Tensor:
    """The noise std per k-space sample (B,) of each slice of measured k-space y (B, C, X, Y):
    `noise_std` where it is given and not NaN (e.g. as stored by preprocess), else
    `estimate_noise_std` of the slice's measured samples. What every method's `noise_std` is.

    Args:
        y: measured k-space (B, C, X, Y), complex, zeros off the mask.
        mask: sampling pattern (X, Y), (B, X, Y) or a SenseOperator's (B, 1, X, Y) `mask`.
        noise_std: None (estimate every slice), or a number or (B,) tensor, NaN where unknown.

    Returns:
        (B,) in y's real dtype, on y's device.
    """
    batch, shape = y.shape[0], tuple(y.shape[-2:])
    given = None
    if noise_std is not None:
        given = torch.as_tensor(noise_std, dtype=y.real.dtype, device=y.device).reshape(-1).expand(batch)
        if not bool(given.isnan().any()):
            return given
    estimate = estimate_noise_std(y, mask.reshape(-1, *shape).expand(batch, *shape)).to(y.real.dtype)
    return estimate if given is None else torch.where(given.isnan(), estimate, given)


def complex_noise(
    shape: tuple[int, ...],
    std: torch.Tensor | float,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.complex64,
) -> torch.Tensor:
    """Complex Gaussian noise with E|n|^2 = std^2 per sample, drawn on the CPU.

    Args:
        shape: output shape, batch first.
        std: a float or a (B,) tensor (one standard deviation per batch element).
        generator: CPU generator (seeded by the caller for reproducibility).
    """
    noise = torch.randn(shape, dtype=dtype, generator=generator)  # complex randn: E|n|^2 = 1
    std = torch.as_tensor(std, dtype=noise.real.dtype)
    return noise * (std.reshape((-1,) + (1,) * (len(shape) - 1)) if std.ndim else std)
