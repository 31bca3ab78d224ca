"""What every training task shares: loop settings, resume, what a checkpoint records of its data."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError
from mrirecon.io.ownership import RECORD, Outputs, record
from mrirecon.tasks.common import overwrite
from mrirecon.training.settings import Settings


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
    if not isinstance(t.cosine_lr, bool):
        raise UserError(f"train.cosine_lr: {t.cosine_lr!r} must be true or false")
    if t.cosine_lr and t.step_lr is not None:
        raise UserError("train.cosine_lr: true, and train.step_lr is set too: choose one schedule")
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
        trust_checkpoint=bool(cfg.get("trust_checkpoint", False)),
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


def _continues(out: Path, resume: Path | None) -> bool:
    """Whether `resume` is a checkpoint of the run dir `out` itself (the run goes on there)."""
    return resume is not None and resume.resolve().parent == (out / "checkpoints").resolve()


OUTPUTS = ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.csv", "training.json")  # in the run dir
EVENTS = "tensorboard/events.out.tfevents."  # TensorBoard's files start so


def outputs_of(cfg: DictConfig, out: Path) -> Outputs:
    """The run dir's files as train owns them (ownership.Outputs)."""
    return Outputs(out, "train", replace=overwrite(cfg))


def _earlier_run(outputs: Outputs) -> list[str]:
    """The files of an earlier training run in the run dir: its own outputs present there."""
    events = sorted(f"tensorboard/{p.name}" for p in (outputs.folder / "tensorboard").glob("events.out.tfevents.*"))
    return [n for n in (*OUTPUTS, *events) if (outputs.folder / n).is_file() and outputs.owns(n)]


def check_run_dir(cfg: DictConfig, out: Path, resume: Path | None) -> None:
    """Refuse to train into a run dir holding an earlier training run (unless train.resume
    continues it, or overwrite=true), or files at the names train writes that no training run
    wrote there (unless overwrite=true: those are replaced, nothing else is touched)."""
    if _continues(out, resume):
        return
    outputs = outputs_of(cfg, out)
    earlier = _earlier_run(outputs)
    if earlier and not outputs.replace:
        checkpoints = sorted(Path(n).name for n in earlier if n.startswith("checkpoints/"))
        held = f"checkpoints ({', '.join(checkpoints)})" if checkpoints else f"the outputs ({', '.join(earlier)})"
        raise UserError(
            f"hydra.run.dir: {out} already holds {held} of a training run: continue it with train.resume=true, "
            "or start over with overwrite=true (replaces that run's files), or choose another hydra.run.dir"
        )
    outputs.claim(list(OUTPUTS))


def clear_run_dir(cfg: DictConfig, out: Path, resume: Path | None) -> None:
    """With overwrite=true (and not continuing this run dir's own run), remove the earlier run's
    files (those the record says train wrote, TensorBoard events included) and the files at
    the names this run writes, so that the run dir holds one run; a user's other files stay
    (e.g. checkpoints/my_model.pt)."""
    if not overwrite(cfg) or _continues(out, resume):
        return
    outputs = outputs_of(cfg, out)
    old = sorted({*_earlier_run(outputs), *outputs.stale(()), *(n for n in OUTPUTS if os.path.lexists(out / n))})
    for name in old:
        (out / name).unlink(missing_ok=True)
    if (out / RECORD).exists():
        record(out, (), "train", forget=old)


def training_data(data: DeepInPyFile, train_idx: np.ndarray) -> dict[str, Any]:
    """What a checkpoint records of its training data: the file, its source and the training
    subjects (so that reconstruct can refuse to report on them)."""
    subjects = data.subjects()
    subjects = np.arange(data.num_slices) if subjects is None else subjects
    return {
        "data_path": str(data.path.resolve()),
        "source_id": data.header.source_id or "",
        "train_subjects": sorted(set(subjects[train_idx].tolist())),
    }
