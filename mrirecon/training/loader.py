"""The DataLoader of training: given batches of item indices, read in worker processes, with a
generator from the run's named streams; items are `Batch`es joined by `collate`."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from mrirecon.data.batch import Batch, collate
from mrirecon.training import streams


def train_loader(
    dataset: Dataset[Batch],
    batches: list[list[int]],
    num_workers: int,
    seed: int,
    position: tuple[int, ...],
    device: torch.device,
) -> DataLoader[Batch]:
    """The DataLoader of training: exactly `batches` (lists of item indices) in order, read by
    `num_workers` worker processes (0: in this process), each a batch at a time, two batches
    ahead per worker; its generator is the stream (seed, LOADER, *position), e.g. (rank,
    epoch, batch). Items are fetched by index and augmented later (from the step's own stream),
    so the batches and every draw are the same for any number of workers. Batches for a CUDA
    `device` come in pinned memory (their copy to the GPU overlaps the step)."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=streams.generator(seed, streams.LOADER, *position),
    )


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled batches of one epoch: a function of (seed, epoch) only, so resume repeats them."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
