"""preprocess's output file: which data.path it may write (only its own processed files, never
the source), the HDF5 filter, and the writing under the file's lock, recorded in the run dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mrirecon.data.h5 import producer
from mrirecon.errors import UserError
from mrirecon.io import ownership
from mrirecon.io.files import make_parent, write_target
from mrirecon.io.locks import file_lock, held, remove_temporaries
from mrirecon.tasks.common import overwrite, run_dir


def compression_of(cfg: DictConfig) -> str | int | None:
    """data.compression as an h5py filter: null, gzip, lzf, or a gzip level 0-9."""
    value = cfg.data.compression
    if value in (None, "gzip", "lzf") or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9):
        return value
    raise UserError(f"data.compression: {value!r} must be null, gzip, lzf or a gzip level 0-9")


def check_output_path(cfg: DictConfig, out: Path, files: list[Path]) -> None:
    """Refuse a data.path that is a source file, a folder, or a file that preprocess did not
    write (unless overwrite=true): a file mrirecon did not write, or another subcommand's output
    (a recon.h5 of reconstruct). A symbolic link is written through (its target is checked)."""
    if any(Path(p).resolve() == out.resolve() for p in files):
        raise UserError(f"data.path: {out} is the source file itself; choose another output path")
    if out.is_dir():
        raise UserError(f"data.path: {out} is a folder; give the path of the .h5 file to write")
    if not out.exists() or overwrite(cfg):
        return
    made_by = producer(out)
    if made_by is None:
        raise UserError(
            f"data.path: {out} exists and was not written by mrirecon (no mrirecon provenance attributes): "
            "choose another data.path, or overwrite=true to replace it"
        )
    if made_by != "preprocess":
        raise UserError(
            f"data.path: {out} exists and is an output of mrirecon {made_by}, not a processed file of "
            "preprocess: choose another data.path, or overwrite=true to replace it"
        )


def write_locked(cfg: DictConfig, out: Path, files: list[Path], write: Callable[[], list[float]]) -> list[float]:
    """`write()` the file data.path holding its lock (one writer at a time: locks.py), after
    checking it again under the lock and removing the temporary files a killed run left there."""
    target = write_target(out)
    make_parent(target)
    with held(file_lock(out), "mrirecon preprocess", "data.path", str(out)):
        check_output_path(cfg, out, files)
        remove_temporaries(target.parent, target.name)
        stds = write()
    if HydraConfig.initialized():  # the run dir's record names the file this run wrote
        ownership.record(run_dir(), [str(target.resolve())], "preprocess")
    return stds
