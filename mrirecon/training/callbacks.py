"""Hooks of the training loop (training.Trainer): logging and metrics.csv, TensorBoard, the
progress bar, the time budget and Ctrl-C. Each reacts to the loop's events; those that stop it
return a stop request, which the Trainer agrees across ranks."""

from __future__ import annotations

import csv
import io
import logging
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mrirecon.io import interrupts, ownership
from mrirecon.io.files import write_json, write_text

log = logging.getLogger(__name__)
Trainer = Any  # training.Trainer (not imported: it imports these hooks)
INTERRUPT, BUDGET = "interrupt", "budget"  # stop requests


class Callback:
    """No-op hooks; subclasses override what they need."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """After resume, before the first step."""

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Before each epoch's (remaining) steps."""

    def on_step(self, trainer: Trainer, loss: float) -> None:
        """After each optimisation step (loss: the global batch's mean)."""

    def stop_request(self, trainer: Trainer) -> str | None:
        """INTERRUPT or BUDGET to stop after this step (with last.pt), else None."""
        return None

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any], images: dict[str, np.ndarray]) -> None:
        """After validation and the epoch's checkpoints (row: the metrics.csv row)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """Always, when fit returns or raises."""


class MetricsLog(Callback):
    """metrics.csv (one row per epoch: epoch, step, train_loss, val_*, lr) and an epoch log line."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any], images: dict[str, np.ndarray]) -> None:
        rows = trainer.state["history"]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
        write_text(trainer.out_dir / "metrics.csv", buf.getvalue())
        val = {k: v for k, v in row.items() if k.startswith("val_")}
        log.info(
            "epoch %d: train loss %.4g, %s",
            row["epoch"],
            row["train_loss"],
            ", ".join(f"{k} {v:.4g}" for k, v in val.items()),
        )


def scalar_parameters(model: Any) -> dict[str, float]:
    """{'train/<name>': value} of every one-element parameter of `model` (learned weights such as
    an unrolled method's l2lam_raw or a direct method's residual gate)."""
    return {f"train/{name}": float(p.detach()) for name, p in model.named_parameters() if p.numel() == 1}


class TensorBoard(Callback):
    """Per-step loss and scalar parameters, per-epoch validation metrics, LR and images under tensorboard/."""

    def __init__(self) -> None:
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(trainer.out_dir / "tensorboard"), purge_step=trainer.state["step"] or None)

    def on_step(self, trainer: Trainer, loss: float) -> None:
        step = trainer.state["step"]
        self.writer.add_scalar("train/loss", loss, step)
        for name, value in scalar_parameters(trainer.model).items():
            self.writer.add_scalar(name, value, step)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any], images: dict[str, np.ndarray]) -> None:
        step = row["step"]
        for name, value in row.items():
            if name.startswith("val_"):
                self.writer.add_scalar(name.replace("val_", "val/"), value, step)
        self.writer.add_scalar("train/epoch_loss", row["train_loss"], step)
        self.writer.add_scalar("train/lr", row["lr"], step)
        for name, img in images.items():
            self.writer.add_image(name, np.clip(img, 0, 1)[None], step, dataformats="CHW")

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class ProgressBar(Callback):
    """A rich progress bar over all steps of the run (disabled on ranks other than 0)."""

    def __init__(self, enabled: bool = True) -> None:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
        )
        self.progress = Progress(*columns, transient=True, disable=not enabled)
        self.bar: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        total = trainer.settings.epochs * trainer.steps_per_epoch
        self.progress.start()
        self.bar = self.progress.add_task("train", total=total, completed=min(trainer.state["step"], total), loss="-")

    def on_epoch_start(self, trainer: Trainer) -> None:
        self.progress.update(self.bar, description=f"epoch {trainer.state['epoch'] + 1}/{trainer.settings.epochs}")

    def on_step(self, trainer: Trainer, loss: float) -> None:
        self.progress.update(self.bar, advance=1, loss=f"{loss:.4g}")

    def on_fit_end(self, trainer: Trainer) -> None:
        self.progress.stop()


class TimeBudget(Callback):
    """Stop cleanly (BUDGET) once `minutes` have passed since the fit started."""

    def __init__(self, minutes: float) -> None:
        self.minutes, self.deadline = float(minutes), float("inf")

    def on_fit_start(self, trainer: Trainer) -> None:
        self.deadline = time.monotonic() + 60 * self.minutes

    def stop_request(self, trainer: Trainer) -> str | None:
        return BUDGET if time.monotonic() > self.deadline else None


class Interrupt(Callback):
    """Ctrl-C (SIGINT) or SIGTERM (a kill, a scheduler's time limit) requests a clean stop
    (INTERRUPT) after the current step, with last.pt; a second one stops at once. `request()`
    does what Ctrl-C does."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def request(self, signum: int | None = None, frame: Any = None) -> None:
        if signum is not None:
            interrupts.note(signum)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def on_fit_start(self, trainer: Trainer) -> None:
        try:
            self.previous = {s: signal.signal(s, self.request) for s in self.SIGNALS}
        except ValueError:  # not the main thread
            self.previous = {}

    def stop_request(self, trainer: Trainer) -> str | None:
        return INTERRUPT if self.requested else None

    def on_fit_end(self, trainer: Trainer) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}


class RunInfo(Callback):
    """Write `info` as JSON to `path` when the fit starts (after a resume succeeded, so a failed
    resume leaves the run dir as it was)."""

    def __init__(self, path: Any, info: dict[str, Any]) -> None:
        self.path, self.info = path, info

    def on_fit_start(self, trainer: Trainer) -> None:
        write_json(self.path, self.info)


class RecordOutputs(Callback):
    """Record the files the run writes in its run dir's record (mrirecon/io/ownership.py), so that
    a later run knows them for train's own: training.json and this run's TensorBoard events when
    the fit starts, the checkpoints and metrics.csv after each epoch, all again when it ends (an
    interrupt saves last.pt; the events file grows until it is closed)."""

    NAMES = ("training.json", "metrics.csv", "checkpoints/last.pt", "checkpoints/best.pt")

    def __init__(self, out_dir: Any, by: str = "train") -> None:
        self.out_dir, self.by = Path(out_dir), by
        self.events_before = set(self._events())

    def _events(self) -> list[str]:
        return sorted(f"tensorboard/{p.name}" for p in (self.out_dir / "tensorboard").glob("events.out.tfevents.*"))

    def _record(self) -> None:
        names = [n for n in self.NAMES if (self.out_dir / n).is_file()]
        ownership.record(self.out_dir, [*names, *(e for e in self._events() if e not in self.events_before)], self.by)

    def on_fit_start(self, trainer: Trainer) -> None:
        self._record()

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any], images: dict[str, np.ndarray]) -> None:
        self._record()

    def on_fit_end(self, trainer: Trainer) -> None:
        self._record()


def standard_callbacks(main: bool, max_minutes: float | None) -> list[Callback]:
    """The hooks of `mrirecon train`: Ctrl-C and the time budget on every rank; progress,
    TensorBoard and metrics.csv / logging on rank 0 (`main`) only."""
    hooks: list[Callback] = [Interrupt(), ProgressBar(enabled=main)]
    if max_minutes is not None:
        hooks.append(TimeBudget(max_minutes))
    if main:
        hooks += [TensorBoard(), MetricsLog()]
    return hooks
