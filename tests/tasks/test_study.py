"""`mrirecon study`: what is refused before any stage runs (one error line, exit 2, the study
folder left as it was), and, end to end, study=quick run fresh, run again with nothing to do,
and run after one changed knob, which reruns only the stages it changes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import run_cli, run_main

from mrirecon.cli.configs import group_options
from mrirecon.io.locks import Lock, folder_lock

FOLDER = Path("outputs/study/quick")


@pytest.fixture
def here(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["study=nope"], f"error: unknown study=nope (expected one of: {', '.join(group_options('study'))})"),
        (["-m", "study=quick"], "error: -m: a study runs its stages itself"),
        (
            ["study.stages.evaluate.overrides=['runs=${stage:nope}']"],
            "error: study.stages.evaluate.overrides: no stage named 'nope'",
        ),
        (
            ["study.stages.data.overrides=['data=4bit_quarter','data.source=${stage:evaluate}']"],
            "error: study.stages: data -> evaluate -> baselines -> data: these stages read each other's outputs",
        ),
        (
            ["study.stages.evaluate.overrides=['baselin=cg_sense']"],
            "error: study.stages.evaluate.overrides: Could not override 'baselin'",
        ),
        (
            ["dataset=stanford_knees", "dataset.dir=missing"],
            "error: dataset.dir: missing is not a folder: fetch the data set first",
        ),
        (["dataset=stanford_knees", "dataset.limit=2"], "error: dataset.limit: not read by mrirecon study"),
    ],
)
def test_a_study_that_cannot_run_is_refused_before_any_stage_runs(here, capsys, overrides, message):
    code, _, err = run_main(capsys, "study", *overrides)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(message), err
    assert not (here / "outputs").exists()  # nothing left behind, no stage ran


def test_the_study_folder_is_locked_and_a_foreign_file_there_is_refused(here, capsys):
    FOLDER.mkdir(parents=True)
    lock = Lock(folder_lock(FOLDER), "mrirecon study")
    lock.acquire("hydra.run.dir", str(FOLDER))
    try:
        code, _, err = run_main(capsys, "study")
    finally:
        lock.release()
    assert code == 2 and "outputs/study/quick is being written by another process (mrirecon study, pid" in err
    (FOLDER / "study.md").write_text("my notes")
    code, _, err = run_main(capsys, "study")
    assert code == 2 and "holds study.md, not written there by an earlier mrirecon study" in err
    assert (FOLDER / "study.md").read_text() == "my notes" and sorted(p.name for p in FOLDER.iterdir()) == ["study.md"]


def statuses(folder: Path) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in json.loads((folder / "study.json").read_text())["stages"]}


def outputs_stamped(folder: Path) -> dict[str, int]:
    """Every file under the study's stage folders (not its own study.* and .hydra): its modification time."""
    stages = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return {str(p): p.stat().st_mtime_ns for d in stages for p in d.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_quick_runs_then_skips_everything_then_reruns_only_what_a_changed_knob_changes(sample_dir, tmp_path):
    source = sample_dir / "outputs" / "data" / "full.h5"  # the sample, preprocessed once per session
    args = ("study", "study=quick", f"study.source={source}", "hardware.threads=1")
    res = run_cli(*args, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    folder = tmp_path / FOLDER
    assert set(statuses(folder).values()) == {"ran"}
    study = json.loads((folder / "study.json").read_text())
    used = {d for s in study["stages"] if s["run"] == "reconstruct" for d in s["run_dirs"]}
    assert len(used) == 3  # zero_filled, cg_sense, dbp
    table = folder.parent.parent.parent / study["results"][0]
    with open(table.with_name("results.csv"), newline="") as fh:
        named = {d for row in csv.DictReader(fh) for d in row["run_dirs"].split("; ")}
    assert named == used
    assert all(d in table.read_text() for d in named)  # the table names every run it used

    written = outputs_stamped(folder)
    res = run_cli(*args, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(statuses(folder).values()) == {"skipped"}
    assert "0 stage(s) ran (none), 5 skipped" in res.stdout + res.stderr
    assert outputs_stamped(folder) == written  # no stage ran a command: nothing under the stages changed

    res = run_cli(*args, "study.epochs=2", cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert statuses(folder) == {
        "data": "skipped",
        "baselines": "skipped",
        "train_dbp": "ran",
        "dbp": "ran",
        "evaluate": "ran",
    }
    assert len(list((folder / "train_dbp").iterdir())) == 2  # the earlier network is kept beside the new one

    res = run_cli(*args, cwd=tmp_path, timeout=900)  # back to the first config: its stages are still there
    assert res.returncode == 0, res.stderr[-3000:]
    assert set(statuses(folder).values()) == {"skipped"}
