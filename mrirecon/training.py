"""The training loop shared by every trainable model: epochs over a Dataset, validation,
atomic checkpoints (`last.pt` every epoch, `best.pt` by a validation metric), exact resume,
a time budget, clean Ctrl-C, TensorBoard scalars and images, a rich progress bar and
metrics.csv, and data-parallel training across torchrun processes (each rank takes its share
of every global batch; gradients are all-reduced; rank 0 validates, logs and writes). It knows
nothing about MRI: the caller supplies the loss and the validation.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mrirecon import distributed as ddp
from mrirecon.errors import UserError
from mrirecon.io import load_checkpoint, save_checkpoint, write_text

log = logging.getLogger(__name__)

LossFn = Callable[[dict[str, torch.Tensor], int], torch.Tensor]
ValidateFn = Callable[[], tuple[dict[str, float], dict[str, np.ndarray]]]


@dataclass
class Settings:
    """Loop settings.

    Args:
        epochs: passes over the training set.
        batch_size: slices per step.
        seed: seeds the data order (per epoch), the global RNGs and the per-step generators.
        grad_clip: clip the gradient norm to this (None: off).
        max_minutes: stop cleanly, with a checkpoint, after this many minutes (None: no limit).
        num_workers: DataLoader worker processes.
        select: validation metric that picks best.pt (smaller is better), e.g. 'val_nrmse'.
    """

    epochs: int
    batch_size: int
    seed: int = 723
    grad_clip: float | None = None
    max_minutes: float | None = None
    num_workers: int = 0
    select: str = "val_nrmse"


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled batches of one epoch: a function of (seed, epoch) only, so resume repeats them."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class Trainer:
    """Fit `model` by minimising `loss_fn(batch, step)` over `dataset`.

    Args:
        model: the module whose state is checkpointed (its parameters are optimised).
        optimizer, scheduler: torch optimizer and optional epoch-wise LR scheduler.
        loss_fn: (batch on device, global step) -> scalar loss, the mean over the batch's
            items; `step` seeds its randomness.
        validate: () -> (metrics named 'val_*', images (H, W) in [0, 1] for TensorBoard).
        dataset: training items (dicts of tensors), batched by the default collate.
        out_dir: run dir: checkpoints/, tensorboard/ and metrics.csv go here.
        config: the resolved run config, stored in every checkpoint.
        settings: loop settings.
        device: where batches go.
        scalars: extra per-step scalars to log (e.g. a learned weight).
        extra: extra entries stored in every checkpoint (e.g. split indices).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        loss_fn: LossFn,
        validate: ValidateFn,
        dataset: Dataset,
        out_dir: Path,
        config: dict[str, Any],
        settings: Settings,
        device: torch.device,
        scalars: Callable[[], dict[str, float]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.loss_fn, self.validate, self.dataset = loss_fn, validate, dataset
        self.out_dir, self.config, self.s, self.device = Path(out_dir), config, settings, device
        self.scalars = scalars or (lambda: {})
        self.extra = extra or {}
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.state: dict[str, Any] = {"epoch": 0, "batch": 0, "step": 0, "best": math.inf, "history": [],
                                      "loss_sum": 0.0, "loss_count": 0}
        self._stop_requested = False

    # -- checkpoints ---------------------------------------------------------------------
    def _checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "state": dict(self.state),
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "config": self.config,
            **self.extra,
        }

    def save(self, name: str) -> Path:
        """Write checkpoints/<name> (rank 0 only; every rank waits for it)."""
        path = self.ckpt_dir / name
        if ddp.is_main():
            save_checkpoint(path, self._checkpoint())
        ddp.barrier()
        return path

    def resume(self, path: Path) -> None:
        """Restore model, optimizer, scheduler, loop position and RNG states from `path`."""
        ckpt = load_checkpoint(path)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"train.resume: {path} does not match this model ({first})") from None
        if self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = dict(ckpt["state"])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        log.info("resumed from %s at epoch %d, step %d", path, self.state["epoch"], self.state["step"])

    def _write_metrics(self) -> None:
        rows = self.state["history"]
        if not rows:
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
        write_text(self.out_dir / "metrics.csv", buf.getvalue())

    # -- the loop --------------------------------------------------------------------------
    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self._stop_requested = True

    def fit(self, resume_from: Path | None = None) -> dict[str, Any]:
        """Train until `epochs` are done, the time budget runs out, or Ctrl-C.

        Returns the loop state (epoch, step, best, history). Raises KeyboardInterrupt after
        saving last.pt on Ctrl-C, and UserError (last good checkpoint kept) on a
        non-finite loss.
        """
        from torch.utils.tensorboard import SummaryWriter

        if resume_from is not None:
            self.resume(resume_from)
            # a run killed while writing a checkpoint leaves its temporary file (never the
            # checkpoint itself half-written): this run dir is ours now, remove them
            for stale in self.ckpt_dir.glob(".*.tmp") if ddp.is_main() else ():
                stale.unlink(missing_ok=True)
        else:
            torch.manual_seed(self.s.seed)
            np.random.seed(self.s.seed % 2**32)
            random.seed(self.s.seed)
        n = len(self.dataset)
        steps_per_epoch = math.ceil(n / self.s.batch_size)
        deadline = None if self.s.max_minutes is None else time.monotonic() + 60 * float(self.s.max_minutes)
        main = ddp.is_main()
        tb = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=self.state["step"] or None) if main else None
        previous_handler = None
        try:
            previous_handler = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread
            pass
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
        try:
            with Progress(*columns, transient=True, disable=not main) as progress:
                bar = progress.add_task("train", total=self.s.epochs * steps_per_epoch,
                                        completed=min(self.state["step"], self.s.epochs * steps_per_epoch), loss="-")
                while self.state["epoch"] < self.s.epochs:
                    epoch = self.state["epoch"]
                    progress.update(bar, description=f"epoch {epoch + 1}/{self.s.epochs}")
                    batches = _epoch_batches(n, self.s.batch_size, self.s.seed, epoch)[self.state["batch"]:]
                    for batch, share in self._local_batches(batches):
                        loss = self._step(batch, share)
                        progress.update(bar, advance=1, loss=f"{loss:.4g}")
                        if tb is not None:
                            tb.add_scalar("train/loss", loss, self.state["step"])
                            for name, value in self.scalars().items():
                                tb.add_scalar(name, value, self.state["step"])
                        out_of_time = deadline is not None and time.monotonic() > deadline
                        stop, out_of_time = ddp.any_rank((self._stop_requested, out_of_time), self.device)
                        if stop:
                            path = self.save("last.pt")
                            log.warning("interrupted at epoch %d, step %d: saved %s (resume with train.resume=%s)",
                                        epoch + 1, self.state["step"], path, path)
                            raise KeyboardInterrupt
                        if out_of_time:
                            path = self.save("last.pt")
                            log.info("time budget of %s min reached at epoch %d, step %d: saved %s",
                                     self.s.max_minutes, epoch + 1, self.state["step"], path)
                            return self.state
                    self._end_epoch(tb)
        finally:
            if tb is not None:
                tb.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        return self.state

    def _local_batches(self, batches: list[list[int]]):
        """(batch on device or None, this rank's share of the global batch) for each global
        batch; a rank whose share is empty (a short last batch) gets None."""
        mine = [ddp.shard(b) for b in batches]
        loader = iter(DataLoader(self.dataset, batch_sampler=[m for m in mine if m], num_workers=self.s.num_workers))
        for items, global_items in zip(mine, batches):
            yield (_to(next(loader), self.device) if items else None), len(items) / len(global_items)

    def _step(self, batch: dict[str, torch.Tensor] | None, share: float = 1.0) -> float:
        """One optimisation step on this rank's `batch` (None: nothing to contribute), which
        holds `share` of the global batch's items. Returns the global batch's mean loss."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        local = 0.0
        if batch is not None:
            loss = self.loss_fn(batch, self.state["step"])
            local = float(loss.detach())
            if math.isfinite(local):
                loss.backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        ddp.reduce_gradients(params, share, self.device)
        value = ddp.all_sum(share * local, self.device)
        if not math.isfinite(value):
            kept = self.ckpt_dir / "last.pt"
            raise UserError(
                f"training diverged: loss is {value} at epoch {self.state['epoch'] + 1}, step "
                f"{self.state['step']} (last good checkpoint: {kept if kept.exists() else 'none yet'}); "
                "try a lower train.lr or train.grad_clip"
            )
        if self.s.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), float(self.s.grad_clip))
        self.optimizer.step()
        if self.state["step"] == 0:  # data-dependent initialisation (ActNorm) saw each rank's own data
            ddp.broadcast_module(self.model)
        self.state["step"] += 1
        self.state["batch"] += 1
        self.state["loss_sum"] += value
        self.state["loss_count"] += 1
        return value

    def _end_epoch(self, tb: Any) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        self.model.eval()
        val, images = {}, {}
        if ddp.is_main():
            with torch.no_grad():
                val, images = self.validate()
        val = ddp.broadcast_object(val)
        self.model.train()
        state = self.state
        state["epoch"] += 1
        state["batch"] = 0
        row = {"epoch": state["epoch"], "step": state["step"],
               "train_loss": state["loss_sum"] / max(state["loss_count"], 1), **val, "lr": lr}
        state["loss_sum"], state["loss_count"] = 0.0, 0
        state["history"] = [*state["history"], row]
        score = val.get(self.s.select, math.inf)
        if score < state["best"]:
            state["best"] = score
            self.save("best.pt")
        self.save("last.pt")
        if tb is None:  # not rank 0
            return
        for name, value in val.items():
            tb.add_scalar(name.replace("val_", "val/"), value, state["step"])
        tb.add_scalar("train/epoch_loss", row["train_loss"], state["step"])
        tb.add_scalar("train/lr", lr, state["step"])
        for name, img in images.items():
            tb.add_image(name, np.clip(img, 0, 1)[None], state["step"], dataformats="CHW")
        self._write_metrics()
        log.info("epoch %d: train loss %.4g, %s", state["epoch"], row["train_loss"],
                 ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
