"""Atomic file output: write to a temporary sibling, then rename over the destination."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mrirecon.errors import UserError


def temporary_sibling(path: Path) -> Path:
    """A fresh temporary file next to `path` (same folder, so `os.replace` is atomic)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # mkdir on a parent that is a file says 'File exists': name the cause
        reason = f"{path.parent} is a file, not a folder" if path.parent.is_file() else exc.strerror
        raise UserError(f"{path}: cannot write here ({reason})") from None
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to `path`, on failure delete it.

    A reader of `path` sees the old complete file or the new complete file, never a partial one.
    """
    dest = Path(path)
    tmp = temporary_sibling(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"{dest}: write failed ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write `data` as indented JSON."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")
