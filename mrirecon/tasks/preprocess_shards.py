"""`mrirecon preprocess data.shards=K [data.shard=k]`: a collection of raw files (data.source: a
list or a folder) preprocessed as independent shards into the dataset folder data.path, one
processed file per raw file plus index.json (data/shards.py), read by train, reconstruct and
evaluate as one dataset.

File i of the collection (a folder: sorted by name) belongs to shard i mod K; one job writes one
shard (`-m data.shard=0,1,..,K-1`: a Hydra sweep, so joblib locally and SLURM through submitit)
or, with data.shard=null, all of them. Each raw file is read alone, as preprocess reads several
files (one subject per file unless it records its subjects or a patient ID), its noise drawn from
a stream of its own name (seed, crc32(name), slice), its subjects' splits by a hash of their ids.
A part is written to a temporary name and renamed when complete, then added to the index under
the index's lock, so the index lists only complete files; a raw file whose part the index
already lists, made with the same settings from the unchanged raw file, is skipped (a rerun
after a failed shard, or after files were added, processes only what is missing)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mrirecon.data.shards import (
    INDEX,
    Index,
    Part,
    hash_splits,
    is_index,
    part_name,
    read_index,
    stamp,
    subject_split,
)
from mrirecon.data.source import MultiSource, detect, named_source, source_files
from mrirecon.data.splits import check_fractions
from mrirecon.errors import UserError
from mrirecon.io import ownership
from mrirecon.io.locks import Lock, file_lock
from mrirecon.tasks.common import overwrite, plain, read_options, run_dir, source_spec
from mrirecon.tasks.preprocess_file import write_processed
from mrirecon.tasks.preprocess_output import check_output_path, compression_of
from mrirecon.tasks.preprocess_slices import VariantMaker, variant_options

log = logging.getLogger(__name__)
INDEX_WAIT_S = 300.0  # how long a shard waits for another shard's index update
UNSET = ("source", "path", "shard", "shards", "split")  # data keys that do not change a part


def shard_options(cfg: DictConfig) -> tuple[int, int | None]:
    """(data.shards, data.shard), checked: K >= 1, the shard null or in 0..K-1."""
    shards, shard = cfg.data.get("shards"), cfg.data.get("shard")
    if shards is None:
        raise UserError(f"data.shard: {shard!r} needs data.shards (the number of shards the collection is cut into)")
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise UserError(f"data.shards: {shards!r} must be null (one processed file) or an integer >= 1")
    if shard is not None and (isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards):
        raise UserError(f"data.shard: {shard!r} must be null (every shard) or an integer in 0..{shards - 1}")
    return shards, shard


def collection(cfg: DictConfig, folder: Path) -> list[Path]:
    """The raw files of data.source (absolute), checked: not the sample, distinct part names,
    none inside the dataset folder."""
    spec = source_spec(cfg)
    if named_source(spec) is not None:
        raise UserError(f"data.source: '{spec}' is a named source; data.shards cuts a list or folder of raw files")
    files = [p.absolute() for p in source_files(spec)]
    names: dict[str, Path] = {}
    for path in files:
        if path.parent.resolve() == folder.resolve():
            raise UserError(f"data.path: {folder} holds the raw file {path.name}; write the dataset folder elsewhere")
        other = names.setdefault(part_name(path), path)
        if other != path:
            raise UserError(
                f"data.source: {other.name} and {path.name} would both be written as {folder / part_name(path)}; "
                "rename one of them"
            )
    return files


def settings_of(cfg: DictConfig) -> dict[str, Any]:
    """What a part is made with: preprocess's data keys (but the source, path and shards) and the seed."""
    data = {k: v for k, v in plain(cfg.data).items() if k not in UNSET}
    return {"data": data, "seed": int(cfg.seed)}


def existing_index(cfg: DictConfig, folder: Path, wanted: Index) -> Index | None:
    """The folder's index when its parts can be kept (same settings and shard count); None when
    there is none, or overwrite=true replaces one of other settings or not mrirecon's. Refuses a
    data.path that is a file, and (without overwrite=true) an index made otherwise."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"data.path: {folder} is a file; with data.shards, data.path is the dataset folder to write")
    path = folder / INDEX
    if not path.exists():
        return None
    if not is_index(path):
        if overwrite(cfg):
            log.warning("overwrite=true: replacing %s, not written by mrirecon preprocess", path)
            return None
        raise UserError(
            f"data.path: {path} exists and was not written by mrirecon preprocess: choose another data.path, "
            "or overwrite=true to replace it"
        )
    index = read_index(folder)
    now, there = (wanted.shards, wanted.settings), (index.shards, index.settings)
    if now == there:
        return index
    if overwrite(cfg):
        log.warning("overwrite=true: %s was made with other settings; its parts are remade", folder)
        return None
    raise UserError(
        f"data.path: {folder} holds a dataset made with other settings ({difference(there, now)}): choose "
        "another data.path, or overwrite=true to remake it"
    )


def difference(there: tuple[int, dict[str, Any]], now: tuple[int, dict[str, Any]]) -> str:
    """The first setting that differs, as 'key: old there, new now'."""
    if there[0] != now[0]:
        return f"data.shards: {there[0]} there, {now[0]} now"

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(there[1]), flat(now[1])
    key = next(k for k in sorted({*a, *b}) if a.get(k) != b.get(k))
    return f"{key}: {a.get(key)!r} there, {b.get(key)!r} now"


@contextlib.contextmanager
def index_held(folder: Path) -> Iterator[None]:
    """Hold the lock of the folder's index, waiting up to INDEX_WAIT_S for another shard's update."""
    lock, deadline = Lock(file_lock(folder / INDEX), "mrirecon preprocess"), time.monotonic() + INDEX_WAIT_S
    while True:
        try:
            lock.acquire("data.path", str(folder / INDEX))
            break
        except UserError:
            if time.monotonic() > deadline:
                raise
    try:
        yield
    finally:
        lock.release()


def add_part(folder: Path, wanted: Index, name: str | None = None, part: Part | None = None) -> Index:
    """Add `part` (None: none, the index refreshed) to the index under its lock: the index as it
    is now (another shard's parts kept when made alike), without the parts whose file is gone or
    changed or whose raw file left the collection; written atomically and recorded as
    preprocess's in the run dir."""
    from mrirecon.io.files import write_json

    path = folder / INDEX
    with index_held(folder):
        current = read_index(folder) if is_index(path) else None
        alike = current is not None and (current.shards, current.settings) == (wanted.shards, wanted.settings)
        parts = dict(current.parts) if alike and current is not None else {}
        if name is not None and part is not None:
            parts[name] = part
        kept = {n: p for n, p in parts.items() if p.source in wanted.sources and listed(folder / n, p)}
        index = dataclasses.replace(wanted, parts=kept)
        write_json(path, index.to_json())
    if HydraConfig.initialized():
        ownership.record(run_dir(), [str(path.resolve())], "preprocess")
    return index


def raw_stamp(raw: Path) -> dict[str, int]:
    """The raw file's size and time (empty for a BART base name, not itself a file)."""
    return stamp(raw) if raw.is_file() else {}


def listed(path: Path, part: Part) -> bool:
    """Whether `path` is still the file the index entry `part` records."""
    return path.is_file() and stamp(path) == {"bytes": part.bytes, "mtime_ns": part.mtime_ns}


def subject_ids(source: MultiSource) -> list[str]:
    """The ids of a one-file source's subjects (in number order): 'patient:<ID>' for a file
    recording a patient ID, else 'file:<stem>' ('file:<stem>#k' for its k-th of several)."""
    import json

    names = json.loads(str(source.attrs["subject_ids"]))
    kind = "patient" if source.subject_rules == ["patient ID"] else "file"
    return [f"{kind}:{name}" for name in names]


def process_part(cfg: DictConfig, folder: Path, raw: Path, shard: int, variant: VariantMaker) -> Part:
    """Write the part of raw file `raw` (its own noise stream, splits by subject id) and return its entry."""
    out = folder / part_name(raw)
    check_output_path(cfg, out, [raw])
    source_stamp = raw_stamp(raw)
    options = read_options(cfg)
    source = MultiSource([detect(raw).open(raw, options)], options.slices_per_subject)
    val, test = float(cfg.data.val_fraction), float(cfg.data.test_fraction)

    def splitter(src: Any, subjects: np.ndarray) -> dict[str, np.ndarray]:
        return hash_splits(subjects, subject_ids(src), val, test)

    own = dataclasses.replace(variant, stream=(zlib.crc32(raw.name.encode()),))
    write_processed(cfg, source, out, [raw], own, str(raw), splitter)
    return Part(str(raw), shard, len(source), subject_ids(source), **stamp(out), source_stamp=source_stamp)


def run_shards(cfg: DictConfig) -> Path:
    """Write shard data.shard of data.shards (null: every shard) of data.source into the dataset
    folder data.path; returns the folder."""
    shards, shard = shard_options(cfg)
    variant = variant_options(cfg)
    compression_of(cfg)
    try:
        check_fractions(cfg.data.val_fraction, cfg.data.test_fraction)
    except ValueError as exc:
        raise UserError(f"data.{exc}") from None
    folder = Path(str(cfg.data.path))
    files = collection(cfg, folder)
    val, test = float(cfg.data.val_fraction), float(cfg.data.test_fraction)
    wanted = Index([str(f) for f in files], shards, settings_of(cfg), val, test)
    index = existing_index(cfg, folder, wanted)
    mine = [(k % shards, f) for k, f in enumerate(files) if shard is None or k % shards == shard]
    created, skipped = not folder.exists(), 0
    try:
        for k, raw in mine:
            name = part_name(raw)
            entry = None if index is None else index.parts.get(name)
            if entry is not None and listed(folder / name, entry) and entry.source_stamp == raw_stamp(raw):
                skipped += 1
                continue
            folder.mkdir(parents=True, exist_ok=True)
            index = add_part(folder, wanted, name, process_part(cfg, folder, raw, k, variant))
        if index is not None and index.sources != wanted.sources:  # raw files added or removed: say so
            index = add_part(folder, wanted)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: the folder this run made, holding nothing
        raise
    missing = len(wanted.sources) if index is None else len(index.missing())
    log.info(
        "shard %s of %d: %d raw files written, %d already done (same settings); %s lists %d of %d raw files%s",
        "all" if shard is None else shard,
        shards,
        len(mine) - skipped,
        skipped,
        folder / INDEX,
        len(files) - missing,
        len(files),
        "" if not missing else " (the other shards add the rest)",
    )
    if index is not None and not missing:
        warn_empty_splits(index)
    return folder


def warn_empty_splits(index: Index) -> None:
    """A warning when the complete dataset's hash splits leave val or test (asked for) without a subject."""
    ids = sorted({i for p in index.parts.values() for i in p.subject_ids})
    counts = {name: 0 for name in ("train", "val", "test")}
    for i in ids:
        counts[subject_split(i, index.val_fraction, index.test_fraction)] += 1
    if (index.val_fraction > 0 and not counts["val"]) or (index.test_fraction > 0 and not counts["test"]):
        log.warning(
            "the %d subjects split by the hash of their ids: %d train / %d val / %d test; an empty split cannot "
            "be reconstructed or validated on (more subjects, or data.split=all)",
            len(ids),
            *counts.values(),
        )
