"""A dataset folder: the processed files of a sharded preprocess (one per raw file) and their
index, read as one dataset.

Layout: `<folder>/<raw file stem>.h5` (DeepInPy files written by preprocess, data/h5.py) and
`<folder>/index.json`: the raw files of the collection (all of them, whichever shard wrote
them), the shard count, the preprocess settings every part was made with, the split fractions
and, per part written so far, its raw file, shard, slice count, subject ids and the size and
modification time it had when preprocess wrote it. The index lists a file only after the file
is complete (preprocess adds it under the index's lock), so it never lists a partial file;
`DatasetFolder` refuses a folder whose index misses a raw file (a shard not yet run or failed)
or lists a file that is gone or changed.

Splits: a subject's split is a hash of its id (`subject_split`: patient ID, else the raw file's
stem), so it stays where it is when files are added; subjects are numbered in the order of first
appearance over the parts sorted by name, volumes per part (one raw file: its own volumes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrirecon.data.h5 import DeepInPyFile, Slice
from mrirecon.data.header import SPLITS, Compression, Header
from mrirecon.data.splits import check_fractions
from mrirecon.errors import UserError

INDEX = "index.json"
FORMAT = "mrirecon dataset folder"  # the index's `format`: what tells an index of ours from a user's file
VERSION = 1
# header fields every part of one dataset shares (a part that differs is refused)
SHARED = ("variant", "transpose", "has_reference", "has_rss", "recon_size", "maps", "noise_std_definition")


def subject_split(subject_id: str, val_fraction: float, test_fraction: float) -> str:
    """The split of subject `subject_id`: u = the first 8 bytes of SHA-256(id) / 2^64 in [0, 1);
    test when u < test_fraction, val when u < test_fraction + val_fraction, else train. Stable:
    it depends on the id alone, not on the other subjects (a subject keeps its split when files
    are added). Raises ValueError naming the fraction when it is not in [0, 1) or they sum to 1."""
    check_fractions(val_fraction, test_fraction)
    u = int.from_bytes(hashlib.sha256(subject_id.encode()).digest()[:8], "big") / 2.0**64
    return "test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train"


def hash_splits(
    subjects: np.ndarray, ids: list[str], val_fraction: float, test_fraction: float
) -> dict[str, np.ndarray]:
    """Train / val / test slice indices (K,) int64 of whole subjects by `subject_split`.

    Args:
        subjects: the subject number of each slice (N,), an index into `ids`.
        ids: the id of each subject number.
    """
    subjects = np.asarray(subjects, dtype=np.int64).reshape(-1)
    of = np.array([subject_split(i, val_fraction, test_fraction) for i in ids] or [""], dtype=object)
    return {name: np.flatnonzero(of[subjects] == name).astype(np.int64) for name in SPLITS}


def stamp(path: Path) -> dict[str, int]:
    """{'bytes', 'mtime_ns'} of the file `path` (what the index records, and checks on read)."""
    stat = path.stat()
    return {"bytes": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}


@dataclass
class Part:
    """One processed file of the folder (an entry of the index)."""

    source: str  # the raw file (absolute path)
    shard: int
    slices: int
    subject_ids: list[str]  # the id of each of the file's subject numbers 0, 1, ...
    bytes: int
    mtime_ns: int
    source_stamp: dict[str, int] = field(default_factory=dict)  # the raw file's size and time when read


@dataclass
class Index:
    """index.json: the collection (`sources`, absolute, sorted; `shards`), the settings its parts
    were made with (`settings`: preprocess's data keys and seed) and the parts written so far."""

    sources: list[str]
    shards: int
    settings: dict[str, Any]
    val_fraction: float
    test_fraction: float
    parts: dict[str, Part] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body = {k: v for k, v in dataclasses.asdict(self).items() if k != "parts"}
        parts = {name: dataclasses.asdict(p) for name, p in sorted(self.parts.items())}
        return {"format": FORMAT, "version": VERSION, **body, "parts": parts}

    def missing(self) -> list[str]:
        """The raw files of the collection that no part was written from yet."""
        done = {p.source for p in self.parts.values()}
        return [s for s in self.sources if s not in done]


def part_name(source: Path) -> str:
    """The processed file of raw file `source` in the folder: its stem + .h5 (BART: base name)."""
    name = (
        source.name[: -len(source.suffix)] if source.suffix in (".h5", ".hdf5", ".npy", ".cfl", ".hdr") else source.name
    )
    return f"{name}.h5"


def is_index(path: Path) -> bool:
    """Whether `path` is an index written by mrirecon (its `format` says so)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == FORMAT


def read_index(folder: Path) -> Index:
    """The index of dataset folder `folder` (UserError naming the file when it is not one)."""
    path = folder / INDEX
    if not path.is_file():
        raise UserError(
            f"{folder}: a folder without {INDEX}, not a dataset folder of 'mrirecon preprocess data.shards=K'"
        )
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
        parts = {str(k): Part(**v) for k, v in data["parts"].items()}
        body = {k: data[k] for k in ("sources", "shards", "settings", "val_fraction", "test_fraction")}
        return Index(**body, parts=parts)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise UserError(f"{path}: not an index written by mrirecon preprocess ({exc})") from None


def check_parts(folder: Path, index: Index) -> None:
    """Refuse a folder whose index misses a raw file of the collection, or lists a file that is
    gone or is no longer the one preprocess wrote (another size or modification time)."""
    missing = index.missing()
    if missing:
        shards = sorted({index.sources.index(s) % index.shards for s in missing})
        raise UserError(
            f"{folder}: incomplete: {len(missing)} of {len(index.sources)} raw files not processed yet "
            f"({Path(missing[0]).name}{' and more' if len(missing) > 1 else ''}): run 'mrirecon preprocess' "
            f"with data.shards={index.shards} data.shard={','.join(map(str, shards))} (or data.shard=null)"
        )
    for name, part in index.parts.items():
        path = folder / name
        if not path.is_file() or stamp(path) != {"bytes": part.bytes, "mtime_ns": part.mtime_ns}:
            what = "is gone" if not path.is_file() else "was changed after preprocess wrote it"
            raise UserError(
                f"{path} {what}: rerun 'mrirecon preprocess' with data.shards={index.shards} data.shard={part.shard}"
            )


def combined_header(folder: Path, parts: list[DeepInPyFile], splits: dict[str, np.ndarray], ids: list[str]) -> Header:
    """The folder's header: the parts' shared fields (checked equal), its splits, the source
    id (the folder and a digest of the parts' sources) and the parts' prewhitening, masks and
    coil compression combined."""
    first = parts[0].header
    for p in parts[1:]:
        for name in SHARED:
            if getattr(p.header, name) != getattr(first, name):
                raise UserError(
                    f"{p.path}: its {name} {getattr(p.header, name)!r} differs from {parts[0].path}'s "
                    f"{getattr(first, name)!r}: the parts of a dataset folder must be made alike"
                )
    sources = sorted(str(p.header.source_id) for p in parts)
    digest = hashlib.sha1("\n".join(sources).encode()).hexdigest()[:12]
    comp = [p.header.coil_compression for p in parts]
    compression = None
    if all(c is not None for c in comp):
        energies = [(c.energy_min, c.energy_mean, len(p)) for c, p in zip(comp, parts) if c is not None]
        compression = Compression(
            comp[0].description if comp[0] else "",
            comp[0].coils_acquired if comp[0] else 0,
            min(e[0] for e in energies),
            sum(e[1] * e[2] for e in energies) / sum(e[2] for e in energies),
        )
    attrs = {**first.source_attrs, "subject_ids": json.dumps(ids), "files": len(parts)}
    return dataclasses.replace(
        first,
        source=str(folder),
        source_id=f"{folder.resolve()} ({len(parts)} files, {digest})",
        source_attrs=attrs,
        splits={name: tuple(int(i) for i in splits[name]) for name in SPLITS},
        prewhitened=all(p.header.prewhitened for p in parts),
        mask=",".join(sorted({str(p.header.mask) for p in parts})),
        coil_compression=compression,
    )


def numbered(parts: list[DeepInPyFile], index: Index, names: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(subject (N,), volume (N,), subject ids): the parts' subjects numbered by first appearance
    of their id over the parts in order (files of one patient share it), volumes per part."""
    numbers: dict[str, int] = {}
    subjects, volumes, offset = [], [], 0
    for part, name in zip(parts, names):
        ids = index.parts[name].subject_ids
        local = part.subjects()
        local = np.zeros(len(part), np.int64) if local is None else local
        if len(ids) <= int(local.max(initial=0)):
            raise UserError(f"{part.path}: its subjects are not those {INDEX} lists ({len(ids)} ids)")
        subjects.append(np.array([numbers.setdefault(ids[k], len(numbers)) for k in local.tolist()], np.int64))
        own = part.volumes()
        own = local if own is None else own
        volumes.append(own + offset)
        offset += int(own.max(initial=-1)) + 1
    return np.concatenate(subjects), np.concatenate(volumes), list(numbers)


class DatasetFolder(DeepInPyFile):
    """The parts of a dataset folder read as one DeepInPy dataset (slices in the order of the
    parts' names), with the interface of `DeepInPyFile` (read, read_image, acquired, noise_std,
    subjects, volumes, splits, split_indices, header). Each part opens lazily in each process.

    Args:
        path: the folder (holding index.json).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:  # not super().__init__: that opens one file
        self.path = Path(path)
        self.transpose = False
        self._file, self._pid = None, None
        self.index = read_index(self.path)
        check_parts(self.path, self.index)
        names = sorted(self.index.parts)
        self.parts = [DeepInPyFile(self.path / name) for name in names]
        first = self.parts[0]
        for p in self.parts[1:]:
            if (p.num_coils, p.shape) != (first.num_coils, first.shape):
                raise UserError(
                    f"{p.path}: {p.num_coils} coils of {p.shape[0]}x{p.shape[1]}, {first.path} {first.num_coils} "
                    f"of {first.shape[0]}x{first.shape[1]}: the parts of a dataset folder must match"
                )
        self.num_slices, self.num_coils, self.shape = sum(len(p) for p in self.parts), first.num_coils, first.shape
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])
        self._subjects, self._volumes, ids = numbered(self.parts, self.index, names)
        self._splits = hash_splits(self._subjects, ids, self.index.val_fraction, self.index.test_fraction)
        self.header = combined_header(self.path, self.parts, self._splits, ids)
        self.attrs = self.header.attributes()
        self.has_reference, self.has_rss, self.recon_size = first.has_reference, first.has_rss, first.recon_size

    def _part(self, i: int) -> tuple[DeepInPyFile, int]:
        if not 0 <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self.parts[k], int(i - self._starts[k])

    def read(self, i: int) -> Slice:
        part, j = self._part(i)
        return part.read(j)

    def read_image(self, i: int) -> np.ndarray:
        part, j = self._part(i)
        return part.read_image(j)

    def acquired(self, i: int) -> tuple[int, int, int, int]:
        part, j = self._part(i)
        return part.acquired(j)

    def noise_std(self, i: int) -> float | None:
        part, j = self._part(i)
        return part.noise_std(j)

    def subjects(self) -> np.ndarray:
        return self._subjects

    def volumes(self) -> np.ndarray:
        return self._volumes

    def splits(self) -> dict[str, np.ndarray]:
        return self._splits

    def close(self) -> None:
        for p in self.parts:
            p.close()
