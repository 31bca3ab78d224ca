"""Validation shared by the families whose module reconstructs images from k-space (unrolled,
direct): metrics against the reference and TensorBoard images of the first slice."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mrirecon import metrics
from mrirecon.physics.sense import SenseOperator


def reconstruct_batch(module: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, SenseOperator]:
    """module(y, op, noise_std) on a batch's masked k-space -> (x (B, X, Y) complex, op)."""
    op = SenseOperator(batch["maps"], batch["mask"])
    y = batch["ksp"] * batch["mask"].unsqueeze(1)
    return module(y, op, batch["noise_std"]).cpu().numpy(), op


def validation_metrics(module: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """{'val_nrmse', 'val_psnr', 'val_ssim'}: means over the batch's slices."""
    x, _ = reconstruct_batch(module, batch)
    ref = batch["img"].cpu().numpy()
    rows = [metrics.slice_metrics(x[k], ref[k]) for k in range(len(x))]
    return {f"val_{k}": float(np.mean([r[k] for r in rows])) for k in metrics.NAMES}


def validation_images(module: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Reference, reconstruction and zero-filled magnitudes of the batch's first slice in [0, 1]."""
    first = {k: v[:1] for k, v in batch.items()}
    x, op = reconstruct_batch(module, first)
    ref = first["img"].cpu().numpy()
    scale = float(np.abs(ref[0]).max()) or 1.0
    zero_filled = op.adjoint(first["ksp"] * first["mask"].unsqueeze(1))[0].cpu().numpy()
    return {"val/reference": np.abs(ref[0]) / scale, "val/reconstruction": np.abs(x[0]) / scale,
            "val/zero_filled": np.abs(zero_filled) / scale}
