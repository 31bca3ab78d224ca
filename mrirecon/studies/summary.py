"""The study folder's own files: `study.json` (every stage, its folder, run dirs, whether it ran or
was skipped, its commands) and `study.md` (the same as a table, and where each evaluate stage's
table and report are). Written after every stage, so an interrupted study shows how far it got;
like every subcommand's outputs they replace only an earlier study's own files (overwrite=true:
any file of those names)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from mrirecon.io.files import write_json, write_text
from mrirecon.io.ownership import Outputs
from mrirecon.studies.records import BY, Done

FILES = ["study.json", "study.md"]


def claim(folder: Path, overwrite: bool) -> Outputs:
    """The study's claim on its files in `folder` (refused when a file of their names is not an
    earlier study's, unless `overwrite`)."""
    outputs = Outputs(folder, BY, replace=overwrite)
    outputs.claim(FILES)
    return outputs


def _stage(d: Done) -> dict[str, Any]:
    return {
        "stage": d.name,
        "run": d.run,
        "status": "skipped" if d.skipped else "ran",
        "seconds": round(d.seconds, 1),
        "folder": str(d.dir),
        "run_dirs": [str(d.point_dir(p)) for p in d.points],
        "commands": [" ".join(["mrirecon", *c]) for c in d.commands],
    }


def results(done: list[Done]) -> list[str]:
    """The results tables (results.md) of the evaluate stages."""
    return [str(d.point_dir(p) / "results.md") for d in done if d.run == "evaluate" for p in d.points]


def markdown(name: str, done: list[Done], pending: list[str]) -> str:
    """study.md: one row per stage, then the evaluate stages' tables and reports."""
    lines = [f"# Study {name}", "", "| stage | subcommand | status | seconds | run dirs |", "|---|---|---|---|---|"]
    for d in done:
        status = "skipped (done earlier, same config)" if d.skipped else "ran"
        dirs = "<br>".join(f"`{d.point_dir(p)}`" for p in d.points)
        lines.append(f"| {d.name} | {d.run} | {status} | {d.seconds:.0f} | {dirs} |")
    lines += [f"| {n} | | not run | | |" for n in pending]
    lines += ["", "Results (each evaluate stage's table; report.html beside it):", ""]
    lines += [f"- `{r}`" for r in results(done)] or ["- none yet"]
    return "\n".join(lines) + "\n"


def write(outputs: Outputs, name: str, done: list[Done], pending: list[str]) -> None:
    """Write study.json and study.md into the study folder and record them as the study's."""
    write_json(
        outputs.folder / "study.json",
        {
            "format": 1,
            "study": name,
            "written": datetime.datetime.now().isoformat(timespec="seconds"),
            "stages": [_stage(d) for d in done],
            "not_run": pending,
            "results": results(done),
        },
    )
    write_text(outputs.folder / "study.md", markdown(name, done, pending))
    outputs.commit(FILES)
