"""What the families whose module is itself a reconstruction method (unrolled, direct) share:
validation metrics against the reference, TensorBoard images of the first slice, and the
checkpoint matching, schedule and hooks of a `ReconstructorFamily`."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mrirecon import metrics
from mrirecon.data.transforms import center_crop
from mrirecon.physics.sense import SenseOperator


def reconstruct_batch(module: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, SenseOperator]:
    """module(y, op, noise_std) on a batch's masked k-space -> (x (B, X, Y) complex, op)."""
    op = SenseOperator(batch["maps"], batch["mask"])
    y = batch["ksp"] * batch["mask"].unsqueeze(1)
    return module(y, op, batch["noise_std"]).cpu().numpy(), op


def validation_metrics(module: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """{'val_nrmse', 'val_psnr', 'val_ssim'}: means over the batch's slices (images cropped to
    the batch's 'crop', the file's recon size, when it has one, as reconstruct does)."""
    x, _ = reconstruct_batch(module, batch)
    ref = batch["img"].cpu().numpy()
    if "crop" in batch:
        crop = tuple(int(v) for v in batch["crop"][0])
        x, ref = center_crop(x, crop), center_crop(ref, crop)
    rows = [metrics.slice_metrics(x[k], ref[k]) for k in range(len(x))]
    return {f"val_{k}": float(np.mean([r[k] for r in rows])) for k in metrics.NAMES}


def validation_images(module: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Reference, reconstruction and zero-filled magnitudes of the batch's first slice in [0, 1]."""
    first = {k: v[:1] for k, v in batch.items()}
    x, op = reconstruct_batch(module, first)
    ref = first["img"].cpu().numpy()
    scale = float(np.abs(ref[0]).max()) or 1.0
    zero_filled = op.adjoint(first["ksp"] * first["mask"].unsqueeze(1))[0].cpu().numpy()
    return {
        "val/reference": np.abs(ref[0]) / scale,
        "val/reconstruction": np.abs(x[0]) / scale,
        "val/zero_filled": np.abs(zero_filled) / scale,
    }


class ReconstructorFamily:
    """Mixin of a trainable whose `module` is the reconstruction method `method_config['name']`:
    its checkpoints serve that method only, an optional StepLR schedule (`step_lr`), no per-step
    hook, validation by `validation_metrics` (best.pt by the lowest NRMSE)."""

    select: ClassVar[str] = "val_nrmse"
    module: nn.Module
    step_lr: dict[str, Any] | None

    @classmethod
    def accepts(cls, ckpt: dict[str, Any], method: str) -> bool:
        return ckpt.get("method") == method

    @classmethod
    def train_hint(cls, method: str) -> str:
        return f"method={method}"

    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
        if not self.step_lr:
            return None
        return torch.optim.lr_scheduler.StepLR(optimizer, int(self.step_lr["step_size"]), float(self.step_lr["gamma"]))

    def after_step(self, step: int) -> None:
        return None

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return validation_metrics(self.module, batch)

    def images(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return validation_images(self.module, batch)
