"""Atomic file output: write to a temporary sibling, then rename over the destination; checkpoints.

Temporary files are named `.<name>.mrirecon-XXXXXXXX.tmp` (staging folders
`.staged.mrirecon-XXXXXXXX`): a name no user file has, so that `remove_temporaries` can take
away what a killed run (SIGKILL) left and nothing else. A destination that is a symbolic link
is written through: the link stays and its target gets the new content (`write_target`).

A checkpoint holds only tensors and plain Python types (dict, list, tuple, str, int, float, bool,
None): configs as plain containers, RNG states as tensors or lists of ints, never a pickled
object. `save_checkpoint` refuses anything else, so every checkpoint loads with
`torch.load(..., weights_only=True)`, which cannot run code. Anything else needs `trust=True`
(the CLI's `trust_checkpoint=true`), an unsafe pickle load to use only on files from a trusted
source. A checkpoint of another layout than this version's (`checkpoint_entries.FORMAT`; older
ones held NumPy's random state as an array) is one error line saying how to make a new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from mrirecon.errors import UserError
from mrirecon.io.checkpoint_entries import FORMAT, check_entries

RETRAIN = "retrain it with 'mrirecon train'"

TEMP_MARK = "mrirecon-"  # in every temporary name mrirecon makes
STAGE_PREFIX = f".staged.{TEMP_MARK}"
_TEMPORARY = re.compile(rf"^\.(?P<target>.+)\.{TEMP_MARK}[A-Za-z0-9_]{{8}}\.tmp$")


def write_target(path: str | os.PathLike[str]) -> Path:
    """Where a write of `path` goes: `path` itself, or the file a symbolic link `path` points
    to (followed to the end; a dangling link's target is created), so that the link stays."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def make_parent(path: Path) -> None:
    """Make the folder of `path` (and its parents); a UserError naming `path` when it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # mkdir on a parent that is a file says 'File exists': name the cause
        reason = f"{path.parent} is a file, not a folder" if path.parent.is_file() else exc.strerror
        raise UserError(f"{path}: cannot write here ({reason})") from None


def temporary_sibling(path: Path) -> Path:
    """A fresh temporary file next to the write target of `path` (same folder, so `os.replace`
    is atomic)."""
    path = write_target(path)
    make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_MARK}", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UserError(f"{path}: cannot write here ({exc.strerror})") from None
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make every output private
    os.close(fd)
    return Path(tmp)


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success rename it to `path`, on failure delete it.

    A reader of `path` sees the old complete file or the new complete file, never a partial one.
    """
    dest = write_target(path)
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


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write a text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Atomically write `data` as indented JSON."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically `torch.save` a checkpoint dict (a kill leaves the previous file intact).

    Raises TypeError, before writing, when an entry is not a tensor or a plain Python type."""
    import torch

    check_plain(state, "checkpoint")
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def link_or_copy(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Atomically make `dest` a file with the content of `source`: a hard link (instant, no
    second write of a large checkpoint, no second copy on disk) where the file system allows,
    else a copy. A later atomic rewrite of `source` gives it a new file, so `dest` keeps this
    content."""
    import shutil

    with atomic_path(dest) as tmp:
        tmp.unlink()  # the link's name must be free (mkstemp made the file to reserve the name)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


PLAIN = (str, int, float, bool, type(None), bytes)


def check_plain(value: Any, where: str) -> None:
    """Raise TypeError naming the entry (`where`, e.g. 'checkpoint.rng.numpy') unless `value` is
    a tensor, a plain Python scalar, or a dict / list / tuple of those (exact types: a NumPy
    float or an OmegaConf node is refused)."""
    import torch

    if isinstance(value, torch.Tensor) or type(value) in PLAIN:
        return
    if type(value) in (dict, OrderedDict):
        for key, item in value.items():
            if type(key) not in PLAIN:
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}, not a plain Python type")
            check_plain(item, f"{where}.{key}")
        return
    if type(value) in (list, tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}: a checkpoint holds only tensors "
        "and plain Python types (mrirecon/io/files.py)"
    )


NUMPY_RNG = frozenset(
    {"numpy.ndarray", "numpy.dtype", *(f"numpy.{c}.multiarray._reconstruct" for c in ("_core", "core"))}
)


def _refused_globals(path: Path) -> list[str]:
    """The Python objects that the pickle in checkpoint `path` names, sorted (read without
    unpickling; empty when there are none or the file is not a zip checkpoint)."""
    import torch

    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        return []


def _older(path: Path, key: str, found: Any, retrain: str) -> UserError:
    return UserError(
        f"{key}: {path} was written by an older mrirecon (checkpoint format {found}; this version reads format "
        f"{FORMAT}): {retrain}"
    )


def _torch_load(path: Path, key: str, trust: bool, retrain: str) -> Any:
    """`torch.load` with weights_only=True, or the unsafe load if `trust`."""
    import pickle
    import warnings

    import torch

    with warnings.catch_warnings():  # torch warns about pickle protocols: the error line says enough
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            if trust:
                return torch.load(path, map_location="cpu", weights_only=False)
            names = _refused_globals(path)
            if not names:
                raise
            if all(n in NUMPY_RNG or n.startswith("numpy.dtypes.") for n in names):  # formats 1-2's RNG state
                raise _older(path, key, "1 or 2", retrain) from None
            shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
            raise UserError(
                f"{key}: {path} holds Python objects that a safe load does not run ({shown}): load it only "
                "if you trust where it came from, with trust_checkpoint=true"
            ) from None


def load_checkpoint(
    path: str | os.PathLike[str], key: str = "checkpoint", trust: bool = False, retrain: str = RETRAIN
) -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint`, on the CPU, without running code from the
    file; `trust=True` allows the unsafe pickle load as a fallback. Raises a UserError naming the
    config `key` that gave the path; for a checkpoint of another format than FORMAT, `retrain`
    says how to make a new one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{key}: {path} not found")
    try:
        state = _torch_load(path, key, trust, retrain)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{key}: {path} is not a readable mrirecon checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"{key}: {path} is not an mrirecon checkpoint (no 'model' and 'config' entries)")
    check_entries(state, path, key)  # each entry of the type mrirecon writes; finite weights
    if state.get("format") != FORMAT:
        raise _older(path, key, state.get("format", 1), retrain)
    return state


class Claim(Protocol):
    """What may replace files of a folder and records what was written (ownership.Outputs)."""

    def claim(self, names: list[str]) -> None:
        """Raise (a UserError) when a file `names` would replace is not this run's to replace."""

    def commit(self, names: list[str]) -> None:
        """Record `names` as written now (and remove the stale outputs of an earlier run)."""


@contextlib.contextmanager
def staged_outputs(dest: str | os.PathLike[str], outputs: Claim) -> Iterator[Path]:
    """Yield an empty temporary folder inside `dest` to write a set of outputs into. On success
    `outputs.claim` may refuse them (a file of `dest` that they would replace is not theirs),
    then every file is renamed into `dest` (each rename atomic, all after everything was
    written) and `outputs.commit` records them. On failure the temporary folder is deleted and
    `dest` is left as it was: never a partial set of outputs."""
    import shutil

    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=folder))
    try:
        yield stage
        written = sorted(p for p in stage.iterdir() if p.is_file())
        names = [p.name for p in written]
        outputs.claim(names)
        for path in written:
            os.chmod(path, 0o666 & ~_umask())
            os.replace(path, write_target(folder / path.name))
        outputs.commit(names)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def temporary_target(name: str) -> str | None:
    """The destination name of an mrirecon temporary file name (`.recon.h5.mrirecon-k3j2h1g0.tmp`
    -> `recon.h5`), None for any other name."""
    match = _TEMPORARY.match(name)
    return match["target"] if match else None
