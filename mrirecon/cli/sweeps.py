"""Runs and sweeps as the CLI sees them: where Hydra put the output, and which sweep points failed.

In a sweep (`-m`) a failing point does not stop the others, whatever the launcher (basic,
joblib, submitit): its task writes its error line to `error.txt` in its run dir and returns None
(not a number: an optimising sweeper counts the trial as failed). `Recorder`, a Hydra callback (conf/base.yaml),
notes the run or sweep dir and, when the sweep ends, collects the `error.txt` files written
during it; `mrirecon.cli.app` prints their summary and exits 2.

Before Hydra writes anything, `Recorder` also takes the run dir's lock (a sweep: the sweep dir's;
mrirecon/io/locks.py), so a second process into the same folder is refused before it touches it,
and a snapshot of what the folder held (mrirecon/io/ownership.py), so that a run failing on bad
input leaves it as it was: `finish` releases the lock and undoes the failed run.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mrirecon.io import ownership
from mrirecon.io.files import write_text
from mrirecon.io.locks import Lock, folder_lock

ERROR_FILE = "error.txt"
INTERNAL = "internal error"  # first words of a point's error line when the failure was a bug
log = logging.getLogger("mrirecon")


@dataclass
class Failure:
    """A failed sweep point: its run dir, the swept values there and its error line."""

    run_dir: Path
    point: str
    message: str

    @property
    def internal(self) -> bool:
        """Whether the point failed on a bug (a traceback in its error.txt), not on bad input."""
        return self.message.startswith(INTERNAL)


@dataclass
class State:
    """What the last run or sweep of this process left: its output dir and failed points."""

    output_dir: Path | None = None
    before: dict[Path, tuple[int, int]] = field(default_factory=dict)  # error.txt stamps at the start
    swept: set[str] = field(default_factory=set)  # the keys the sweep varies
    failures: list[Failure] = field(default_factory=list)
    job_name: str = ""
    output_subdir: str | None = ".hydra"
    snapshot: ownership.Snapshot | None = None  # of a single run's dir, before Hydra wrote there
    children: set[str] | None = None  # a sweep dir's entries when the sweep started
    made: list[Path] = field(default_factory=list)  # the sweep dir and parents made for it
    lock: Lock | None = None
    failed: bool = False  # the single run failed on bad input: `finish` undoes it


class Refused(BaseException):
    """The run or sweep dir is locked by another process: the CLI prints the one error line
    (a BaseException: Hydra only warns about an Exception raised in a callback)."""


LAST = State()


def reset() -> None:
    """Forget the previous run (the CLI calls this before each)."""
    global LAST
    LAST = State()


def release() -> None:
    """Release the run's (or sweep's) lock."""
    if LAST.lock is not None:
        LAST.lock.release()


def undo(run_dir: Path | None = None) -> None:
    """Release the lock, then leave the failed run's dir as it was (ownership.Snapshot.undo);
    `run_dir`: the folder whose Hydra files failed, a sweep point's, undone if the sweep made it."""
    release()
    snapshot = LAST.snapshot
    run_dir = None if run_dir is None else Path(os.path.abspath(run_dir))
    if run_dir is not None and (snapshot is None or run_dir != snapshot.run_dir):
        new = LAST.children is not None and LAST.output_dir is not None and run_dir.parent == LAST.output_dir
        made = new and run_dir.name not in (LAST.children or set())
        snapshot = ownership.Snapshot.made(run_dir, LAST.job_name, LAST.output_subdir) if made else None
    if snapshot is not None:
        snapshot.undo()


def finish() -> None:
    """After the run: release the lock, undo a single run that failed on bad input, and remove
    a sweep dir made for a sweep that wrote nothing there."""
    if LAST.failed:
        LAST.failed = False
        undo()
    release()
    for folder in LAST.made:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


def record_failure(run_dir: Path, message: str, details: str = "") -> None:
    """Write `message` (one line; `details`, e.g. a traceback, below it) to the point's error.txt
    and log it. The point's result is None: not a number, so an optimising sweeper (Optuna)
    counts the trial as failed and goes on."""
    log.error("%s", message)
    write_text(run_dir / ERROR_FILE, message + "\n" + (details + "\n" if details else ""))
    ownership.record(run_dir, [ERROR_FILE], LAST.job_name or "mrirecon")


def clear_failure(run_dir: Path) -> None:
    """Remove the error.txt an earlier run left in `run_dir` (this run writes its own); a user's
    file of that name stays."""
    if ownership.owner(run_dir, ERROR_FILE) is not None:
        (run_dir / ERROR_FILE).unlink(missing_ok=True)


def _stamps(sweep_dir: Path) -> dict[Path, tuple[int, int]]:
    """(inode, mtime) of every error.txt under `sweep_dir`."""
    if not sweep_dir.is_dir():
        return {}
    out = {}
    for path in sweep_dir.rglob(ERROR_FILE):
        stat = path.stat()
        out[path] = (stat.st_ino, stat.st_mtime_ns)
    return out


def _point(run_dir: Path, swept: set[str]) -> str:
    """The swept `key=value`s of the point in `run_dir` (from Hydra's .hydra/overrides.yaml)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        overrides = [str(o) for o in OmegaConf.load(path)]
    except (OSError, ValueError):
        return ""
    return " ".join(o for o in overrides if o.partition("=")[0].lstrip("+~") in swept)


def _swept_keys(config: DictConfig) -> set[str]:
    """The keys that the sweep's overrides vary."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    return {p.key_or_group for p in parsed if p.is_sweep_override()}


def _lock(folder: Path, config: DictConfig, key: str) -> None:
    """Make `folder` and take its lock (LAST.lock), or raise Refused with the error line. A
    folder that cannot be made is left to Hydra, whose own error is then reported."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    lock = Lock(folder_lock(folder), f"mrirecon {config.hydra.job.name}")
    try:
        lock.acquire(key, str(folder))
    except Exception as exc:  # UserError (not imported here: the message is the line)
        raise Refused(str(exc)) from None
    LAST.lock = lock


class Recorder(Callback):
    """Notes the run dir (single runs) and the sweep's failed points (multirun) in `LAST`; takes
    the run's (sweep's) lock and the snapshot of the run dir before Hydra writes there."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        LAST.output_dir = Path(os.path.abspath(str(config.hydra.run.dir)))
        LAST.job_name, LAST.output_subdir = str(config.hydra.job.name), config.hydra.output_subdir
        LAST.snapshot = ownership.Snapshot.take(LAST.output_dir, LAST.job_name, LAST.output_subdir)
        _lock(LAST.output_dir, config, "hydra.run.dir")

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        LAST.output_dir = Path(os.path.abspath(str(config.hydra.sweep.dir)))
        LAST.job_name, LAST.output_subdir = str(config.hydra.job.name), config.hydra.output_subdir
        LAST.before = _stamps(LAST.output_dir)
        LAST.swept = _swept_keys(config)
        LAST.children = {p.name for p in LAST.output_dir.iterdir()} if LAST.output_dir.is_dir() else set()
        LAST.made = [p for p in (LAST.output_dir, *LAST.output_dir.parents) if not p.exists()]
        _lock(LAST.output_dir, config, "hydra.sweep.dir")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        collect()
        release()


def collect() -> list[Failure]:
    """The points of the current sweep that failed: the error.txt files written since it started
    (also called when a sweeper stops early, e.g. when every trial failed)."""
    if LAST.output_dir is None:
        return []
    failed = [p for p, stamp in sorted(_stamps(LAST.output_dir).items()) if LAST.before.get(p) != stamp]
    LAST.failures = []
    for path in failed:
        lines = path.read_text().splitlines()
        LAST.failures.append(Failure(path.parent, _point(path.parent, LAST.swept), lines[0] if lines else "failed"))
    return LAST.failures


def summary(failures: list[Failure], sweep_dir: Path | None) -> str:
    """The lines printed at the end of a sweep with failed points."""
    where = f" of {sweep_dir}" if sweep_dir is not None else ""
    lines = [f"error: {len(failures)} sweep point(s){where} failed (each run dir holds its {ERROR_FILE}):"]
    for f in failures:
        name = f.run_dir.name if sweep_dir is None else str(f.run_dir.relative_to(sweep_dir))
        message = f.message.removeprefix("error: ") + (
            " (a bug: the traceback is in its error.txt)" if f.internal else ""
        )
        lines.append(f"  {name}{f' [{f.point}]' if f.point else ''}: {message}")
    return "\n".join(lines)
