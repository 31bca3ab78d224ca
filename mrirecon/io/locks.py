"""One writer at a time: an exclusive lock on each run dir and on each file written outside one
(preprocess's `data.path`, download's `dataset.dir`), and the removal of what a killed writer left.

The lock is the `filelock` package's (flock on Unix): it is held by an open file, so a process
that dies holds nothing and the next run takes it. The lock file (`.mrirecon.lock` in a folder,
`.<name>.lock` beside a file) names its holder (mrirecon subcommand, pid, host, start), which a
refused second process prints in its one error line; the holder removes the file when done (one
killed with SIGKILL leaves it: harmless, the next run takes the lock and removes it in turn).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mrirecon.errors import UserError
from mrirecon.io.files import STAGE_PREFIX, temporary_target, write_target

if TYPE_CHECKING:
    from filelock import FileLock

log = logging.getLogger(__name__)
LOCK = ".mrirecon.lock"  # the lock of a folder (a run dir, dataset.dir)
WAIT_S = 0.2  # how long a second process tries before it is refused


def folder_lock(folder: Path) -> Path:
    """The lock file of a folder."""
    return folder / LOCK


def file_lock(path: Path) -> Path:
    """The lock file of a file written outside a run dir: `.<name>.lock` beside the file that a
    write of `path` reaches (a symbolic link's target: two names of one file share one lock)."""
    target = write_target(path)
    return target.parent / f".{target.name}.lock"


def holder(lock_file: Path) -> str:
    """Who holds `lock_file`, as its holder wrote it: 'mrirecon train, pid 4242 on node7 since ...'."""
    try:
        info = json.loads(lock_file.read_text())
        return f"{info['command']}, pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, TypeError, KeyError):
        return "a process that has not said who it is"


class Lock:
    """The exclusive lock `lock_file` of one writer (`command`, e.g. 'mrirecon reconstruct')."""

    def __init__(self, lock_file: Path, command: str) -> None:
        self.path, self.command = lock_file, command
        self._lock: FileLock | None = None

    def acquire(self, key: str, what: str) -> None:
        """Take the lock, or raise a UserError naming `key`, `what` is locked and the holder. A
        file system without locks (flock unsupported) gets a warning, and no lock."""
        from filelock import FileLock, Timeout

        info = {
            "command": self.command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        data = (json.dumps(info) + "\n").encode()

        def name_holder(fd: int) -> None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)

        lock = FileLock(str(self.path), timeout=WAIT_S, is_singleton=False, on_acquired=name_holder)
        try:
            lock.acquire()
        except Timeout:
            raise UserError(
                f"{key}: {what} is being written by another process ({holder(self.path)}): wait until it "
                f"ends, or choose another {key}"
            ) from None
        except OSError as exc:
            log.warning("%s: cannot lock %s (%s): another process could write there at the same time", key, what, exc)
            return
        self._lock = lock

    def release(self) -> None:
        """Remove the lock file (still holding it: a process that opens it now finds it gone and
        retries on a new one) and release the lock. Safe to call twice."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        lock.release()


@contextlib.contextmanager
def held(lock_file: Path, command: str, key: str, what: str) -> Iterator[None]:
    """Hold the lock `lock_file` for the block (`Lock.acquire`'s refusal otherwise)."""
    lock = Lock(lock_file, command)
    lock.acquire(key, what)
    try:
        yield
    finally:
        lock.release()


def remove_temporaries(folder: Path, target: str | None = None) -> list[Path]:
    """Remove what a killed writer (SIGKILL, power loss) left in `folder`: mrirecon's temporary
    files (`.<name>.mrirecon-XXXXXXXX.tmp`) of `target` only, or with target None of every name
    that has no lock file beside it (another writer's), and then also its staging folders. Call
    it holding the lock of what is written there; returns the paths removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        name = temporary_target(path.name)
        if name is not None and path.is_file() and not path.is_symlink():
            mine = name == target if target is not None else not (folder / f".{name}.lock").exists()
            if mine:
                path.unlink(missing_ok=True)
                removed.append(path)
        elif target is None and path.name.startswith(STAGE_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def remove_run_dir_temporaries(run_dir: Path) -> None:
    """`remove_temporaries` in a run dir and its sub-folders (checkpoints/, figures/), logged."""
    folders = [run_dir, *(p for p in sorted(run_dir.iterdir()) if p.is_dir() and not p.is_symlink())]
    removed = [p for folder in folders for p in remove_temporaries(folder)]
    if removed:
        log.info("removed %d temporary file(s) a killed run left in %s", len(removed), run_dir)
