"""The training loop shared by every trainable family: epochs over a Dataset, validation,
atomic checkpoints (`last.pt` every epoch, `best.pt` by a validation metric), exact resume, and
data-parallel training across torchrun processes (each rank takes its share of every global
batch; gradients are all-reduced; batch norm uses the global batch; rank 0 validates and
writes). Logging, metrics.csv, TensorBoard, the progress bar, the time budget and Ctrl-C are
hooks (mrirecon.training.callbacks). It knows nothing about MRI or any model: the `Trainable` supplies
the loss and the validation. Batches are `mrirecon.data.batch.Batch`es (`collate` joins the
datasets' items).

Randomness: every draw of a step comes from streams named by (seed, rank, step)
(mrirecon.training.streams): the step's generator, handed to the loss (holdouts, noise, augmentations),
and the global torch / numpy / random state, reseeded before each step (dropout). The data
order is a function of (seed, epoch) and the DataLoader has its own generator. So a resumed run
repeats every draw without saved RNG state, and ranks draw independently.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sized
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset

from mrirecon.data.batch import Batch, collate
from mrirecon.errors import UserError
from mrirecon.io.checkpoint_entries import FORMAT
from mrirecon.io.files import link_or_copy, load_checkpoint, save_checkpoint
from mrirecon.io.locks import remove_temporaries
from mrirecon.training import distributed as ddp
from mrirecon.training import streams
from mrirecon.training.callbacks import BUDGET, INTERRUPT, Callback
from mrirecon.training.loader import epoch_batches, train_loader
from mrirecon.training.schedules import restore_position
from mrirecon.training.settings import Settings
from mrirecon.training.trainables.base import Trainable

log = logging.getLogger(__name__)
RESTART = "start the run anew (without train.resume, or with overwrite=true in its run dir)"


class Trainer:
    """Fit `trainable` by minimising its loss over `train_set`, validating on `val_set` each epoch.

    Args:
        trainable: what is trained (its `module` is optimised and checkpointed, its
            `checkpoint_state()` stored in every checkpoint, with the checkpoint FORMAT).
        optimizer, scheduler: torch optimizer and optional epoch-wise LR scheduler.
        train_set, val_set: items (batches of one slice), joined by `collate`.
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
        train_set: Dataset[Batch],
        val_set: Dataset[Batch],
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
        self.steps_per_epoch = math.ceil(_length(train_set) / settings.batch_size)
        ddp.sync_batch_norm(self.model)  # batch statistics of the global batch (shares the parameters)
        self._check_shares()
        self.state: dict[str, Any] = {
            "epoch": 0,
            "batch": 0,
            "batch_size": settings.batch_size,  # of the batches counted by "batch"
            "step": 0,
            "best": math.inf,
            "best_by": trainable.select,  # the validation metric that chooses best.pt
            "world_size": ddp.world_size(),
            "history": [],
            # training wall-clock seconds of the runs that made this state (resumes added; None
            # when a run it resumed did not record them)
            "seconds": 0.0,
            "loss_sum": 0.0,
            "loss_count": 0,
        }
        self._clock = time.monotonic()  # of the last count of state["seconds"]

    def _check_shares(self) -> None:
        """Refuse (UserError) a data-parallel run in which some rank would get no item of a batch
        while the model needs every rank in every step (batch norm over the global batch)."""
        if not ddp.needs_every_rank(self.model):
            return
        n, size, ranks = _length(self.train_set), self.settings.batch_size, ddp.world_size()
        smallest = min(n % size or size, n, size)
        if smallest < ranks:
            raise UserError(
                f"train.batch_size: {size} over {n} training slices gives a batch of {smallest} slice(s), "
                f"fewer than the {ranks} processes, and this model's batch norm (or ActNorm initialisation) "
                "needs a share of every batch on every process: choose a batch size whose batches, the "
                f"last one included, hold at least {ranks} slices"
            )

    # -- checkpoints ---------------------------------------------------------------------
    def _checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "state": dict(self.state),
            "config": self.config,
            "format": FORMAT,
            **self.trainable.checkpoint_state(),
            **self.extra,
        }

    def _count_seconds(self) -> None:
        """Add the wall-clock time since the last count (or the fit's start) to state["seconds"]."""
        now = time.monotonic()
        if self.state["seconds"] is not None:
            self.state["seconds"] += now - self._clock
        self._clock = now

    def save(self, name: str) -> Path:
        """Write checkpoints/<name> (rank 0 only; every rank waits for it)."""
        self._count_seconds()
        path = self.ckpt_dir / name
        if ddp.is_main():
            save_checkpoint(path, self._checkpoint())
        ddp.barrier()
        return path

    def resume(self, path: Path) -> None:
        """Restore model, optimizer state and the loop position from `path` (no RNG state: every
        draw is a function of seed, rank and step). The rule for settings: this run's learning
        rate and schedule (lr, step_lr, the flow's cosine over epochs) apply from the resumed
        epoch on, whatever the checkpoint's run used; a batch size other than the checkpoint's is
        refused when it stopped mid-epoch (the epoch's remaining slices are counted in its batches)."""
        ckpt = load_checkpoint(path, "train.resume", self.settings.trust_checkpoint, RESTART)
        self._check_batch_size(path, ckpt)
        configured = [group.get("initial_lr", group["lr"]) for group in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise UserError(f"train.resume: {path} does not match this model ({first})") from None
        self._adopt_state(ckpt["state"])
        if isinstance(self.scheduler, LambdaLR):  # closed form: this run's schedule at the resumed epoch
            restore_position(self.scheduler, self.optimizer, self.state["epoch"])
        elif self.scheduler is not None and ckpt.get("scheduler") is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        elif self.scheduler is None:  # a constant rate: this run's
            for group, rate in zip(self.optimizer.param_groups, configured):
                group["lr"] = rate
                group.pop("initial_lr", None)
        log.info(
            "resumed from %s at epoch %d, step %d (learning rate %.3g)",
            path,
            self.state["epoch"],
            self.state["step"],
            self.optimizer.param_groups[0]["lr"],
        )

    def _check_batch_size(self, path: Path, ckpt: dict[str, Any]) -> None:
        """Refuse (UserError) another batch size than the checkpoint's when it stopped mid-epoch."""
        saved, config = _section(ckpt, "state"), _section(ckpt, "config")
        size, done = saved.get("batch_size", _section(config, "train").get("batch_size")), int(saved.get("batch") or 0)
        if done and isinstance(size, int) and size != self.settings.batch_size:
            epoch = int(saved.get("epoch", 0)) + 1
            raise UserError(
                f"train.batch_size: {self.settings.batch_size}, but {path} stopped in the middle of epoch {epoch} "
                f"(after {done} of its batches of {size}): resume with train.batch_size={size}; a new batch size starts "
                f"with an epoch (finish this one first with train.batch_size={size} train.epochs={epoch})"
            )

    def _adopt_state(self, saved: dict[str, Any]) -> None:
        """The loop state of a checkpoint; its best score is kept only if it was chosen by this
        run's metric, and a different number of processes is logged (the draws depend on the rank)."""
        select, rows = self.trainable.select, saved.get("history", [])
        chosen_by = saved.get("best_by", select if rows and all(select in r for r in rows) else None)
        self.state = {**self.state, **saved, "best_by": select, "world_size": ddp.world_size()}
        self.state["seconds"] = saved.get("seconds")  # None: the resumed run did not count its time
        self.state["batch_size"] = self.settings.batch_size
        if chosen_by != select and math.isfinite(saved.get("best", math.inf)):
            log.warning(
                "best.pt was chosen by %s, this run chooses by %s: the next epoch starts over", chosen_by, select
            )
            self.state["best"] = math.inf
        if saved.get("world_size", 1) != ddp.world_size():
            log.warning(
                "resuming a run of %d process(es) with %d: the random draws of the remaining steps differ "
                "from an uninterrupted run's (they depend on the rank)",
                saved.get("world_size", 1),
                ddp.world_size(),
            )

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
            # checkpoint itself half-written): this run dir is ours now, remove mrirecon's
            if ddp.is_main():
                remove_temporaries(self.ckpt_dir)
        s = self.settings
        self._clock = time.monotonic()
        self._emit("on_fit_start")
        try:
            while self.state["epoch"] < s.epochs:
                epoch = self.state["epoch"]
                self._emit("on_epoch_start")
                batches = epoch_batches(_length(self.train_set), s.batch_size, s.seed, epoch)[self.state["batch"] :]
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

    def _local_batches(self, batches: list[list[int]]) -> Iterator[tuple[Batch | None, float]]:
        """(batch on device or None, this rank's share of the global batch) for each global
        batch; a rank whose share is empty (a short last batch) gets None."""
        mine, s = [ddp.shard(b) for b in batches], self.settings
        position = (ddp.rank(), self.state["epoch"], self.state["batch"])
        loader = iter(
            train_loader(self.train_set, [m for m in mine if m], s.num_workers, s.seed, position, self.device)
        )
        for items, global_items in zip(mine, batches):
            yield (next(loader).to(self.device) if items else None), len(items) / len(global_items)

    def _step(self, batch: Batch | None, share: float = 1.0) -> float:
        """One optimisation step on this rank's `batch` (None: nothing to contribute), which
        holds `share` of the global batch's items. Returns the global batch's mean loss."""
        step, seed, rank = self.state["step"], self.settings.seed, ddp.rank()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        streams.seed_globals(streams.stream_seed(seed, streams.GLOBAL, rank, step))  # dropout and other global draws
        local = 0.0
        if batch is not None:
            loss = self.trainable.loss(batch, streams.generator(seed, streams.DRAWS, rank, step))
            local = float(loss.detach())
            # weighted before backward: gradients through synchronised batch norm reach every rank
            (share * loss).backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        ddp.reduce_gradients(params, 1.0, self.device)
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
        for batch in DataLoader(self.val_set, batch_size=self.settings.val_batch_size, collate_fn=collate):
            batch = batch.to(self.device)
            n = batch.size
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
        val: dict[str, float] = {}
        images: dict[str, np.ndarray] = {}
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
            "best_by": state["best_by"],
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


def _section(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    """mapping[key] when it is a dict, else {} (a checkpoint's optional sections)."""
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def _length(dataset: Dataset[Any]) -> int:
    """The number of items of a map-style dataset (every dataset mrirecon trains on has one)."""
    return len(cast(Sized, dataset))
