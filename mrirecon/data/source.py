"""One interface over every raw input of `preprocess`, and format detection by content.

A `Source` yields DeepInPy slices (img, maps, ksp, mask; optional second reference `rss`) one
at a time. Readers are registered `Format`s, one module each in mrirecon/data/formats/: the
embedded sample (a named source: data.source=sample), DeepInPy HDF5, raw k-space (.npy or HDF5
`ksp` without maps), fastMRI multi-coil HDF5, ISMRMRD raw HDF5 and BART .cfl/.hdr.
`open_source` picks the reader from the file's content (HDF5 signature and keys, the .npy magic,
BART's text header), not from its suffix; several files or a folder become one `MultiSource`.

Fully sampled k-space from fastMRI, ISMRMRD and BART is completed by `completion.complete_slice`: ESPIRiT
maps, the SENSE-combined reference sum_c conj(S_c) ifft2c(k_c), and an undersampling mask from
`data/masks.py`. Undersampled k-space keeps its own pattern as the mask and has no reference.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import h5py
import numpy as np

from mrirecon.data.completion import ReadOptions
from mrirecon.data.h5 import Slice
from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.data.splits import subjects_of
from mrirecon.errors import UserError
from mrirecon.registry import Registry

__all__ = [
    "FORMATS",
    "Format",
    "MultiSource",
    "ReadOptions",
    "Source",
    "detect",
    "format_options",
    "open_source",
    "register_format",
    "source_files",
]


class Source(Protocol):
    """What preprocess reads: N slices of C coils, (X, Y) pixels each.

    Attributes: path (a name for messages), num_slices, num_coils, shape (X, Y), has_reference
    (slices carry a reference image), has_rss (slices carry `rss`), recon_size (the centre crop
    (x, y) of the image that metrics use, e.g. fastMRI's 320x320 reconSpace; None: the whole
    image), attrs (provenance; `patient_id`, when the file records one, joins the files of one
    patient into one subject when several files are read together: see MultiSource).
    """

    path: Any
    num_slices: int
    num_coils: int
    shape: tuple[int, int]
    has_reference: bool
    has_rss: bool
    recon_size: tuple[int, int] | None
    attrs: dict[str, Any]

    def __len__(self) -> int: ...

    def read(self, i: int) -> Slice:
        """Slice i: img (X, Y), maps and ksp (C, X, Y) complex64, mask (X, Y) float32."""

    def splits(self) -> dict[str, np.ndarray] | None:
        """Train / val / test indices stored in the source, or None."""

    def subjects(self) -> np.ndarray | None:
        """The subject of every slice (N,) int64, or None when the source does not record it."""

    def close(self) -> None: ...


# ---------------------------------------------------------------------------- format detection

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"


def _head(path: Path, size: int = 16) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(size)


@functools.lru_cache(maxsize=32)
def _hdf5_keys_cached(path: str, mtime: float) -> frozenset[str]:
    with open_hdf5(path) as f:
        keys = set(f.keys())
        if "dataset" in f and isinstance(f["dataset"], h5py.Group):
            keys |= {f"dataset/{k}" for k in f["dataset"]}
        return frozenset(keys)


def hdf5_keys(path: Path) -> frozenset[str] | None:
    """The top-level keys of an HDF5 file (plus `dataset/<key>` for ISMRMRD), or None when the
    file is not HDF5; raises UserError when it has the HDF5 signature but cannot be read."""
    if not h5py.is_hdf5(path) and _head(path, 8) != HDF5_SIGNATURE:
        return None
    return _hdf5_keys_cached(str(path), path.stat().st_mtime)


def cfl_base(path: Path) -> Path | None:
    """The BART base name (without .cfl/.hdr) when `path` names a .cfl/.hdr pair whose header
    starts with '# Dimensions', else None."""
    base = path.with_suffix("") if path.suffix in (".cfl", ".hdr") else path
    hdr = base.with_name(base.name + ".hdr")
    try:
        return base if hdr.is_file() and _head(hdr, 12) == b"# Dimensions" else None
    except OSError:
        return None


class Format:
    """A reader of `data.source`, registered by `@register_format("<name>")` in its own module
    of mrirecon/data/formats/ (or of an external plug-in: mrirecon/registry.py).

    A file format is chosen by `detect` (the file's content, not its suffix), trying formats in
    order of `priority` (lower first: a specific layout before a generic one that would also
    match); a named source (`named`, e.g. the embedded sample) by `data.source=<name>`. A format
    with settings of its own reads them from the `data` config section in `options` (its keys,
    documented in conf/preprocess.yaml or given with +data.<key>=...), and finds them again in `open`
    with `options.of(<its options class>)`.
    """

    name: ClassVar[str] = ""  # set by register_format
    description: ClassVar[str] = ""  # what it reads, for messages
    priority: ClassVar[int] = 100
    named: ClassVar[bool] = False

    @classmethod
    def detect(cls, path: Path) -> bool:
        """Whether the file `path` is in this format (never called for a named source)."""
        return False

    @classmethod
    def options(cls, data: Mapping[str, Any]) -> object | None:
        """This format's own settings from the `data` config section, or None when it has none
        (ValueError '<key>: ...' naming the key under `data` for a bad value)."""
        return None

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        """The reader of `path` (a named source: its name)."""
        raise NotImplementedError


F = TypeVar("F", bound=type[Format])
FORMATS: Registry[type[Format]] = Registry("data format", "mrirecon.data.formats")


def register_format(name: str) -> Callable[[F], F]:
    """Class decorator: make a format (or with `named`, the source `data.source=<name>`) readable."""
    return FORMATS.register(name, set_name=True)


def file_keys(path: Path) -> frozenset[str]:
    """The HDF5 keys of a file (`hdf5_keys`), empty for anything that is not an HDF5 file."""
    return (hdf5_keys(path) or frozenset()) if path.is_file() else frozenset()


def is_npy(path: Path) -> bool:
    """Whether `path` is a NumPy .npy file (by its magic bytes)."""
    return path.is_file() and _head(path, 6) == NPY_MAGIC


def file_formats() -> list[type[Format]]:
    """The registered file formats in the order `detect` tries them."""
    return sorted((f for f in FORMATS.values() if not f.named), key=lambda f: (f.priority, f.name))


def named_source(spec: object) -> type[Format] | None:
    """The named source (e.g. the sample) that data.source `spec` names, or None."""
    fmt = FORMATS.get(spec) if isinstance(spec, str) else None
    return fmt if fmt is not None and fmt.named else None


def format_options(data: Mapping[str, Any]) -> tuple[object, ...]:
    """The own settings of every registered format, read from the `data` config section
    (ValueError naming the key under `data`)."""
    found = (fmt.options(data) for fmt in FORMATS.values())
    return tuple(o for o in found if o is not None)


def detect(path: Path) -> type[Format]:
    """The format of `path` by content, or a UserError naming what was expected."""
    if not path.exists() and cfl_base(path) is None:
        raise UserError(f"data.source: {path} not found")
    if path.is_dir():
        raise UserError(f"{path}: is a folder (a folder of raw files is read only as data.source itself)")
    formats = file_formats()
    for fmt in formats:
        if fmt.detect(path):
            return fmt
    keys = hdf5_keys(path) if path.is_file() else None
    what = f"an HDF5 file with keys {sorted(keys)}" if keys is not None else "not HDF5, .npy or BART .cfl/.hdr"
    expected = "; ".join(f.description for f in formats)
    raise UserError(f"{path}: {what}, which is none of the formats mrirecon reads (expected: {expected})")


def source_files(spec: str | Sequence[str]) -> list[Path]:
    """The files named by data.source: one path, a list of paths, or a folder (its .h5, .npy and
    .cfl files, sorted by name); none for a named source (the sample)."""
    if named_source(spec) is not None:
        return []
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise UserError("data.source: the list of files is empty")
        return [Path(str(p)) for p in spec]
    path = Path(str(spec))
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".h5", ".hdf5", ".npy", ".cfl"))
        if not files:
            raise UserError(f"data.source: folder {path} holds no .h5, .npy or .cfl files")
        return files
    return [path]


def open_source(spec: str | Sequence[str], options: ReadOptions) -> Source:
    """The reader for data.source (a named source, one file, a list, or a folder), chosen by
    name or by content."""
    named = named_source(spec)
    if named is not None:
        return named.open(Path(str(spec)), options)
    files = source_files(spec)
    sources: list[Source] = []
    try:
        for path in files:
            sources.append(detect(path).open(path, options))
    except BaseException:
        for s in sources:
            s.close()
        raise
    return sources[0] if len(sources) == 1 else MultiSource(sources, options.slices_per_subject)


# ---------------------------------------------------------------------------- several files


def _check_compatible(s: Source, first: Source) -> None:
    """UserError unless `s` can be read together with `first` (coils, shape, recon size, sampling)."""
    if (s.num_coils, tuple(s.shape)) != (first.num_coils, tuple(first.shape)):
        raise UserError(
            f"data.source: {s.path} has {s.num_coils} coils of {s.shape[0]}x{s.shape[1]}, "
            f"{first.path} {first.num_coils} coils of {first.shape[0]}x{first.shape[1]}: "
            "files read together must match"
        )
    if s.recon_size != first.recon_size:
        raise UserError(
            f"data.source: {s.path} has recon size {s.recon_size}, {first.path} {first.recon_size}: "
            "files read together must match"
        )
    if s.has_reference != first.has_reference:
        raise UserError(
            f"data.source: {s.path} and {first.path} differ in sampling (one fully sampled, the "
            "other not): files read together must match"
        )


class MultiSource:
    """Several files read as one: slices in file order.

    Subjects (numbered in order of first appearance): a file that records a patient ID (attrs
    `patient_id`: fastMRI's attribute, ISMRMRD's subjectInformation/patientID) belongs wholly to
    that patient, so files of one patient share a subject; otherwise a file keeps the subjects it
    records (a DeepInPy `subject` key; one per file for fastMRI, ISMRMRD and BART volumes), else
    its slices form blocks of `slices_per_subject`, else the whole file is one subject. The
    subject names (patient IDs, else file stems) go to attrs `subject_ids`, one per subject.

    Args:
        sources: the files' readers; same coils, image shape, recon size and sampling.
        slices_per_subject: slices per subject in files that record no subjects (None: one
            subject per such file).
    """

    def __init__(self, sources: Sequence[Source], slices_per_subject: int | None = None) -> None:
        first = sources[0]
        for s in sources[1:]:
            _check_compatible(s, first)
        self.sources = list(sources)
        self.slices_per_subject = slices_per_subject
        self.path = ",".join(str(s.path) for s in sources)
        self.num_slices = sum(len(s) for s in sources)
        self.num_coils, self.shape = first.num_coils, (int(first.shape[0]), int(first.shape[1]))
        self.has_reference = first.has_reference
        self.has_rss = all(s.has_rss for s in sources)
        self.recon_size = first.recon_size
        self._starts = np.cumsum([0] + [len(s) for s in sources])
        self._subjects: np.ndarray | None = None
        self._volumes: np.ndarray | None = None
        self.subject_rules: list[str] = []
        self.attrs: dict[str, Any] = {"files": json.dumps([str(s.path) for s in sources])}

    def __len__(self) -> int:
        return self.num_slices

    def read(self, i: int) -> Slice:
        k = int(np.searchsorted(self._starts, i, side="right") - 1)
        s = self.sources[k].read(int(i - self._starts[k]))
        return s if self.has_rss else dataclasses.replace(s, rss=None)

    def splits(self) -> None:
        """Splits stored in the single files do not apply to their concatenation."""
        return

    def subjects(self) -> np.ndarray:
        """The subject of every slice (N,) int64 (see the class docstring); also sets attrs
        `subject_ids` and `subject_rules` (how each file's subjects were found).

        Raises ValueError naming `slices_per_subject` when a file is not a whole number of subjects.
        """
        if self._subjects is not None:
            return self._subjects
        keys: list[tuple[Any, ...]] = []
        volumes: list[tuple[Any, ...]] = []
        names: dict[tuple[Any, ...], str] = {}
        self.subject_rules = []
        for k, s in enumerate(self.sources):
            stem = Path(str(s.path)).stem
            patient = str(s.attrs.get("patient_id", "")).strip()
            recorded, rule = s.subjects(), "recorded in the file"
            if recorded is None:
                recorded, rule = (
                    self._unrecorded(s),
                    ("one per file" if self.slices_per_subject is None else "slices_per_subject"),
                )
            own: list[tuple[Any, ...]] = [("file", k, int(v)) for v in np.asarray(recorded).reshape(-1)]
            volumes += own
            if patient:
                own, rule = [("patient", patient)] * len(s), "patient ID"
                names[own[0]] = patient
            else:
                several = len(set(own)) > 1
                for key in own:
                    names.setdefault(key, f"{stem}#{key[2]}" if several else str(s.attrs.get("subject_id", stem)))
            keys += own
            self.subject_rules.append(rule)
        numbers: dict[tuple[Any, ...], int] = {}
        self._subjects = np.array([numbers.setdefault(key, len(numbers)) for key in keys], dtype=np.int64)
        volume_numbers: dict[tuple[Any, ...], int] = {}
        self._volumes = np.array([volume_numbers.setdefault(key, len(volume_numbers)) for key in volumes], np.int64)
        self.attrs["subject_ids"] = json.dumps([names[key] for key in numbers])
        self.attrs["subject_rules"] = json.dumps(self.subject_rules)
        return self._subjects

    def volumes(self) -> np.ndarray:
        """The source volume of every slice (N,) int64: each file's own subjects (recorded, blocks of
        slices_per_subject, else the whole file), never joined across files, so two files of one
        patient are two volumes of one subject (fastMRI's per-volume metrics are per file)."""
        self.subjects()
        assert self._volumes is not None
        return self._volumes

    def _unrecorded(self, s: Source) -> np.ndarray:
        """Subjects of a file that records none: blocks of slices_per_subject, else one."""
        if self.slices_per_subject is None:
            return np.zeros(len(s), dtype=np.int64)
        try:
            return subjects_of(len(s), self.slices_per_subject)
        except ValueError as exc:
            raise ValueError(f"slices_per_subject: {exc} ({s.path})") from None

    def close(self) -> None:
        for s in self.sources:
            s.close()
