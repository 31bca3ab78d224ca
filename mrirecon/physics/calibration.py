"""The calibration (ACS) region of a sampling mask: the largest centred, symmetric, fully sampled
rectangle, for 2-D Poisson-disc masks (a square) and fastMRI's column masks (every row of the
central columns) alike. E2E-VarNet estimates its coil maps from the k-space inside it
(fastMRI's SensitivityModel with mask_center, which finds the central columns only)."""

from __future__ import annotations

import torch


def _half_run(line: torch.Tensor) -> int:
    """h such that line[n//2 - h : n//2 + h] is all sampled (symmetric about the centre n//2, as
    fastMRI's 2 * min(left, right)); line (n,) bool."""
    n = int(line.shape[0])
    c = n // 2
    right = 0
    while c + right < n and bool(line[c + right]):
        right += 1
    left = 0
    while c - left - 1 >= 0 and bool(line[c - left - 1]):
        left += 1
    return min(left, right)


def _slice_box(measured: torch.Tensor) -> tuple[int, int]:
    """Half-sizes (hx, hy) of one slice's calibration rectangle; measured (X, Y) bool."""
    x, y = int(measured.shape[0]), int(measured.shape[1])
    hx, hy = _half_run(measured[:, y // 2]), _half_run(measured[x // 2, :])
    while hx > 0 and hy > 0 and not bool(measured[x // 2 - hx : x // 2 + hx, y // 2 - hy : y // 2 + hy].all()):
        hx, hy = hx - 1, hy - 1  # a run that went past the block on one axis: shrink to the sampled block
    return max(hx, 1), max(hy, 1)


def calibration_mask(mask: torch.Tensor) -> torch.Tensor:
    """mask (B, X, Y) real {0, 1} -> (B, X, Y) of the same dtype: 1 on each slice's calibration
    rectangle [X//2 - hx, X//2 + hx) x [Y//2 - hy, Y//2 + hy), the largest centred one the mask
    samples fully found from the runs of samples through the centre row and column; at least the
    centred 2x2 block (fastMRI's minimum of one line), so a mask without a sampled centre gives
    (nearly) no calibration data rather than an error."""
    if mask.ndim != 3 or mask.is_complex():
        raise ValueError(f"mask: real (B, X, Y) expected, got {tuple(mask.shape)} {mask.dtype}")
    out = torch.zeros_like(mask)
    x, y = int(mask.shape[1]), int(mask.shape[2])
    measured = (mask > 0).cpu()
    for b in range(int(mask.shape[0])):
        hx, hy = _slice_box(measured[b])
        out[b, max(x // 2 - hx, 0) : x // 2 + hx, max(y // 2 - hy, 0) : y // 2 + hy] = 1
    return out
