"""The training loop shared by every trainable family: epochs over a Dataset, validation,
atomic checkpoints (`last.pt` every epoch, `best.pt` by a validation metric), exact resume, and
data-parallel training across torchrun processes (each rank takes its share of every global
batch; gradients are all-reduced; rank 0 validates and writes). Logging, metrics.csv,
TensorBoard, the progress bar, the time budget and Ctrl-C are hooks (mrirecon.callbacks). It
knows nothing about MRI or any model: the `Trainable` supplies the loss and the validation.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mrirecon import distributed as ddp
from mrirecon.callbacks import BUDGET, INTERRUPT, Callback
from mrirecon.errors import UserError
from mrirecon.io import link_or_copy, load_checkpoint, save_checkpoint
from mrirecon.trainables.base import Trainable

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """Loop settings.

    Args:
        epochs: passes over the training set.
        batch_size: slices per step.
        seed: seeds the data order (per epoch), the global RNGs and the per-step generators.
        grad_clip: clip the gradient norm to this (None: off).
        max_minutes: stop cleanly, with a checkpoint, after this many minutes (None: no limit;
            enforced by the callbacks.TimeBudget hook).
        num_workers: DataLoader worker processes.
        val_batch_size: slices per validation batch.
        trust_checkpoint: resume also from a checkpoint that only an unsafe pickle load reads
            (mrirecon.io.load_checkpoint); only for files from a trusted source.
    """

    epochs: int
    batch_size: int
    seed: int = 723
    grad_clip: float | None = None
    max_minutes: float | None = None
    num_workers: int = 0
    val_batch_size: int = 4
    trust_checkpoint: bool = False


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled batches of one epoch: a function of (seed, epoch) only, so resume repeats them."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def _numpy_rng_state() -> dict[str, Any]:
    """NumPy's global RNG state as plain types (a checkpoint holds no NumPy arrays: mrirecon.io)."""
    state = np.random.get_state(legacy=False)
    key = state["state"]["key"]
    return {**state, "state": {**state["state"], "key": key.tolist()}}


def _set_numpy_rng_state(state: Any) -> None:
    """Restore NumPy's global RNG from `_numpy_rng_state()`'s dict or, from checkpoints of
    formats 1 and 2, `np.random.get_state()`'s tuple."""
    if isinstance(state, dict):
        key = np.asarray(state["state"]["key"], dtype=np.uint32)
        state = {**state, "state": {**state["state"], "key": key}}
    np.random.set_state(state)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class Trainer:
    """Fit `trainable` by minimising its loss over `train_set`, validating on `val_set` each epoch.

    Args:
        trainable: the family being trained (its `module` is optimised and checkpointed, its
            `checkpoint_state()` stored in every checkpoint).
        optimizer, scheduler: torch optimizer and optional epoch-wise LR scheduler.
        train_set, val_set: items (dicts of tensors), batched by the default collate.
        out_dir: run dir: checkpoints/ go here (and what the hooks write).
        config: the resolved run config, stored in every checkpoint.
        settings: loop settings.
        device: where batches go.
        callbacks: hooks (callbacks.standard_callbacks for the CLI's).
        extra: extra entries stored in every checkpoint (e.g. split indices).
    """

    def __init__(
        self,
        *,
        trainable: Trainable,
        optimizer: torch.optim.Optimizer,
        scheduler: Any = None,
        train_set: Dataset,
        val_set: Dataset,
        out_dir: Path,
        config: dict[str, Any],
        settings: Settings,
        device: torch.device,
        callbacks: list[Callback] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.trainable, self.model = trainable, trainable.module
        self.optimizer, self.scheduler = optimizer, scheduler
        self.train_set, self.val_set = train_set, val_set
        self.out_dir, self.config, self.settings, self.device = Path(out_dir), config, settings, device
        self.callbacks = list(callbacks or [])
        self.extra = extra or {}
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.steps_per_epoch = math.ceil(len(train_set) / settings.batch_size)
        self.state: dict[str, Any] = {
            "epoch": 0,
            "batch": 0,
            "step": 0,
            "best": math.inf,
            "history": [],
            "loss_sum": 0.0,
            "loss_count": 0,
        }

    # -- checkpoints ---------------------------------------------------------------------
    def _checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "state": dict(self.state),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _numpy_rng_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
            "config": self.config,
            **self.trainable.checkpoint_state(),
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
        ckpt = load_checkpoint(path, "train.resume", self.settings.trust_checkpoint)
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
        _set_numpy_rng_state(rng["numpy"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        log.info("resumed from %s at epoch %d, step %d", path, self.state["epoch"], self.state["step"])

    # -- the loop --------------------------------------------------------------------------
    def _emit(self, event: str, *args: Any) -> None:
        for hook in self.callbacks:
            getattr(hook, event)(self, *args)

    def _agreed_stop(self) -> tuple[bool, bool]:
        """(interrupt, out of time): the hooks' stop requests on any rank."""
        requests = {hook.stop_request(self) for hook in self.callbacks}
        stop, budget = ddp.any_rank((INTERRUPT in requests, BUDGET in requests), self.device)
        return stop, budget

    def fit(self, resume_from: Path | None = None) -> dict[str, Any]:
        """Train until `epochs` are done or a hook stops it (time budget, Ctrl-C).

        Returns the loop state (epoch, step, best, history). Raises KeyboardInterrupt after
        saving last.pt on an interrupt, and UserError (last good checkpoint kept) on a
        non-finite loss.
        """
        if resume_from is not None:
            self.resume(resume_from)
            # a run killed while writing a checkpoint leaves its temporary file (never the
            # checkpoint itself half-written): this run dir is ours now, remove them
            for stale in self.ckpt_dir.glob(".*.tmp") if ddp.is_main() else ():
                stale.unlink(missing_ok=True)
        else:
            torch.manual_seed(self.settings.seed)
            np.random.seed(self.settings.seed % 2**32)
            random.seed(self.settings.seed)
        s = self.settings
        self._emit("on_fit_start")
        try:
            while self.state["epoch"] < s.epochs:
                epoch = self.state["epoch"]
                self._emit("on_epoch_start")
                batches = _epoch_batches(len(self.train_set), s.batch_size, s.seed, epoch)[self.state["batch"] :]
                for batch, share in self._local_batches(batches):
                    loss = self._step(batch, share)
                    self._emit("on_step", loss)
                    stop, out_of_time = self._agreed_stop()
                    if stop:
                        path = self.save("last.pt")
                        log.warning(
                            "interrupted at epoch %d, step %d: saved %s (resume with train.resume=%s)",
                            epoch + 1,
                            self.state["step"],
                            path,
                            path,
                        )
                        raise KeyboardInterrupt
                    if out_of_time:
                        path = self.save("last.pt")
                        log.info(
                            "time budget of %s min reached at epoch %d, step %d: saved %s",
                            s.max_minutes,
                            epoch + 1,
                            self.state["step"],
                            path,
                        )
                        return self.state
                self._end_epoch()
        finally:
            self._emit("on_fit_end")
        return self.state

    def _local_batches(self, batches: list[list[int]]):
        """(batch on device or None, this rank's share of the global batch) for each global
        batch; a rank whose share is empty (a short last batch) gets None."""
        mine = [ddp.shard(b) for b in batches]
        loader = iter(
            DataLoader(self.train_set, batch_sampler=[m for m in mine if m], num_workers=self.settings.num_workers)
        )
        for items, global_items in zip(mine, batches):
            yield (_to(next(loader), self.device) if items else None), len(items) / len(global_items)

    def _step(self, batch: dict[str, torch.Tensor] | None, share: float = 1.0) -> float:
        """One optimisation step on this rank's `batch` (None: nothing to contribute), which
        holds `share` of the global batch's items. Returns the global batch's mean loss."""
        step = self.state["step"]
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        local = 0.0
        if batch is not None:
            generator = torch.Generator().manual_seed(self.settings.seed * 7919 + step)
            loss = self.trainable.loss(batch, generator)
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
                f"{step} (last good checkpoint: {kept if kept.exists() else 'none yet'}); "
                "try a lower train.lr or train.grad_clip"
            )
        if self.settings.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), float(self.settings.grad_clip))
        self.optimizer.step()
        self.trainable.after_step(step)
        self.state["step"] += 1
        self.state["batch"] += 1
        self.state["loss_sum"] += value
        self.state["loss_count"] += 1
        return value

    def validate(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """The trainable's metrics averaged over the validation slices, and its images of the
        first validation batch."""
        sums: dict[str, float] = {}
        count, images = 0, {}
        for batch in DataLoader(self.val_set, batch_size=self.settings.val_batch_size):
            batch = _to(batch, self.device)
            n = len(next(iter(batch.values())))
            for name, value in self.trainable.validate(batch).items():
                sums[name] = sums.get(name, 0.0) + n * value
            if not count:
                images = self.trainable.images(batch)
            count += n
        return {name: total / max(count, 1) for name, total in sums.items()}, images

    def _end_epoch(self) -> None:
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
        row = {
            "epoch": state["epoch"],
            "step": state["step"],
            "train_loss": state["loss_sum"] / max(state["loss_count"], 1),
            **val,
            "lr": lr,
        }
        state["loss_sum"], state["loss_count"] = 0.0, 0
        state["history"] = [*state["history"], row]
        score = val.get(self.trainable.select, math.inf)
        improved = score < state["best"]
        if improved:
            state["best"] = score
        last = self.save("last.pt")
        if improved:  # the same state: best.pt is last.pt's file (one write instead of two)
            if ddp.is_main():
                link_or_copy(last, self.ckpt_dir / "best.pt")
            ddp.barrier()
        self._emit("on_epoch_end", row, images)
