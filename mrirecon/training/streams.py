"""Named random streams: one seed per (run seed, purpose, rank, step, ...), so that every draw of
a training run is a function of where it happens and nothing else.

A resumed run therefore repeats its draws without any saved RNG state, and data-parallel ranks
draw independently (the rank is part of every key). Seeds come from numpy's SeedSequence, which
hashes the whole key: nearby keys give unrelated streams. Knows nothing about MRI or models.
"""

from __future__ import annotations

import random

import numpy as np
import torch

# purposes (the second element of a key)
DRAWS = 0  # the step's generator: holdouts, noise, augmentations, dequantisation
GLOBAL = 1  # the global torch / numpy / random state of a step (dropout and anything else unseeded)
LOADER = 2  # the DataLoader's own generator (worker seeds)
VALIDATION = 3  # fixed validation draws (e.g. the held-out samples of a validation slice)


def stream_seed(seed: int, purpose: int, *keys: int) -> int:
    """A 64-bit seed for the stream (seed, purpose, *keys); distinct keys give independent streams.

    Args:
        seed: the run's seed (any integer; negative values are taken modulo 2**64).
        purpose: DRAWS, GLOBAL, LOADER or VALIDATION.
        keys: non-negative integers, e.g. rank and step.
    """
    entropy = [int(seed) % 2**64, int(purpose), *(int(k) for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def generator(seed: int, purpose: int, *keys: int) -> torch.Generator:
    """A CPU torch.Generator on the stream (seed, purpose, *keys)."""
    return torch.Generator().manual_seed(stream_seed(seed, purpose, *keys))


def seed_globals(seed: int) -> None:
    """Seed torch (every device), numpy's and Python's global generators from one 64-bit seed."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
