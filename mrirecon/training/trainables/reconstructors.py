"""What the families whose module is itself a reconstruction method (unrolled, direct) share:
validation metrics against the reference, the reference-free validation of unsupervised runs
(held-out measured k-space), TensorBoard images of the first slice, and the checkpoint
matching, schedule and hooks of a `ReconstructorFamily`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mrirecon.data.transforms import center_crop
from mrirecon.evaluation import metrics
from mrirecon.methods.base import Method
from mrirecon.methods.unrolled import split_mask
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.training.schedules import step_schedule
from mrirecon.training.streams import VALIDATION, generator

KSPACE_METRIC = "val_kspace_nmse"  # what chooses best.pt in unsupervised training
VAL_HOLDOUT = 0.4  # held-out fraction of the unsupervised validation when training holds out none


def reconstruct_batch(module: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, SenseOperator]:
    """module(y, op, noise_std) on a batch's masked k-space -> (x (B, X, Y) complex, op); the
    noise std is the batch's where stored, else estimated from y (`resolve_noise_std`)."""
    op = SenseOperator(batch["maps"], batch["mask"])
    y = batch["ksp"] * batch["mask"].unsqueeze(1)
    return module(y, op, resolve_noise_std(y, batch["mask"], batch["noise_std"])).cpu().numpy(), op


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


def kspace_validation(
    module: nn.Module, batch: dict[str, torch.Tensor], holdout: float, keep_center: float, seed: int
) -> dict[str, float]:
    """{KSPACE_METRIC: mean over the batch's slices of ||M_h (A x_hat - y)||^2 / ||M_h y||^2}, x_hat
    reconstructed from the measured samples outside M_h: a validation error of measured k-space
    only (the reference is not read). M_h holds out `holdout` of each slice's measured samples
    (outside the central `keep_center`), drawn from (seed, slice index): the same samples every
    epoch, whatever the batch size."""
    mask, ksp = batch["mask"], batch["ksp"]
    held = torch.cat(
        [
            split_mask(mask[k : k + 1], holdout, generator(seed, VALIDATION, int(i)), keep_center)[1]
            for k, i in enumerate(batch["index"].tolist())
        ]
    )
    inputs = mask - held
    y_in = ksp * inputs.unsqueeze(1)
    x_hat = module(y_in, SenseOperator(batch["maps"], inputs), resolve_noise_std(y_in, inputs, batch["noise_std"]))
    target = ksp * held.unsqueeze(1)
    error = (SenseOperator(batch["maps"], held).forward(x_hat) - target).abs().pow(2).flatten(1).sum(1)
    ratio = error / target.abs().pow(2).flatten(1).sum(1).clamp_min(torch.finfo(error.dtype).tiny)
    return {KSPACE_METRIC: float(ratio.mean())}


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


def _select(config: Mapping[str, Any], key: str) -> Any:
    """The value at dotted `key` of a nested config (None where absent)."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def at_inference(
    method_class: type[Method], requested: Mapping[str, Any], stored: Mapping[str, Any], given: Collection[str]
) -> dict[str, Any]:
    """The method keys set on the command line (`given`: dotted keys of the method config) that a
    method rebuilt from a checkpoint takes anew: {key: its `requested` value} for the keys of
    `method_class.inference_keys`. Any other given key is fixed by the weights or their training:
    ValueError('<key>: ...', naming the checkpoint's value) when its requested value differs from
    the `stored` one (the checkpoint's method config)."""
    applied: dict[str, Any] = {}
    for key in sorted(given):
        top = key.split(".")[0]
        if top == "train_defaults":
            raise ValueError(f"{key}: read by mrirecon train only (the train.* defaults of this method)")
        if top in method_class.inference_keys:
            applied[top] = requested[top]
        elif top != "name" and _select(requested, key) != _select(stored, key):
            takes = ", ".join(method_class.inference_keys) or "none of its keys"
            raise ValueError(
                f"{key}: {_select(requested, key)!r}, but the checkpoint's weights were trained with "
                f"{key}={_select(stored, key)!r} (a trained {method_class.name} takes at reconstruct time: {takes})"
            )
    return applied


class ReconstructorFamily:
    """Mixin of a trainable whose `module` is the reconstruction method `method_config['name']`:
    its checkpoints serve that method only, an optional StepLR schedule (`step_lr`), no per-step
    hook, validation by `validation_metrics` (best.pt by the lowest NRMSE)."""

    select: str = "val_nrmse"  # may be set per instance (e.g. unsupervised runs)
    train_only: ClassVar[tuple[str, ...]] = ()  # its methods are reconstruction methods
    own_models: ClassVar[tuple[str, ...]] = ()  # its networks come from mrirecon.nets
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
        return step_schedule(optimizer, int(self.step_lr["step_size"]), float(self.step_lr["gamma"]))

    def after_step(self, step: int) -> None:
        return None

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        return validation_metrics(self.module, batch)

    def images(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return validation_images(self.module, batch)
