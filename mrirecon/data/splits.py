"""Disjoint train / val / test splits of slice indices."""

from __future__ import annotations

import numpy as np

from mrirecon.errors import UserError


def make_splits(num_slices: int, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """Contiguous, disjoint blocks: train first, then val, then test.

    Slices of one subject are stored next to each other in DeepInPy files, so contiguous blocks
    keep subjects (almost always) on one side. Each of val and test gets at least one slice
    when its fraction is positive and there are at least three slices.
    """
    for name, frac in (("data.val_fraction", val_fraction), ("data.test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise UserError(f"{name}: {frac} is not in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise UserError("data.val_fraction + data.test_fraction must be < 1 to leave training slices")

    def count(frac: float) -> int:
        k = int(round(num_slices * frac))
        return max(k, 1) if frac > 0 and num_slices >= 3 else k

    n_test, n_val = count(test_fraction), count(val_fraction)
    n_train = num_slices - n_val - n_test
    idx = np.arange(num_slices)
    return {
        "train": idx[:n_train],
        "val": idx[n_train : n_train + n_val],
        "test": idx[n_train + n_val :],
    }
