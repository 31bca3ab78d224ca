"""The training loop's settings (mrirecon.training.trainer.Trainer), from `train` and `hardware`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    """Loop settings.

    Args:
        epochs: passes over the training set.
        batch_size: slices per step.
        seed: seeds the data order (per epoch) and every random stream (with rank and step).
        grad_clip: clip the gradient norm to this (None: off).
        max_minutes: stop cleanly, with a checkpoint, after this many minutes (None: no limit;
            enforced by the callbacks.TimeBudget hook).
        num_workers: DataLoader worker processes.
        val_batch_size: slices per validation batch.
        trust_checkpoint: resume also from a checkpoint that only an unsafe pickle load reads
            (mrirecon.io.files.load_checkpoint); only for files from a trusted source.
    """

    epochs: int
    batch_size: int
    seed: int = 723
    grad_clip: float | None = None
    max_minutes: float | None = None
    num_workers: int = 0
    val_batch_size: int = 4
    trust_checkpoint: bool = False
