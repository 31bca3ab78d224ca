"""Epoch-wise learning-rate schedules in closed form: the rate of epoch e is the initial rate
times a factor of e alone (torch's LambdaLR), so a resumed run that changes the number of epochs
or the schedule's settings follows the new schedule from where it stopped. Knows nothing about
MRI or models."""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR


def _cosine(epochs: int, epoch: int) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs))


def _step(step_size: int, gamma: float, epoch: int) -> float:
    return gamma ** (epoch // step_size)


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: int) -> LambdaLR:
    """Cosine annealing from the initial rate to 0 over `epochs` (>= 1) epochs, then 0."""
    if epochs < 1:
        raise ValueError(f"epochs: {epochs} must be >= 1")
    return LambdaLR(optimizer, partial(_cosine, int(epochs)))


def step_schedule(optimizer: torch.optim.Optimizer, step_size: int, gamma: float) -> LambdaLR:
    """The initial rate times gamma every `step_size` (>= 1) epochs (torch's StepLR in closed form)."""
    if step_size < 1:
        raise ValueError(f"step_size: {step_size} must be >= 1")
    return LambdaLR(optimizer, partial(_step, int(step_size), float(gamma)))


def schedule(
    optimizer: torch.optim.Optimizer, epochs: int, step_lr: Mapping[str, Any] | None, cosine_lr: bool
) -> LambdaLR | None:
    """The schedule of a run: cosine annealing over `epochs` (`cosine_lr`), the initial rate times
    gamma every step_size epochs (`step_lr`: {step_size, gamma}), or None (a constant rate);
    ValueError naming cosine_lr when both are asked for."""
    if cosine_lr and step_lr:
        raise ValueError(
            "cosine_lr: true, and step_lr is set too: choose one schedule (step_lr=null or cosine_lr=false)"
        )
    if cosine_lr:
        return cosine_schedule(optimizer, epochs)
    if step_lr:
        return step_schedule(optimizer, int(step_lr["step_size"]), float(step_lr["gamma"]))
    return None


def restore_position(scheduler: LambdaLR, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    """Put a schedule built from this run's config at `epoch` (the epochs done, e.g. a resumed
    checkpoint's) and set the optimizer's rates to the schedule's closed-form rates there: the
    position comes from the checkpoint, the shape (initial rate, epochs, step size, gamma) from
    the config, whatever schedule or rate the checkpoint's run had."""
    scheduler.last_epoch = int(epoch)
    scheduler._step_count = int(epoch) + 1
    rates = [base * factor(scheduler.last_epoch) for base, factor in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    for group, base, rate in zip(optimizer.param_groups, scheduler.base_lrs, rates):
        group["initial_lr"], group["lr"] = base, rate
    scheduler._last_lr = rates
