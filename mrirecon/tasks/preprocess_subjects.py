"""preprocess's subjects, volumes and splits: which slices belong together (a subject: never cut
by a split; a volume: the unit of per-volume metrics) and the train / val / test splits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mrirecon.data.source import MultiSource
from mrirecon.data.splits import check_fractions, check_splits, make_splits, split_counts, subjects_of
from mrirecon.errors import UserError

log = logging.getLogger(__name__)


def source_subjects(cfg: DictConfig, source: Any) -> np.ndarray:
    """The subject of every slice: recorded by the source (several files: patient IDs, the files'
    own subjects, blocks of data.slices_per_subject, else one per file), else blocks of
    data.slices_per_subject slices, else one per slice."""
    per_subject = cfg.data.slices_per_subject
    try:
        subjects = source.subjects()
    except ValueError as exc:  # several files: one is not a whole number of subjects
        raise UserError(f"data.{exc}") from None
    if isinstance(source, MultiSource):
        rules = sorted(set(source.subject_rules))
        log.info(
            "%s: %d subjects from %d files (%s)",
            source.path,
            len(np.unique(subjects)),
            len(source.sources),
            ", ".join(rules),
        )
        if per_subject is not None and "slices_per_subject" not in rules:
            log.warning("every file records its subjects: data.slices_per_subject=%s is ignored", per_subject)
        return subjects
    if subjects is not None:
        if per_subject is not None:
            log.warning(
                "%s records the subject of every slice: data.slices_per_subject=%s is ignored", source.path, per_subject
            )
        return subjects
    try:
        subjects = subjects_of(len(source), per_subject)
    except ValueError as exc:
        raise UserError(f"data.slices_per_subject: {exc} ({source.path})") from None
    if per_subject is None and len(source) > 50:
        log.warning(
            "%s does not record subjects: every slice is taken as its own subject, so a split can "
            "cut a volume; set data.slices_per_subject (e.g. 320 for whole 3D knee volumes)",
            source.path,
        )
    return subjects


def source_volumes(source: Any, subjects: np.ndarray) -> np.ndarray:
    """The source volume of every slice: a file's own volumes when several files are read (two
    files of one patient: two volumes of one subject), those a processed file records, else the
    subjects. The unit of fastMRI's per-volume metrics (`evaluate level=volume`)."""
    volumes = source.volumes() if callable(getattr(source, "volumes", None)) else None
    return subjects if volumes is None else np.asarray(volumes, dtype=np.int64)


def new_splits(cfg: DictConfig, subjects: np.ndarray) -> dict[str, np.ndarray]:
    """Splits of whole subjects by data.val_fraction and data.test_fraction: refused when no
    subject is left to train, a warning when val or test gets none."""
    val, test = cfg.data.val_fraction, cfg.data.test_fraction
    n = len(np.unique(subjects))
    try:
        check_fractions(val, test)
    except ValueError as exc:
        raise UserError(f"data.{exc}") from None
    counts = split_counts(n, val, test)
    if counts[0] <= 0:
        raise UserError(
            f"data.val_fraction={val}, data.test_fraction={test}: of {n} subjects {counts[1]} go to val and "
            f"{counts[2]} to test, none is left to train (lower the fractions, or add subjects)"
        )
    splits = make_splits(subjects, val, test)
    if (val > 0 and counts[1] == 0) or (test > 0 and counts[2] == 0):
        log.warning(
            "data.val_fraction=%s, data.test_fraction=%s with %d subject(s): %d train / %d val / %d test subjects; "
            "an empty split cannot be reconstructed (data.split=all uses every slice)",
            val,
            test,
            n,
            *counts,
        )
    return splits


def subjects_and_splits(
    cfg: DictConfig, source: Any, splitter: Callable[[Any, np.ndarray], dict[str, np.ndarray]] | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The subject of every slice (`source_subjects`) and the train/val/test splits, which never
    cut a subject: `splitter(source, subjects)` when given (a sharded preprocess: by a hash of
    the subject ids), else splits stored in the source (checked), else made from whole subjects."""
    subjects = source_subjects(cfg, source)
    if splitter is not None:
        return subjects, splitter(source, subjects)
    splits = source.splits()
    if splits is None:
        return subjects, new_splits(cfg, subjects)
    try:
        check_splits(splits, subjects)
    except ValueError as exc:
        raise UserError(f"data.source: {source.path} stores splits that cut a subject ({exc})") from None
    return subjects, splits
