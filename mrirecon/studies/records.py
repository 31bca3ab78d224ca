"""What a finished stage made, recorded in `stage.json` in its folder (written last, by the study):
its hash, a token that stages reading it fold into their own hash, the command lines, the run
dirs of its points (relative to the folder) with the config groups each chose, and the size and
modification time of every output the next stages read. A stage counts as done, and is skipped,
while its record is the study's own (mrirecon/io/ownership.py), names the same hash, and every
recorded output is still the file it wrote."""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mrirecon.errors import UserError
from mrirecon.io import ownership
from mrirecon.io.files import write_json

RECORD = "stage.json"
BY = "study"  # the writer named in the folder's ownership record
FORMAT = 1
# the files each subcommand's run dir must hold when it succeeded (preprocess: its data.path)
OUTPUTS = {
    "train": ("checkpoints/best.pt", "checkpoints/last.pt", "metrics.csv"),
    "reconstruct": ("metrics.csv", "summary.json", "recon.h5"),
    "evaluate": ("results.csv", "results.md", "report.html"),
    "preprocess": (),
}


@dataclass
class Point:
    """One run dir a stage made: `dir` relative to the stage's folder, the config groups it chose
    (Hydra's runtime choices: data, method, model, ...) and, for preprocess, the file it wrote."""

    dir: str
    choices: dict[str, str]
    data_path: str | None = None


@dataclass
class Done:
    """A finished stage: its folder, record token, points, and how it went this time."""

    name: str
    run: str
    dir: Path
    token: str
    points: list[Point]
    seconds: float = 0.0
    skipped: bool = False
    commands: list[list[str]] = field(default_factory=list)

    def point_dir(self, point: Point) -> Path:
        """A point's run dir."""
        return self.dir / point.dir if point.dir else self.dir


def points(stage_dir: Path, depth: int) -> list[Point]:
    """The run dirs Hydra made under the sweep dir(s) `depth` levels below `stage_dir` (1: a
    sweep's points; 2: the sweeps of a stage that follows another's points), in order."""
    found = [p.parent.parent for p in stage_dir.glob("/".join(["*"] * depth) + "/.hydra/hydra.yaml")]
    found.sort(key=lambda p: [int(s) if s.isdigit() else s for s in p.relative_to(stage_dir).parts])
    return [_point(stage_dir, p) for p in found]


def _point(stage_dir: Path, run_dir: Path) -> Point:
    hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml")
    choices = {str(k): str(v) for k, v in (OmegaConf.select(hydra, "hydra.runtime.choices") or {}).items()}
    choices = {k: v for k, v in choices.items() if not k.startswith("hydra/")}
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    task = OmegaConf.select(hydra, "hydra.job.name")
    data_path = str(OmegaConf.select(config, "data.path")) if task == "preprocess" else None
    return Point(str(run_dir.relative_to(stage_dir)), choices, data_path)


def outputs(run: str, stage_dir: Path, found: list[Point]) -> list[Path]:
    """The files the next stages read, by point; UserError when one is missing."""
    files = []
    for point in found:
        run_dir = stage_dir / point.dir
        wanted = [run_dir / name for name in OUTPUTS[run]]
        if point.data_path is not None:
            wanted.append(Path(point.data_path))
        missing = [p for p in wanted if not p.is_file()]
        if missing:
            raise UserError(f"{run_dir}: mrirecon {run} ended without writing {', '.join(p.name for p in missing)}")
        files += wanted
    if not found:
        raise UserError(f"{stage_dir}: mrirecon {run} made no run dir")
    return files


def _stamp(path: Path) -> dict[str, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def write(done: Done, digest: str, upstream: dict[str, str], files: list[Path]) -> None:
    """Write the record of `done` (hash `digest`, read stages' tokens `upstream`, its outputs)."""
    record = {
        "format": FORMAT,
        "stage": done.name,
        "run": done.run,
        "hash": digest,
        "token": done.token,
        "upstream": upstream,
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "seconds": round(done.seconds, 1),
        "commands": done.commands,
        "points": [vars(p) for p in done.points],
        "outputs": {str(f): _stamp(f) for f in files},
    }
    write_json(done.dir / RECORD, record)
    ownership.record(done.dir, [RECORD], BY)


def new_token() -> str:
    """A fresh token for a stage that just ran."""
    return uuid.uuid4().hex


def finished(stage_dir: Path, name: str, run: str, digest: str) -> Done | None:
    """The finished stage in `stage_dir` if its record is the study's own, names `digest`, and
    every output it lists is unchanged; else None."""
    if ownership.owner(stage_dir, RECORD) != BY:
        return None
    try:
        record = json.loads((stage_dir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("hash") != digest:
        return None
    stamps: dict[str, Any] = record.get("outputs") or {}
    if not stamps or any(_stamp(Path(f)) != s for f, s in stamps.items()):
        return None
    found = [Point(str(p["dir"]), dict(p["choices"]), p.get("data_path")) for p in record.get("points", [])]
    return Done(name, run, stage_dir, str(record["token"]), found, float(record.get("seconds", 0)), True)
