"""Sharded preprocess (tasks/preprocess_shards.py) in-process on tiny raw files: shards written
by separate jobs make a dataset folder equal to the single file of the same files; the index
lists only complete files of the same settings; files added keep the others' splits and are the
only ones processed; bad keys are one-line errors; and, end to end on the CLI (slow), a joblib
sweep of shards -> reconstruct -> evaluate gives the single file's tables."""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest
from helpers import TESTS, run_cli, tiny_arrays, write_h5

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.shards import INDEX, DatasetFolder
from mrirecon.errors import UserError
from mrirecon.io.provenance import content_id


def run(*overrides: str):
    from hydra import compose, initialize_config_dir

    from mrirecon.cli.app import config_dir
    from mrirecon.tasks import preprocess

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("preprocess", ["data=full", *overrides])
    return preprocess.run(cfg)


def raw_files(folder, n=4, slices=3):
    folder.mkdir(exist_ok=True)
    return [write_h5(folder / f"s{k}.h5", tiny_arrays(n=slices, seed=k)) for k in range(n)]


def sharded(tmp_path, *extra, shards=2, shard=None):
    args = [f"data.source={tmp_path / 'raw'}", f"data.path={tmp_path / 'ds'}", f"data.shards={shards}", *extra]
    return run(*args, *([] if shard is None else [f"data.shard={shard}"]))


def test_shards_make_the_dataset_of_the_single_file(tmp_path):
    """Two shard jobs write four raw files into the folder; before the second it is refused as
    incomplete (naming the shard to run); after it, it reads as the single file of the same
    files: the same slices, subjects and volumes (variant full keeps the acquired k-space)."""
    raw_files(tmp_path / "raw")
    sharded(tmp_path, shard=0)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [INDEX, "s0.h5", "s2.h5"]
    with pytest.raises(UserError, match=r"incomplete: 2 of 4 raw files.*data.shards=2 data.shard=1"):
        DatasetFolder(tmp_path / "ds")
    sharded(tmp_path, shard=1)
    folder = DatasetFolder(tmp_path / "ds")
    single = DeepInPyFile(run(f"data.source={tmp_path / 'raw'}", f"data.path={tmp_path / 'one.h5'}"))
    assert folder.num_slices == single.num_slices == 12
    assert folder.subjects().tolist() == single.subjects().tolist() == np.repeat([0, 1, 2, 3], 3).tolist()
    assert folder.volumes().tolist() == single.volumes().tolist()
    for i in range(12):
        a, b = folder.read(i), single.read(i)
        assert np.array_equal(a.ksp, b.ksp) and np.array_equal(a.maps, b.maps) and np.array_equal(a.mask, b.mask)
        assert a.noise_std == b.noise_std and folder.acquired(i) == single.acquired(i)
    splits = folder.splits()
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(12))
    assert folder.header.variant == single.header.variant and folder.split_indices("all").tolist() == list(range(12))
    ids = json.loads(folder.header.source_attrs["subject_ids"])
    assert ids == [f"file:s{k}" for k in range(4)]


def test_added_files_keep_the_splits_and_only_they_are_processed(tmp_path):
    files = raw_files(tmp_path / "raw")
    sharded(tmp_path, "data.val_fraction=0.3", "data.test_fraction=0.3")
    before = DatasetFolder(tmp_path / "ds")
    split_of = {int(s): n for n, idx in before.splits().items() for s in before.subjects()[idx]}
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ds").glob("s*.h5")}
    old_id = content_id(tmp_path / "ds")
    for k in range(4, 10):
        write_h5(tmp_path / "raw" / f"s{k}.h5", tiny_arrays(n=3, seed=k))
    sharded(tmp_path, "data.val_fraction=0.3", "data.test_fraction=0.3")
    after = DatasetFolder(tmp_path / "ds")
    assert after.num_slices == 30 and content_id(tmp_path / "ds") != old_id
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ds").glob("s*.h5") if p.name in stamps} == stamps
    again = {int(s): n for n, idx in after.splits().items() for s in after.subjects()[idx] if s < 4}
    assert again == split_of
    assert {n for n, idx in after.splits().items() if len(idx)} == {"train", "val", "test"}
    assert len(files) == 4


def test_a_failed_shard_leaves_no_file_and_the_index_lists_only_complete_ones(tmp_path):
    raw_files(tmp_path / "raw", n=2)
    (tmp_path / "raw" / "s2.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(UserError, match=r"s2.h5: not HDF5"):
        sharded(tmp_path, shards=3, shard=2)
    assert not (tmp_path / "ds").exists()  # the folder it made, empty, removed
    with pytest.raises(UserError, match=r"s2.h5: not HDF5"):
        sharded(tmp_path, shards=1)  # s0, s1 written, then s2 fails
    index = json.loads((tmp_path / "ds" / INDEX).read_text())
    assert sorted(index["parts"]) == ["s0.h5", "s1.h5"]
    assert sorted(p.name for p in (tmp_path / "ds").iterdir() if not p.name.startswith(".")) == [
        INDEX,
        "s0.h5",
        "s1.h5",
    ]
    with pytest.raises(UserError, match=r"incomplete: 1 of 3 raw files not processed yet \(s2.h5\)"):
        DatasetFolder(tmp_path / "ds")
    (tmp_path / "raw" / "s2.h5").unlink()
    sharded(tmp_path, shards=1)  # nothing to process: the index now names the two raw files left
    assert DatasetFolder(tmp_path / "ds").num_slices == 6
    (tmp_path / "ds" / "s1.h5").write_bytes(b"edited")  # the index lists no file it did not write
    with pytest.raises(UserError, match=r"s1.h5 was changed after preprocess wrote it: rerun"):
        DatasetFolder(tmp_path / "ds")


def test_foreign_files_and_other_settings_are_refused_unless_overwrite(tmp_path):
    raw_files(tmp_path / "raw", n=2)
    (tmp_path / "ds").mkdir()
    write_h5(tmp_path / "ds" / "s1.h5", {"x": np.zeros(2)})
    with pytest.raises(UserError, match=r"data.path: .*s1.h5 exists and was not written by mrirecon"):
        sharded(tmp_path, shards=1)
    sharded(tmp_path, "overwrite=true", shards=1)
    with pytest.raises(UserError, match=r"other settings \(data.espirit.thresh: 0.02 there, 0.05 now\)"):
        sharded(tmp_path, "data.espirit.thresh=0.05", shards=1)
    with pytest.raises(UserError, match=r"other settings \(data.shards: 1 there, 2 now\)"):
        sharded(tmp_path, shards=2)
    (tmp_path / "ds" / INDEX).write_text("{}")
    with pytest.raises(UserError, match=r"index.json exists and was not written by mrirecon preprocess"):
        sharded(tmp_path, shards=1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.shard=1"], r"^data.shard: 1 needs data.shards"),
        (["data.shards=2", "data.shard=2"], r"^data.shard: 2 must be null \(every shard\) or an integer in 0..1"),
        (["data.shards=0"], r"^data.shards: 0 must be null"),
        (["data.shards=2", "data.source=sample"], r"^data.source: 'sample' is a named source"),
    ],
)
def test_bad_shard_keys_are_one_line_errors(tmp_path, overrides, message):
    raw_files(tmp_path / "raw", n=1)
    with pytest.raises(UserError, match=message):
        run(f"data.source={tmp_path / 'raw'}", f"data.path={tmp_path / 'ds'}", *overrides)
    assert not (tmp_path / "ds").exists()


def metric_rows(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


@pytest.mark.slow
def test_sharded_preprocess_reconstruct_evaluate_equal_the_single_file(tmp_path):
    """CLI end to end on four fastMRI files: a joblib sweep of 2 shards into a folder, then
    reconstruct (every slice) and evaluate give the single file's metrics and table."""
    sys.path.insert(0, str(TESTS))
    from formats_helpers import oversampled_coils, write_fastmri

    (tmp_path / "raw").mkdir()
    for k in range(4):
        write_fastmri(tmp_path / "raw" / f"file{k}.h5", oversampled_coils(2, seed=k), (32, 32), padding=(4, 44))
    common = ["data=full", "data.source=raw", "data.espirit.calib_width=12", "data.mask=fastmri_random"]
    common += ["data.undersampling.accel=4", "hardware.threads=1"]
    env = {"OMP_NUM_THREADS": "1"}
    res = run_cli(
        "preprocess", "-m", *common, "data.path=ds", "data.shards=2", "data.shard=0,1", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2", "hydra.sweep.dir=shards", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = run_cli("preprocess", *common, "data.path=one.h5", "hydra.run.dir=one", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    for name in ("ds", "one.h5"):
        res = run_cli(
            "reconstruct", "data=full", f"data.path={name}", "data.split=all", "method=cg_sense",
            f"hydra.run.dir=rec_{name}", cwd=tmp_path, env=env,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        res = run_cli("evaluate", f"runs=[rec_{name}]", f"hydra.run.dir=eval_{name}", cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
    assert metric_rows(tmp_path / "rec_ds" / "metrics.csv") == metric_rows(tmp_path / "rec_one.h5" / "metrics.csv")
    keep = ("variant", "method", "slices", "subjects", "nrmse_mean", "psnr_mean", "ssim_mean")
    tables = [
        [{k: r[k] for k in keep} for r in csv.DictReader(open(tmp_path / f"eval_{n}" / "results.csv"))]
        for n in ("ds", "one.h5")
    ]
    assert tables[0] == tables[1] and len(tables[0]) == 1
    assert (tmp_path / "ds" / INDEX).is_file() and os.path.isdir(tmp_path / "shards" / "1")
