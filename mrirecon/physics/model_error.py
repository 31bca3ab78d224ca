"""Model error of the coil maps, measured on the fully sampled calibration region of k-space.

The SENSE model says every coil image is its map times one image, y_c = F (S_c x) + n_c. On the
calibration region (the centred square of width W that the mask samples fully: P) this is checked
without reconstructing anything: the coil images of the calibration data, z = F^H P y, are
projected on the maps pixel by pixel (S S^H z, with the maps normalised to sum_c |S_c|^2 = 1
where they are non-zero) and taken back to k-space,

    r = Q (y - F S S^H F^H P y),

on Q, the square less a BORDER of 2 samples (the projection of truncated data errs most at its
edge): the part of the calibration data that no image explains through these maps: coil images outside
the maps' support (maps cut by a tight ESPIRiT crop or zeroed over part of the anatomy), maps
whose shape does not fit the data (another scan's, a wrong coil order). Noise alone leaves
E ||r||^2 ~= sigma^2 |Q| (C - f) (C coils, f the fraction of pixels inside the support: the
projection keeps one of the C dimensions per pixel there), so

    ratio = ||r|| / (sigma sqrt(|Q| (C - f))),   fraction = ||r||^2 / ||Q y||^2.

ratio is the misfit against the noise (what the noise-based weights of lam=auto assume away);
fraction the misfit against the signal (the projection of band-limited calibration data leaves a
little even for exact maps, and ratio alone would grow with the SNR, or be infinite for sigma 0).
The check fires (`exceeds`) where both are large: ratio > RATIO_LIMIT and fraction >
FRACTION_LIMIT. Measured on real acquired k-space (scripts/bench_auto.py, docs/noise.md): ratio
1.9-2.2 and fraction 0.04-0.07 % with ESPIRiT maps on the 4-coil phantom and the 8-coil brain,
1.1-1.3 and at most 0.16 % on the simulated sample; 2.8-4.0 where mild cuts of the support left
every default above zero-filling; 7.0-32.7 and 0.39-11.7 % where the maps' support is cut by 12
pixels, by ESPIRiT with crop 0.995 or thresh 0.1-0.2, or over a fifth of the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrirecon.physics.fft import FFT
from mrirecon.physics.sense import CoilMaps

RATIO_LIMIT = 4.5  # residual / its noise expectation above which the maps do not explain the data
FRACTION_LIMIT = 0.0025  # and residual energy / calibration energy above which it is not the check's own
MIN_WIDTH = 16  # a calibration square narrower than this is not checked (NaN)
BORDER = 2  # samples at the calibration square's edge left out of the residual


@dataclass(frozen=True)
class ModelError:
    """The check of a batch: ratio (B,), fraction (B,) (NaN where not checked) and the width
    (B,) of each slice's calibration square (0 where it has none of MIN_WIDTH)."""

    ratio: torch.Tensor
    fraction: torch.Tensor
    width: torch.Tensor

    def exceeds(self) -> torch.Tensor:
        """(B,) bool: the maps do not explain the calibration data (both limits exceeded)."""
        return (self.ratio > RATIO_LIMIT) & (self.fraction > FRACTION_LIMIT)


def calibration_width(mask: torch.Tensor) -> int:
    """The width W of the largest centred square (even W, start X // 2 - W // 2) that the mask
    (X, Y) samples fully; 0 when it is narrower than MIN_WIDTH."""
    x, y = int(mask.shape[-2]), int(mask.shape[-1])
    measured = mask > 0
    width = 0
    for w in range(2, min(x, y) + 1, 2):
        sx, sy = x // 2 - w // 2, y // 2 - w // 2
        if not bool(measured[sx : sx + w, sy : sy + w].all()):
            break
        width = w
    return width if width >= MIN_WIDTH else 0


def _box(shape: tuple[int, int], width: int, device: torch.device) -> torch.Tensor:
    """(X, Y) float: 1 on the centred width x width square."""
    out = torch.zeros(shape, device=device)
    x, y = shape
    out[x // 2 - width // 2 : x // 2 - width // 2 + width, y // 2 - width // 2 : y // 2 - width // 2 + width] = 1
    return out


def _one_slice(y: torch.Tensor, maps: torch.Tensor, width: int, sigma: float) -> tuple[float, float]:
    """(ratio, fraction) of one slice: y, maps (C, X, Y), its calibration width, noise std."""
    shape = (int(y.shape[-2]), int(y.shape[-1]))
    box, inner = _box(shape, width, y.device), _box(shape, width - 2 * BORDER, y.device)
    norm = maps.abs().pow(2).sum(0).sqrt()
    unit = torch.where(norm > 0, maps / norm.clamp_min(1e-30), torch.zeros_like(maps))
    calib = y * box
    through_maps = FFT() @ CoilMaps(unit[None])  # image -> k-space of its coils, F S
    residual = (calib - through_maps.forward(through_maps.adjoint(calib[None]))[0]) * inner
    energy = float(residual.abs().pow(2).sum())
    total = float((calib * inner).abs().pow(2).sum())
    support = float((norm > 0).float().mean())
    expected = sigma**2 * (width - 2 * BORDER) ** 2 * max(y.shape[0] - support, 1e-3)
    ratio = (energy / expected) ** 0.5 if expected > 0 else (float("inf") if energy > 0 else 0.0)
    return ratio, (energy / total if total > 0 else 0.0)


def model_error(y: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, noise_std: torch.Tensor) -> ModelError:
    """The model-error check of each slice (module docstring).

    Args:
        y: measured k-space (B, C, X, Y), centred, zeros off the mask.
        maps: coil maps (B, C, X, Y) (normalised here where they are not).
        mask: sampling pattern (B, X, Y), (B, 1, X, Y) or (X, Y), {0, 1}.
        noise_std: noise std per k-space sample (B,).

    Returns:
        ModelError with ratio, fraction (NaN for a slice without a fully sampled calibration
        square of MIN_WIDTH) and width.
    """
    batch = int(y.shape[0])
    masks = mask.reshape(-1, *mask.shape[-2:]).expand(batch, *mask.shape[-2:])
    sigma = torch.as_tensor(noise_std).reshape(-1).expand(batch)
    ratio = torch.full((batch,), float("nan"))
    fraction = torch.full((batch,), float("nan"))
    width = torch.zeros(batch, dtype=torch.int64)
    for b in range(batch):
        w = calibration_width(masks[b])
        if w:
            ratio[b], fraction[b] = _one_slice(y[b], maps[b], w, float(sigma[b]))
            width[b] = w
    return ModelError(ratio, fraction, width)
