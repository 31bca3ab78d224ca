"""What mrirecon owns: the record of the files each subcommand wrote into a folder, the claim a
subcommand makes on the files it is about to write, and undoing what a failed run left.

Every run dir that mrirecon writes outputs into holds `.mrirecon.json`, the record: for each file
written there, the subcommand that wrote it and the file's size and modification time then. A
file is a subcommand's own when the record names that subcommand and the file is still the one
it wrote (same size and time): a user's file of the same name, an edited output or another
subcommand's output is not. A subcommand refuses to replace a file that is not its own unless
`overwrite=true`, which replaces only the files it writes; stale outputs of its own earlier run
(e.g. figures of slices this run does not draw) are removed, nothing else ever is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrirecon.errors import UserError
from mrirecon.io.files import write_json
from mrirecon.io.locks import LOCK

log = logging.getLogger(__name__)
RECORD = ".mrirecon.json"
SHOWN = 4  # file names an error line lists


def read_record(folder: Path) -> dict[str, dict[str, Any]]:
    """The record of `folder`: {file name (relative, '/'-separated): {by, bytes, mtime_ns}};
    empty when there is none or it is unreadable (then nothing there counts as mrirecon's)."""
    path = folder / RECORD
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("%s is unreadable: no file of %s counts as written by mrirecon", path, folder)
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {str(k): v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def _stamp(path: Path) -> dict[str, int] | None:
    """Size and modification time of the file `path` (through a link), None if it is no file."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns} if path.is_file() else None


def owner(folder: Path, name: str, record: dict[str, dict[str, Any]] | None = None) -> str | None:
    """The subcommand that wrote `folder / name`, if the record says so and the file is still
    the one it wrote; else None."""
    entry = (read_record(folder) if record is None else record).get(name)
    stamp = _stamp(folder / name)
    if entry is None or stamp is None or any(entry.get(k) != v for k, v in stamp.items()):
        return None
    by = entry.get("by")
    return str(by) if by else None


def record(folder: Path, names: Iterable[str], by: str, forget: Iterable[str] = ()) -> None:
    """Record the files `names` of `folder` as written now by `by` (and drop `forget`)."""
    files = read_record(folder)
    for name in forget:
        files.pop(name, None)
    for name in names:
        stamp = _stamp(folder / name)
        if stamp is not None:
            files[name] = {"by": by, **stamp}
    write_json(folder / RECORD, {"format": 1, "files": dict(sorted(files.items()))})


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


@dataclass
class Outputs:
    """The files subcommand `by` writes into `folder` (the run dir, named by config `key`).

    `replace` (overwrite=true) lets them replace files that are not its own."""

    folder: Path
    by: str
    replace: bool = False
    key: str = "hydra.run.dir"

    def owns(self, name: str) -> bool:
        """Whether `folder / name` is this subcommand's own output."""
        return owner(self.folder, name) == self.by

    def foreign(self, names: Iterable[str]) -> list[str]:
        """The `names` that exist in the folder (a dangling link too) and are not its own."""
        return [n for n in names if os.path.lexists(self.folder / n) and not self.owns(n)]

    def claim(self, names: list[str]) -> None:
        """Refuse (unless `replace`) when a file `names` would replace is not its own."""
        foreign = self.foreign(names)
        if foreign and not self.replace:
            raise UserError(
                f"{self.key}: {self.folder} holds {_listing(foreign)}, not written there by an earlier mrirecon "
                f"{self.by}: choose another {self.key}, or overwrite=true to replace "
                f"{'it' if len(foreign) == 1 else 'them'} (no other file is touched)"
            )
        if foreign:
            log.warning("overwrite=true: replacing %s in %s", _listing(foreign), self.folder)

    def stale(self, written: Iterable[str]) -> list[str]:
        """Its own files from an earlier run that this run did not write (e.g. figures of other
        slices)."""
        files, kept = read_record(self.folder), set(written)
        return sorted(n for n in files if n not in kept and owner(self.folder, n, files) == self.by)

    def commit(self, names: list[str]) -> None:
        """Record `names` as written now; remove its own stale outputs of an earlier run."""
        stale = self.stale(names)
        for name in stale:
            (self.folder / name).unlink(missing_ok=True)
        if stale:
            log.info("removed %s of an earlier %s run in %s", _listing(stale), self.by, self.folder)
        record(self.folder, names, self.by, forget=stale)


@dataclass
class Snapshot:
    """What a run dir held before Hydra and the task wrote there, to undo a failed run: the
    folders that did not exist (the run dir, the parents made for it, .hydra/), the bytes of
    Hydra's files (.hydra/*.yaml) and of the record, whether the job log existed, and the stamp
    of every other file (in the run dir and its sub-folders: where mrirecon writes)."""

    run_dir: Path
    created: list[Path]
    hydra_dir: Path | None
    log_file: Path
    log_existed: bool = False
    kept: dict[Path, bytes | None] = field(default_factory=dict)  # restored as they were (None: absent)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def take(cls, run_dir: Path, job_name: str, output_subdir: str | None) -> Snapshot:
        """The snapshot of `run_dir` now (before Hydra made or wrote it)."""
        hydra_dir = None if output_subdir is None else run_dir / output_subdir
        created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
        if hydra_dir is not None and not hydra_dir.exists():
            created.insert(0, hydra_dir)
        snapshot = cls(run_dir, created, hydra_dir, run_dir / f"{job_name}.log")
        snapshot.log_existed = snapshot.log_file.exists()
        for path in snapshot._hydra_files():
            snapshot.kept[path] = path.read_bytes() if path.is_file() else None
        snapshot.files = snapshot._others()
        return snapshot

    @classmethod
    def made(cls, run_dir: Path, job_name: str, output_subdir: str | None) -> Snapshot:
        """The snapshot of a run dir that did not exist before (a sweep point's new folder)."""
        hydra_dir = None if output_subdir is None else run_dir / output_subdir
        snapshot = cls(
            run_dir, [*([] if hydra_dir is None else [hydra_dir]), run_dir], hydra_dir, run_dir / f"{job_name}.log"
        )
        snapshot.kept = dict.fromkeys(snapshot._hydra_files())
        return snapshot

    def _hydra_files(self) -> list[Path]:
        names = () if self.hydra_dir is None else ("config.yaml", "hydra.yaml", "overrides.yaml")
        return [*(self.hydra_dir / n for n in names if self.hydra_dir is not None), self.run_dir / RECORD]

    def _others(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of the files of the run dir and its sub-folders but Hydra's, the lock
        and the record."""
        skip = {self.log_file, self.run_dir / LOCK, *self._hydra_files()}
        folders = [self.run_dir, *(p for p in self.run_dir.iterdir() if p.is_dir())] if self.run_dir.is_dir() else []
        out = {}
        for path in (p for folder in folders for p in folder.iterdir()):
            if path not in skip and path.is_file():
                stat = path.stat()
                out[str(path.relative_to(self.run_dir))] = (stat.st_size, stat.st_mtime_ns)
        return out

    def undo(self) -> bool:
        """Leave the run dir as it was, when the failed run wrote nothing there but Hydra's files:
        restore or remove those, remove the job log if it made it and the folders it made if
        empty. False (nothing touched) when it wrote or changed any other file (e.g. a
        checkpoint before training diverged: the run's record stays with it)."""
        try:
            if self._others() != self.files:
                return False
        except OSError:  # unreadable: touch nothing
            return False
        for path, content in self.kept.items():
            if content is None:
                path.unlink(missing_ok=True)
            elif not path.is_file() or path.read_bytes() != content:
                path.write_bytes(content)
        if not self.log_existed:
            self.log_file.unlink(missing_ok=True)
        for folder in self.created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        return True
