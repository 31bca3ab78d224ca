"""Epoch-wise learning-rate schedules in closed form: the rate of epoch e is the initial rate
times a factor of e alone (torch's LambdaLR), so a resumed run that changes the number of epochs
or the schedule's settings follows the new schedule from where it stopped. Knows nothing about
MRI or models."""

from __future__ import annotations

import math
from functools import partial

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
