"""What every training task shares: loop settings, resume, what a checkpoint records of its data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError
from mrirecon.training import Settings


def positive(key: str, value: Any, integer: bool = False) -> Any:
    """`value` if it is a positive number (integer=True: a positive int), else a UserError naming `key`."""
    ok = isinstance(value, int) and not isinstance(value, bool) if integer else isinstance(value, (int, float))
    if not ok or value <= 0:
        raise UserError(f"{key}: {value!r} must be a positive {'integer' if integer else 'number'}")
    return value


def check_step_lr(value: Any) -> None:
    """train.step_lr: null or {step_size: epochs (integer >= 1), gamma: factor (> 0)}."""
    if value is None:
        return
    if not isinstance(value, Mapping) or set(value) != {"step_size", "gamma"}:
        raise UserError(
            f"train.step_lr: {_plain(value)!r} must be null or {{step_size: <epochs>, gamma: <factor>}}, "
            "e.g. train.step_lr={step_size:10,gamma:0.5}"
        )
    positive("train.step_lr.step_size", value["step_size"], integer=True)
    positive("train.step_lr.gamma", value["gamma"])


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


def settings_of(cfg: DictConfig) -> Settings:
    """Loop settings from `train` and `hardware`, validated."""
    t = cfg.train
    check_step_lr(t.step_lr)
    if t.max_minutes is not None:
        positive("train.max_minutes", t.max_minutes)
    if t.grad_clip is not None:
        positive("train.grad_clip", t.grad_clip)
    return Settings(
        epochs=positive("train.epochs", t.epochs, integer=True),
        batch_size=positive("train.batch_size", t.batch_size, integer=True),
        seed=int(cfg.seed),
        grad_clip=t.grad_clip,
        max_minutes=t.max_minutes,
        num_workers=int(cfg.hardware.num_workers),
        val_batch_size=positive("train.val_batch_size", t.val_batch_size, integer=True),
    )


def resume_path(cfg: DictConfig, out: Path) -> Path | None:
    """None, or the checkpoint named by train.resume (true: this run dir's last.pt)."""
    resume = cfg.train.resume
    if resume is False or resume is None:
        return None
    path = out / "checkpoints" / "last.pt" if resume is True else Path(str(resume))
    if not path.is_file():
        raise UserError(
            f"train.resume: no checkpoint at {path} (resume a run with hydra.run.dir=<its run dir> "
            "train.resume=true, or give train.resume=<path to last.pt>)"
        )
    return path


def training_data(data: DeepInPyFile, train_idx: np.ndarray) -> dict[str, Any]:
    """What a checkpoint records of its training data: the file, its source and the training
    subjects (so that reconstruct can refuse to report on them)."""
    subjects = data.subjects()
    subjects = np.arange(data.num_slices) if subjects is None else subjects
    return {
        "data_path": str(data.path.resolve()),
        "source_id": str(data.attrs.get("source_id", data.attrs.get("source", ""))),
        "train_subjects": sorted(set(subjects[train_idx].tolist())),
    }
