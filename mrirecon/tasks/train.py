"""`mrirecon train`: fit an unrolled method (dbp, modl) with a denoiser on the train split, or, with
model=flow, the normalizing-flow prior (tasks/train_flow.py)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from mrirecon import metrics
from mrirecon.data.dataset import SliceDataset
from mrirecon.errors import UserError, configured
from mrirecon.methods import REGISTRY, build_method
from mrirecon.methods.unrolled import Unrolled, training_loss
from mrirecon.nets import build_net
from mrirecon.physics.sense import SenseOperator
from mrirecon.tasks.common import open_processed, plain, training_setup
from mrirecon.tasks.train_common import positive, resume_path, settings_of, training_data
from mrirecon.training import Trainer

log = logging.getLogger(__name__)


def validate_unrolled(method: Unrolled, data: SliceDataset, batch_size: int, device: torch.device):
    """Mean NRMSE / PSNR / SSIM of `method` on the validation slices, and images of the first."""
    rows, images = [], {}
    for batch in DataLoader(data, batch_size=batch_size):
        ksp, maps, mask = batch["ksp"].to(device), batch["maps"].to(device), batch["mask"].to(device)
        op = SenseOperator(maps, mask)
        x = method(ksp * mask.unsqueeze(1), op, batch["noise_std"].to(device)).cpu().numpy()
        ref = batch["img"].numpy()
        rows += [metrics.slice_metrics(x[k], ref[k]) for k in range(len(x))]
        if not images:
            scale = float(np.abs(ref[0]).max()) or 1.0
            zero_filled = op.adjoint(ksp * mask.unsqueeze(1))[0].cpu().numpy()
            images = {"val/reference": np.abs(ref[0]) / scale, "val/reconstruction": np.abs(x[0]) / scale,
                      "val/zero_filled": np.abs(zero_filled) / scale}
    return {f"val_{k}": float(np.mean([r[k] for r in rows])) for k in metrics.NAMES}, images


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train `method` with denoiser `model` on `data.path`; write checkpoints/, tensorboard/,
    metrics.csv (validation per epoch) into the run dir. Returns the final loop state."""
    if str(cfg.model.name) == "flow":  # a generative prior: the method group does not apply
        from mrirecon.tasks import train_flow

        return train_flow.run(cfg)
    name = str(cfg.method.name)
    if name in REGISTRY and REGISTRY[name].checkpoint_kind == "flow":
        raise UserError(f"method={name} solves the inverse problem with a flow prior: train the prior with "
                        f"'mrirecon train model=flow data=<variant>'")
    if name in REGISTRY and REGISTRY[name].checkpoint_kind != "unrolled":
        trainable = ", ".join(sorted(k for k, v in REGISTRY.items() if v.checkpoint_kind == "unrolled"))
        raise UserError(f"method={name} has nothing to train (trainable methods: {trainable})")
    out, device = training_setup(cfg)
    settings = settings_of(cfg)
    t = cfg.train
    if not 0 <= float(t.holdout) < 1:
        raise UserError(f"train.holdout: {t.holdout} is not in [0, 1)")
    if not 0 <= float(t.holdout_center) < 1:
        raise UserError(f"train.holdout_center: {t.holdout_center} is not in [0, 1)")
    if float(t.stdev) < 0:
        raise UserError(f"train.stdev: {t.stdev} must be >= 0")
    lr = positive("train.lr", t.lr)
    resume = resume_path(cfg, out)
    torch.manual_seed(settings.seed)  # the same initial weights for the same seed
    method = configured("method", build_method, plain(cfg.method),
                        denoiser=configured("model", build_net, plain(cfg.model))).to(device)
    method.amp = bool(cfg.hardware.amp)
    data = open_processed(cfg)
    train_idx, val_idx = data.split_indices("train"), data.split_indices("val")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(f"{data.path}: the train and val splits must not be empty ({len(train_idx)} / {len(val_idx)} slices)")
    supervised = bool(t.supervised)
    train_set = SliceDataset(data, train_idx, with_reference=supervised)
    val_set = SliceDataset(data, val_idx, with_reference=True)
    optimizer = torch.optim.Adam(method.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, int(t.step_lr.step_size), float(t.step_lr.gamma)) if t.step_lr else None

    def loss_fn(batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(settings.seed * 7919 + step)
        return training_loss(method, batch, supervised, generator, float(t.stdev), float(t.holdout),
                             float(t.holdout_center))

    trainer = Trainer(
        method, optimizer, scheduler, loss_fn,
        lambda: validate_unrolled(method, val_set, int(t.val_batch_size), device),
        train_set, out, plain(cfg), settings, device,
        scalars=lambda: {"train/l2lam": float(method.l2lam.detach())},
        extra={"kind": "unrolled", "method": name, "splits": {"train": train_idx.tolist(), "val": val_idx.tolist()},
               **training_data(data, train_idx)},
    )
    log.info("training %s + %s (%s) on %s: %d train / %d val slices, %d parameters -> %s", name, cfg.model.name,
             "supervised" if supervised else f"unsupervised, holdout {t.holdout}", cfg.data.path, len(train_idx),
             len(val_idx), sum(p.numel() for p in method.parameters()), out)
    state = trainer.fit(resume)
    if state["history"]:
        last = state["history"][-1]
        log.info("done: epoch %d, val NRMSE %.4f, PSNR %.2f dB (best val NRMSE %.4f); checkpoints in %s",
                 last["epoch"], last["val_nrmse"], last["val_psnr"], state["best"], out / "checkpoints")
    return state
