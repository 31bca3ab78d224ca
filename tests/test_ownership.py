"""Nothing the user has is lost: every subcommand replaces only the files it wrote itself (the run
dir's record, the HDF5 producer attribute), a failed run leaves the folder as it was, a second
process into the same place is refused naming the holder, a symbolic link is written through,
and what a killed run left is removed by the next run (mrirecon/io/ownership.py, locks.py).

The CLI runs in this process (tests/helpers.run_main): a tiny processed file, zero-filling."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import fake_run, files_under, refused, run_cli, run_main, tiny_arrays, write_h5

from mrirecon.data.h5 import producer
from mrirecon.io.locks import folder_lock
from mrirecon.io.ownership import RECORD, owner

FAST = ("hardware.threads=1",)
RECON = ("reconstruct", "method=zero_filled", "data=full", "data.split=all", *FAST)
TRAIN = ("train", "method=dbp", "model=resnet", "data=full", "model.channels=4", "model.num_blocks=1",
         "method.num_unrolls=1", "method.cg_max_iter=2", "train.epochs=1", "train.batch_size=4", *FAST)  # fmt: skip


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path below `root`: a file's bytes, or None for a folder."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


@pytest.fixture
def processed(tmp_path: Path, capsys, monkeypatch) -> Path:
    """A processed file of preprocess (6 slices, 4 coils, 32 x 24), its run dir tmp_path/prep."""
    monkeypatch.chdir(tmp_path)
    source = write_h5(tmp_path / "source.h5", tiny_arrays())
    path = tmp_path / "processed.h5"
    code, _, err = run_main(capsys, "preprocess", "data=full", f"data.source={source}", f"data.path={path}",
                            f"hydra.run.dir={tmp_path / 'prep'}", *FAST)  # fmt: skip
    assert code == 0, err
    return path


def reconstruct(capsys, data: Path, run: Path, *extra: str) -> tuple[int, str, str]:
    return run_main(capsys, *RECON, f"data.path={data}", f"hydra.run.dir={run}", *extra)


# ---------------------------------------------------------------------------- a failed run


def test_a_failed_run_leaves_the_users_folder_as_it_was(tmp_path: Path, capsys, monkeypatch) -> None:
    """The failed run's own traces (Hydra's .hydra/*.yaml and job log) go, the user's *.log and
    .hydra/ stay (they were deleted: every log and .hydra/ of a folder with nothing else)."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "notes"
    (folder / ".hydra").mkdir(parents=True)
    (folder / "notes.log").write_text("my lab notes\n")
    (folder / ".hydra" / "mine.yaml").write_text("mine: 1\n")
    before = tree(folder)
    code, _, err = run_main(capsys, "reconstruct", "method=cg_sense", f"data.path={tmp_path / 'missing.h5'}",
                            f"hydra.run.dir={folder}", *FAST)  # fmt: skip
    refused(code, err, "data.path", "missing.h5")
    assert tree(folder) == before


def test_a_failed_run_into_an_earlier_run_dir_keeps_its_record(processed: Path, tmp_path: Path, capsys) -> None:
    """Aimed at a preprocess run dir: its .hydra/ and log are as they were (Hydra had rewritten
    .hydra/config.yaml, and the clean-up deleted the run's record)."""
    prep = tmp_path / "prep"
    before = tree(prep)
    assert {".hydra/config.yaml", "preprocess.log", RECORD} <= set(before)
    code, _, err = reconstruct(capsys, tmp_path / "missing.h5", prep)
    refused(code, err, "data.path")
    assert tree(prep) == before


def test_a_new_run_dir_of_a_failed_run_is_removed_with_the_folders_made_for_it(tmp_path: Path, capsys) -> None:
    run = tmp_path / "outputs" / "day" / "run"
    code, _, err = reconstruct(capsys, tmp_path / "missing.h5", run)
    refused(code, err, "data.path")
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------- one writer at a time

HOLD = """
import sys
from pathlib import Path
from mrirecon.io.locks import Lock
lock = Lock(Path(sys.argv[1]), "mrirecon " + sys.argv[2])
lock.acquire("hydra.run.dir", sys.argv[1])
print("held", flush=True)
sys.stdin.read()
lock.release()
"""


@pytest.mark.parametrize("second", ["reconstruct", "train"])
def test_a_second_writer_into_a_run_dir_is_refused(processed: Path, tmp_path: Path, capsys, second: str) -> None:
    """While a train (or reconstruct) runs in a run dir, a second one there gets one line naming
    the holder, exit 2, and leaves the folder untouched (both ran: one silently lost)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder_lock(run)), "train"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = tree(run)
        args = [*RECON] if second == "reconstruct" else ["train", "data=full", "method=dbp", *FAST]
        code, _, err = run_main(capsys, *args, f"data.path={processed}", f"hydra.run.dir={run}")
        line = refused(code, err, "hydra.run.dir", str(run), "mrirecon train", f"pid {holder.pid}")
        assert f"on {socket.gethostname()}" in line
        assert tree(run) == before
    finally:
        holder.communicate("", timeout=30)
    code, _, err = reconstruct(capsys, processed, run)  # the holder is gone: the run dir is free
    assert code == 0, err and not folder_lock(run).exists()


def test_a_second_writer_of_a_data_path_is_refused(processed: Path, tmp_path: Path, capsys) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / ".processed.h5.lock"), "preprocess"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = processed.read_bytes()
        code, _, err = run_main(capsys, "preprocess", "data=full", f"data.source={tmp_path / 'source.h5'}",
                                f"data.path={processed}", f"hydra.run.dir={tmp_path / 'p2'}", *FAST)  # fmt: skip
        refused(code, err, "data.path", str(processed), "mrirecon preprocess", f"pid {holder.pid}")
        assert processed.read_bytes() == before and not (tmp_path / "p2").exists()
    finally:
        holder.communicate("", timeout=30)


# ---------------------------------------------------------------------------- whose file is it


def test_preprocess_refuses_another_subcommands_hdf5(processed: Path, tmp_path: Path, capsys) -> None:
    """A recon.h5 is mrirecon's, but reconstruct's: preprocess does not replace it."""
    code, _, err = reconstruct(capsys, processed, tmp_path / "rec", "figures=0")
    assert code == 0, err
    recon = tmp_path / "rec" / "recon.h5"
    before = recon.read_bytes()
    code, _, err = run_main(capsys, "preprocess", "data=full", f"data.source={tmp_path / 'source.h5'}",
                            f"data.path={recon}", f"hydra.run.dir={tmp_path / 'p2'}", *FAST)  # fmt: skip
    refused(code, err, "data.path", str(recon), "mrirecon reconstruct", "overwrite=true")
    assert recon.read_bytes() == before
    assert producer(recon) == "reconstruct" and producer(processed) == "preprocess"


def test_preprocess_writes_through_a_symlinked_data_path(processed: Path, tmp_path: Path, capsys) -> None:
    """data.path a symbolic link (e.g. to a bigger disk): the link stays, its target is rewritten
    (it was replaced by a regular file, leaving the target stale)."""
    store = tmp_path / "store"
    store.mkdir()
    processed.rename(store / "data.h5")
    link = tmp_path / "data.h5"
    link.symlink_to(store / "data.h5")
    code, _, err = run_main(capsys, "preprocess", "data=full", f"data.source={tmp_path / 'source.h5'}",
                            f"data.path={link}", f"hydra.run.dir={tmp_path / 'p2'}", "seed=5", *FAST)  # fmt: skip
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == store / "data.h5"
    with h5py.File(store / "data.h5") as f:
        assert f.attrs["mrirecon_subcommand"] == "preprocess"
    assert sorted(p.name for p in store.iterdir()) == ["data.h5"] and not (tmp_path / ".data.h5.lock").exists()
    record = json.loads((tmp_path / "p2" / RECORD).read_text())["files"]
    assert record == {str(store / "data.h5"): {"by": "preprocess", **record[str(store / "data.h5")]}}


def test_reconstruct_keeps_a_users_figure_and_its_other_files(processed: Path, tmp_path: Path, capsys) -> None:
    """A user's figures/slice_0000.png is refused (it was overwritten), replaced only with
    overwrite=true; figures of an earlier reconstruct that this run does not draw are removed,
    the user's other files never."""
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "slice_0000.png").write_bytes(b"my figure")
    (run / "figures" / "my_plot.png").write_bytes(b"mine")
    code, _, err = reconstruct(capsys, processed, run, "figures=3")
    refused(code, err, "hydra.run.dir", "figures/slice_0000.png", "overwrite=true")
    assert (run / "figures" / "slice_0000.png").read_bytes() == b"my figure"
    assert not (run / "recon.h5").exists() and not (run / "reconstruct.log").exists()
    code, _, err = reconstruct(capsys, processed, run, "figures=3", "overwrite=true")
    assert code == 0, err
    assert (run / "figures" / "slice_0000.png").read_bytes()[:4] == b"\x89PNG"
    assert {owner(run, f"figures/slice_000{i}.png") for i in range(3)} == {"reconstruct"}
    code, _, err = reconstruct(capsys, processed, run, "figures=1")  # a rerun: its own files
    assert code == 0, err
    assert sorted(p.name for p in (run / "figures").iterdir()) == ["my_plot.png", "slice_0000.png"]
    assert (run / "figures" / "my_plot.png").read_bytes() == b"mine"


def test_an_output_of_another_subcommand_is_not_reconstructs(processed: Path, tmp_path: Path, capsys) -> None:
    """A processed file named recon.h5 (preprocess's) is not an earlier reconstruct's output: a
    reconstruct into its folder is refused (any mrirecon HDF5 counted as its own)."""
    run = tmp_path / "run"
    code, _, err = run_main(capsys, "preprocess", "data=full", f"data.source={tmp_path / 'source.h5'}",
                            f"data.path={run / 'recon.h5'}", f"hydra.run.dir={tmp_path / 'p2'}", *FAST)  # fmt: skip
    assert code == 0, err
    before = (run / "recon.h5").read_bytes()
    code, _, err = reconstruct(capsys, processed, run, "figures=0")
    refused(code, err, "recon.h5", "mrirecon reconstruct", "overwrite=true")
    assert (run / "recon.h5").read_bytes() == before


def test_an_edited_output_is_no_longer_mrirecons(processed: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert reconstruct(capsys, processed, run, "figures=0")[0] == 0
    (run / "summary.json").write_text('{"my": "annotations"}')
    code, _, err = reconstruct(capsys, processed, run, "figures=0")
    refused(code, err, "summary.json")
    assert (run / "summary.json").read_text() == '{"my": "annotations"}'


def test_evaluate_replaces_and_removes_only_its_own_files(tmp_path: Path, capsys, monkeypatch) -> None:
    """A folder with the user's results.csv, report.html, comparison_old.png and sweep_mine.png:
    refused (the text files were replaced and the PNGs deleted, exit 0); overwrite=true replaces
    the two text files only. An earlier evaluate's stale figures are removed, the user's kept."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    runs = [fake_run(tmp_path / "runs" / m, m, "full", 30 + rng.normal(size=6)) for m in ("cg_sense", "zero_filled")]
    out = tmp_path / "mine"
    out.mkdir()
    mine = {"results.csv": b"my table", "report.html": b"my page", "comparison_old.png": b"a", "sweep_mine.png": b"b"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    evaluate = ["evaluate", f"runs=[{runs[0]},{runs[1]}]", f"hydra.run.dir={out}", *FAST]
    code, _, err = run_main(capsys, *evaluate)
    refused(code, err, "hydra.run.dir", "results.csv", "report.html", "overwrite=true")
    assert {n: (out / n).read_bytes() for n in mine} == mine and not (out / "summary.png").exists()
    code, _, err = run_main(capsys, *evaluate, "overwrite=true", "figure_slices=1")
    assert code == 0, err
    assert (out / "results.csv").read_bytes() != mine["results.csv"] and (out / "summary.png").is_file()
    assert (out / "comparison_old.png").read_bytes() == b"a" and (out / "sweep_mine.png").read_bytes() == b"b"
    stale = next(n for n in json.loads((out / RECORD).read_text())["files"] if n.startswith("comparison_"))
    code, _, err = run_main(capsys, *evaluate[:-2], f"hydra.run.dir={out}", "figure_slices=0", *FAST)
    assert code == 0, err
    assert not (out / stale).exists() and (out / "comparison_old.png").is_file()


def test_train_overwrite_keeps_the_users_checkpoint(processed: Path, tmp_path: Path, capsys) -> None:
    """A checkpoint the user keeps in a training run's checkpoints/ (my_best_model_keep.pt)
    survives train overwrite=true (every *.pt there was removed), and alone it is no training
    run; the earlier run's own files (TensorBoard events too) are replaced."""
    run, keep = tmp_path / "train", tmp_path / "train" / "checkpoints" / "my_best_model_keep.pt"
    args = [*TRAIN, f"data.path={processed}", f"hydra.run.dir={run}"]
    code, _, err = run_main(capsys, *args)
    assert code == 0, err
    keep.write_bytes(b"mine")
    events = {p.name for p in (run / "tensorboard").iterdir()}
    code, _, err = run_main(capsys, *args)
    refused(code, err, "already holds checkpoints (best.pt, last.pt", "train.resume=true", "overwrite=true")
    code, _, err = run_main(capsys, *args, "overwrite=true")
    assert code == 0, err
    assert keep.read_bytes() == b"mine"
    assert not events & {p.name for p in (run / "tensorboard").iterdir()}  # the earlier run's: removed
    assert {owner(run, n) for n in ("training.json", "metrics.csv", "checkpoints/last.pt")} == {"train"}
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "my_best_model_keep.pt").write_bytes(b"mine")
    code, _, err = run_main(capsys, *TRAIN, f"data.path={processed}", f"hydra.run.dir={other}")
    assert code == 0, err
    assert (other / "checkpoints" / "my_best_model_keep.pt").read_bytes() == b"mine"


def test_best_pt_is_a_hard_link_of_last_pt(processed: Path, tmp_path: Path, capsys) -> None:
    """The epoch that improves writes one checkpoint file with two names (best.pt was always a
    second copy: os.link failed on the temporary name, which already existed)."""
    run = tmp_path / "train"
    code, _, err = run_main(capsys, *TRAIN, f"data.path={processed}", f"hydra.run.dir={run}")
    assert code == 0, err
    last, best = (run / "checkpoints" / "last.pt").stat(), (run / "checkpoints" / "best.pt").stat()
    assert best.st_ino == last.st_ino and last.st_nlink == 2


# ---------------------------------------------------------------------------- interrupted runs


def test_a_killed_runs_temporaries_are_removed_by_the_next_run(processed: Path, tmp_path: Path, capsys) -> None:
    """SIGKILL leaves `.X.mrirecon-*.tmp` files and `.staged.mrirecon-*` folders; the next run into
    that place removes them (no later run did), the user's look-alikes stay."""
    run = tmp_path / "run"
    (run / "figures").mkdir(parents=True)
    killed = [".recon.h5.mrirecon-a1b2c3d4.tmp", "figures/.slice_0000.png.mrirecon-e5f6g7h8.tmp"]
    for name in killed:
        (run / name).write_bytes(b"half")
    (run / ".staged.mrirecon-q1w2e3r4").mkdir()
    (run / ".notes.tmp").write_text("mine")
    (tmp_path / ".processed.h5.mrirecon-zzzzzzzz.tmp").write_bytes(b"half")  # a killed preprocess's
    code, _, err = reconstruct(capsys, processed, run, "figures=1")
    assert code == 0, err
    left = files_under(run)
    assert not any(n in left for n in killed) and not (run / ".staged.mrirecon-q1w2e3r4").exists()
    assert (run / ".notes.tmp").read_text() == "mine"
    assert (tmp_path / ".processed.h5.mrirecon-zzzzzzzz.tmp").exists()  # not this run's place
    code, _, err = run_main(capsys, "preprocess", "data=full", f"data.source={tmp_path / 'source.h5'}",
                            f"data.path={processed}", f"hydra.run.dir={tmp_path / 'p2'}", *FAST)  # fmt: skip
    assert code == 0, err
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow  # the CLI in a subprocess, stopped with SIGTERM
def test_sigterm_is_handled_as_sigint(tmp_path: Path) -> None:
    """kill (SIGTERM) mid-reconstruction: one error line, exit 128 + 15, no temporary file and no
    partial output left (SIGTERM ended the process on the spot, leaving its .tmp files)."""
    arrays = tiny_arrays(n=48, shape=(64, 48))
    data = tmp_path / "data.h5"
    res = run_cli("preprocess", "data=full", f"data.source={write_h5(tmp_path / 'src.h5', arrays)}",
                  f"data.path={data}", "hydra.run.dir=prep", cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stderr
    run = tmp_path / "run"
    args = ["reconstruct", "method=cs_tv", "method.max_iter=400", "method.lam=0.01", "data=full", "data.split=all",
            "batch_size=1", f"data.path={data}", f"hydra.run.dir={run}"]  # fmt: skip
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg")
    proc = subprocess.Popen([sys.executable, "-m", "mrirecon", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(run.glob(".recon.h5.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == "error: interrupted (SIGTERM)"
    left = files_under(run)
    assert not [n for n in left if n.endswith(".tmp")] and not {"recon.h5", "metrics.csv"} & left
