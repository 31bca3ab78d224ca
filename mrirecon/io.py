"""Atomic file output: write to a temporary sibling, then rename over the destination."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mrirecon.errors import UserError


def temporary_sibling(path: Path) -> Path:
    """A fresh temporary file next to `path` (same folder, so `os.replace` is atomic)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # mkdir on a parent that is a file says 'File exists': name the cause
        reason = f"{path.parent} is a file, not a folder" if path.parent.is_file() else exc.strerror
        raise UserError(f"{path}: cannot write here ({reason})") from None
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make every output private
    os.close(fd)
    return Path(tmp)


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Atomically `torch.save` a checkpoint dict (a kill leaves the previous file intact)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def link_or_copy(source: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Atomically make `dest` a file with the content of `source`: a hard link (instant, no
    second write of a large checkpoint) where the file system allows, else a copy. A later
    atomic rewrite of `source` gives it a new file, so `dest` keeps this content."""
    import shutil

    with atomic_path(dest) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, on the CPU, or raise a UserError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint: {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise UserError(
            f"checkpoint: {path} is not a readable mrirecon checkpoint ({exc.__class__.__name__})"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"checkpoint: {path} is not an mrirecon checkpoint (no 'model' and 'config' entries)")
    return state


@contextlib.contextmanager
def staged_outputs(dest: str | os.PathLike, owned: tuple[str, ...]) -> Iterator[Path]:
    """Yield an empty temporary folder inside `dest` to write a set of outputs into. On success
    every file in it is renamed into `dest` (each rename atomic, all after everything was written)
    and files of `dest` that match an `owned` glob pattern but were not written this time (stale
    outputs of an earlier run into the same folder) are deleted. On failure the temporary folder
    is deleted and `dest` is left as it was: never a partial set of outputs."""
    import shutil

    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staged.", dir=folder))
    try:
        yield stage
        written = sorted(p for p in stage.iterdir() if p.is_file())
        names = {p.name for p in written}
        stale = [p for pattern in owned for p in folder.glob(pattern) if p.is_file() and p.name not in names]
        for path in written:
            os.chmod(path, 0o666 & ~_umask())
            os.replace(path, folder / path.name)
        for path in stale:
            path.unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
