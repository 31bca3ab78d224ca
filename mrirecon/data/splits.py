"""Subjects of slices, and train / val / test splits that never cut a subject."""

from __future__ import annotations

import numpy as np

from mrirecon.data.header import SPLITS


def subjects_of(num_slices: int, slices_per_subject: int | None) -> np.ndarray:
    """The subject of each slice (N,) int64 when every subject's slices are stored together:
    consecutive blocks of `slices_per_subject` slices; None: every slice is its own subject.

    Raises ValueError when `num_slices` is not a multiple of `slices_per_subject`.
    """
    if slices_per_subject is None:
        return np.arange(num_slices, dtype=np.int64)
    if isinstance(slices_per_subject, bool) or not isinstance(slices_per_subject, int) or slices_per_subject < 1:
        raise ValueError(f"slices_per_subject must be an integer >= 1, got {slices_per_subject!r}")
    if num_slices % slices_per_subject:
        raise ValueError(f"{num_slices} slices are not a whole number of subjects of {slices_per_subject} slices")
    return np.arange(num_slices, dtype=np.int64) // slices_per_subject


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """ValueError naming the fraction unless both are numbers in [0, 1) with a sum below 1."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 <= frac < 1:
            raise ValueError(f"{name}: {frac!r} is not a number in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise ValueError("val_fraction + test_fraction must be < 1 to leave training subjects")


def split_counts(num_subjects: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Numbers of (train, val, test) subjects that `make_splits` makes: round(n * fraction) each
    for val and test, at least one when the fraction is positive and n >= 3; train the rest
    (it may be 0 or less: make_splits refuses that)."""

    def count(frac: float) -> int:
        k = round(num_subjects * frac)
        return max(k, 1) if frac > 0 and num_subjects >= 3 else k

    n_val, n_test = count(val_fraction), count(test_fraction)
    return num_subjects - n_val - n_test, n_val, n_test


def make_splits(subjects: np.ndarray, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """Disjoint train / val / test slice indices made of whole subjects.

    Subjects are taken in order of first appearance: the first ones train, then val, then test
    (contiguous blocks, as subjects are stored one after the other). Each of val and test gets
    at least one subject when its fraction is positive and there are at least three subjects.
    Raises ValueError when no subject is left to train.

    Args:
        subjects: the subject of each slice (N,).
        val_fraction, test_fraction: fractions of the subjects, each in [0, 1), sum < 1.
    """
    check_fractions(val_fraction, test_fraction)
    subjects = np.asarray(subjects).reshape(-1)
    _, first = np.unique(subjects, return_index=True)
    order = subjects[np.sort(first)]
    n_train, n_val, _ = split_counts(len(order), val_fraction, test_fraction)
    if n_train <= 0:
        raise ValueError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} leave no training subject "
            f"among {len(order)} subjects"
        )
    groups = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {name: np.flatnonzero(np.isin(subjects, members)) for name, members in groups.items()}


def check_splits(splits: dict[str, np.ndarray], subjects: np.ndarray) -> None:
    """Raise ValueError when a subject has slices in two splits, or the splits overlap."""
    seen: dict[int, str] = {}
    used: set[int] = set()
    for name in SPLITS:
        indices = np.asarray(splits[name]).reshape(-1)
        if used.intersection(indices.tolist()):
            raise ValueError(f"split '{name}' shares slices with another split")
        used.update(indices.tolist())
        for subject in np.unique(subjects[indices]).tolist():
            if seen.setdefault(subject, name) != name:
                raise ValueError(f"subject {subject} has slices in both the '{seen[subject]}' and '{name}' splits")
