"""Runs and sweeps as the CLI sees them: where Hydra put the output, and which sweep points failed.

In a sweep (`-m`) a failing point does not stop the others, whatever the launcher (basic,
joblib, submitit): its task writes its error line to `error.txt` in its run dir and returns None
(not a number: an optimising sweeper counts the trial as failed). `Recorder`, a Hydra callback (conf/base.yaml),
notes the run or sweep dir and, when the sweep ends, collects the `error.txt` files written
during it; `mrirecon.cli` prints their summary and exits 2.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mrirecon.io import write_text

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


LAST = State()


def reset() -> None:
    """Forget the previous run (the CLI calls this before each)."""
    global LAST
    LAST = State()


def record_failure(run_dir: Path, message: str, details: str = "") -> None:
    """Write `message` (one line; `details`, e.g. a traceback, below it) to the point's error.txt
    and log it. The point's result is None: not a number, so an optimising sweeper (Optuna)
    counts the trial as failed and goes on."""
    log.error("%s", message)
    write_text(run_dir / ERROR_FILE, message + "\n" + (details + "\n" if details else ""))


def clear_failure(run_dir: Path) -> None:
    """Remove the error.txt an earlier run left in `run_dir` (this run writes its own)."""
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


class Recorder(Callback):
    """Notes the run dir (single runs) and the sweep's failed points (multirun) in `LAST`."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        LAST.output_dir = Path(str(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        LAST.output_dir = Path(str(config.hydra.sweep.dir))
        LAST.before = _stamps(LAST.output_dir)
        LAST.swept = _swept_keys(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        collect()


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
