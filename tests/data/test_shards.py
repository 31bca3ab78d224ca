"""data/shards.py: splits by a hash of the subject id (stable, fractions honoured over many
subjects), and the refusals of a dataset folder whose index and files disagree."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mrirecon.data.shards import INDEX, DatasetFolder, hash_splits, part_name, subject_split
from mrirecon.errors import UserError


def test_subject_split_depends_on_the_id_alone_and_honours_the_fractions():
    """Null simulation: 20,000 ids land in test / val with the asked fractions (binomial std
    ~0.003), and an id's split does not change when other subjects are added."""
    ids = [f"file:knee{i:05d}" for i in range(20_000)]
    splits = [subject_split(i, 0.15, 0.2) for i in ids]
    assert abs(splits.count("test") / len(ids) - 0.2) < 0.012
    assert abs(splits.count("val") / len(ids) - 0.15) < 0.012
    few = hash_splits(np.arange(10).repeat(2), ids[:10], 0.15, 0.2)
    more = hash_splits(np.arange(30).repeat(2), ids[:30], 0.15, 0.2)
    for name in few:  # the first ten subjects' slices (0..19) stay in their splits
        assert few[name].tolist() == [i for i in more[name].tolist() if i < 20]
    with pytest.raises(ValueError, match="val_fraction"):
        subject_split("a", 1.5, 0.0)


def test_hash_splits_never_cut_a_subject():
    subjects = np.array([0, 0, 1, 1, 1, 2, 3, 3])
    splits = hash_splits(subjects, ["a", "b", "c", "d"], 0.3, 0.3)
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(8))
    for name, idx in splits.items():
        for s in np.unique(subjects[idx]):
            assert set(np.flatnonzero(subjects == s)) <= set(idx.tolist()), (name, s)


def test_part_names():
    from pathlib import Path

    assert part_name(Path("/a/file1.h5")) == "file1.h5"
    assert part_name(Path("/a/scan.cfl")) == "scan.h5"
    assert part_name(Path("/a/k.npy")) == "k.h5"


def test_a_folder_without_index_or_with_a_foreign_one_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"without index.json, not a dataset folder"):
        DatasetFolder(tmp_path)
    (tmp_path / INDEX).write_text(json.dumps({"files": []}))
    with pytest.raises(UserError, match=r"index.json: not an index written by mrirecon preprocess"):
        DatasetFolder(tmp_path)
