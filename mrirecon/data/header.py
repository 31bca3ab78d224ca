"""The typed header of a DeepInPy file: what preprocess records about a processed file in its
HDF5 attributes, as one frozen dataclass (mrpro's `KHeader` is the model).

Only the HDF5 layer reads and writes it: `DeepInPyFile.header` (data/h5.py) parses it on open
and `DeepInPyWriter` (data/h5_writer.py) stores `Header.attributes()`; the tasks read typed
fields (`header.variant.bits`, `header.cfl_axes`), never attributes by name. Parsing is the
check: an attribute that is not what preprocess writes is one error line naming the file and
the attribute. A file that says it was written by preprocess (`mrirecon_subcommand`) must
carry every attribute preprocess writes (older files are remade by preprocess); any other
DeepInPy file (a user's own) may carry none, and gets the defaults below.

On disk (attribute: field): source, source_id, variant / bits (-1: complex) / scale / noise
(`variant`), split_train / split_val / split_test (`splits`), transpose, has_reference, mask,
maps, noise_std_definition, prewhitened (0/1), coil_compression ('none') / coils_acquired /
coil_compression_energy_min / _mean (`coil_compression`), recon_size (2,) int64,
mrirecon_subcommand (`producer`), mrirecon_version (`version`), created, source_<key> (the
source reader's provenance, `source_attrs`); anything else is kept in `extra` as stored.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mrirecon.errors import UserError

BART_DIMS = 16  # a .cfl array's dimensions (data/cfl.py)
SPLITS = ("train", "val", "test")
PRODUCER = "mrirecon_subcommand"  # the attribute naming the subcommand that wrote an HDF5 file
SOURCE = "source_"  # the prefix of the source reader's provenance attributes
Provenance = str | int | float
T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    """What preprocess made of the source's slices (attributes `bits`, `scale`, `variant`, `noise`)."""

    bits: int | None
    """4 or 8: magnitude images quantised to 2^bits levels; None: complex images (stored as -1)."""
    scale: float
    """Image side scale in (0, 1] (0.25: 320x256 -> 80x64)."""
    name: str = ""
    """The variant's name, data=<name> (e.g. 4bit_quarter)."""
    noise: str = ""
    """data.noise as text: 'source', or the regenerated noise std relative to each image's maximum."""


@dataclass(frozen=True)
class Compression:
    """Coil compression (attributes `coil_compression`, `coils_acquired`,
    `coil_compression_energy_min`, `coil_compression_energy_mean`)."""

    description: str
    """How, e.g. 'SVD (BART cc -S) per slice from the 24x24 calibration region: 8 -> 4 virtual coils'."""
    coils_acquired: int
    """The source's coils."""
    energy_min: float
    """Fraction of the calibration region's energy kept, least over slices."""
    energy_mean: float
    """... mean over slices."""


@dataclass(frozen=True)
class Header:
    """What a DeepInPy file records about itself. Defaults: what a file that records nothing
    (a user's own DeepInPy file) is taken to be."""

    producer: str | None = None
    """The mrirecon subcommand that wrote the file ('preprocess'); None: not mrirecon."""
    version: str | None = None
    """mrirecon's version when it was written."""
    created: str | None = None
    """When it was written (ISO 8601, UTC)."""
    source: str | None = None
    """data.source as given (several files: joined by commas)."""
    source_id: str | None = None
    """The resolved source files (or the named source): two files of one source share it."""
    source_attrs: dict[str, Provenance] = field(default_factory=dict)
    """The source reader's provenance (stored as source_<key>: readouts, subject ids, cfl_axes, ...)."""
    variant: Variant | None = None
    """What the slices are; None: the file does not say (not checked against data.bits/scale)."""
    splits: dict[str, tuple[int, ...]] | None = None
    """Slice indices of train, val and test (whole subjects); None: none stored."""
    transpose: bool = False
    """The source was read with its last two axes swapped (data.transpose)."""
    has_reference: bool = True
    """The slices carry reference images (raw undersampled k-space does not)."""
    has_rss: bool = False
    """The file holds the second reference `rss` (fastMRI's reconstruction_rss): a key, not an attribute."""
    recon_size: tuple[int, int] | None = None
    """The centre crop (x, y) metrics use (fastMRI's reconSpace); None: the whole image."""
    mask: str | None = None
    """The kind of the masks: drawn (lines, poisson, ...), 'acquired' or 'stored'."""
    maps: str | None = None
    """Where the coil maps come from: 'source', or the ESPIRiT settings they were re-estimated with."""
    noise_std_definition: str | None = None
    """What the per-slice `noise_std` is and how it was found; None: the file does not say."""
    prewhitened: bool = False
    """The k-space was prewhitened with the noise scans' covariance (every coil's noise std 1)."""
    coil_compression: Compression | None = None
    """Coil compression; None: the acquired coils (stored as 'none')."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Every other attribute, as stored (a user's file); the code relies on none of them."""

    def __post_init__(self) -> None:
        if "id" in self.source_attrs:
            raise ValueError("source_attrs: 'id' would be stored as source_id, the header's own field")
        if "cfl_axes" in self.source_attrs:
            parse_cfl_axes(self.source_attrs["cfl_axes"])

    @property
    def cfl_axes(self) -> tuple[int, int]:
        """The BART dims of the image plane of a .cfl source (recon.cfl keeps them); (0, 1) otherwise."""
        value = self.source_attrs.get("cfl_axes")
        return (0, 1) if value is None else parse_cfl_axes(value)

    @property
    def readouts(self) -> dict[str, int] | None:
        """The readouts of every ISMRMRD flag of the source (source_readouts); None for other formats."""
        value = self.source_attrs.get("readouts")
        return None if value is None else _readouts(value)

    def split(self, name: str) -> np.ndarray:
        """The slice indices (K,) int64 of split `name`; KeyError when the file stores no splits."""
        if self.splits is None:
            raise KeyError(name)
        return np.asarray(self.splits[name], dtype=np.int64)

    def transposed(self) -> Header:
        """The header of the file read with its last two axes swapped."""
        size = None if self.recon_size is None else (self.recon_size[1], self.recon_size[0])
        return dataclasses.replace(self, recon_size=size)

    def attributes(self) -> dict[str, Any]:
        """The HDF5 attributes that store this header (what `read_header` parses back)."""
        out: dict[str, Any] = dict(self.extra)
        text = {
            PRODUCER: self.producer,
            "mrirecon_version": self.version,
            "created": self.created,
            "source": self.source,
            "source_id": self.source_id,
            "mask": self.mask,
            "maps": self.maps,
            "noise_std_definition": self.noise_std_definition,
        }
        out.update({name: value for name, value in text.items() if value is not None})
        out.update({SOURCE + key: value for key, value in self.source_attrs.items()})
        out.update(transpose=self.transpose, has_reference=self.has_reference, prewhitened=int(self.prewhitened))
        if self.variant is not None:
            v = self.variant
            out.update(variant=v.name, bits=-1 if v.bits is None else v.bits, scale=v.scale, noise=v.noise)
        if self.splits is not None:
            out.update({f"split_{name}": self.split(name) for name in SPLITS})
        if self.recon_size is not None:
            out["recon_size"] = np.asarray(self.recon_size, dtype=np.int64)
        out.update(_compression_attributes(self.coil_compression))
        return out


def _compression_attributes(c: Compression | None) -> dict[str, Any]:
    if c is None:
        return {"coil_compression": "none"}
    return {
        "coil_compression": c.description,
        "coils_acquired": c.coils_acquired,
        "coil_compression_energy_min": c.energy_min,
        "coil_compression_energy_mean": c.energy_mean,
    }


# ---------------------------------------------------------------------------- parsing

# the attributes every file of preprocess carries (and source_<key> ones, which depend on the source)
PROCESSED = (
    "source", "source_id", "variant", "bits", "scale", "noise", "transpose", "has_reference", "mask", "maps",
    "noise_std_definition", "prewhitened", "coil_compression", "mrirecon_version", "created",
    *(f"split_{name}" for name in SPLITS),
)  # fmt: skip
COMPRESSION = ("coils_acquired", "coil_compression_energy_min", "coil_compression_energy_mean")
VARIANT = ("variant", "bits", "scale", "noise")
TEXT = (PRODUCER, "mrirecon_version", "created", "source", "source_id", "mask", "maps", "noise_std_definition")


def _is_integer(value: Any) -> bool:
    return np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iu"


def _flag(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)) or (_is_integer(value) and int(value) in (0, 1)):
        return bool(value)
    raise ValueError


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError


def _integer(value: Any) -> int:
    if _is_integer(value):
        return int(value)
    raise ValueError


def _number(value: Any) -> float:
    if np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iuf":
        return float(value)
    raise ValueError


def _bits(value: Any) -> int | None:
    bits = _integer(value)
    if bits not in (-1, 4, 8):
        raise ValueError
    return None if bits == -1 else bits


def _scale(value: Any) -> float:
    scale = _number(value)
    if not 0 < scale <= 1:
        raise ValueError
    return scale


def parse_cfl_axes(value: Any) -> tuple[int, int]:
    """The BART dims 'a,b' of the image plane of a .cfl source (attribute `source_cfl_axes`);
    ValueError unless it is two different integers in [0, 16) written 'a,b'."""
    parts = value.split(",") if isinstance(value, str) else []
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"'{value}' is not two BART dimensions 'a,b'") from None
    if a == b or not (0 <= a < BART_DIMS and 0 <= b < BART_DIMS):
        raise ValueError(f"'{value}' is not two different BART dimensions in [0, {BART_DIMS})")
    return a, b


def _readouts(value: Any) -> dict[str, int]:
    counts = json.loads(value) if isinstance(value, str) else None
    if not isinstance(counts, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
        raise ValueError(f"{value!r} is not a JSON object of readout counts")
    return {str(k): int(v) for k, v in counts.items()}


def _scalar(value: Any) -> Provenance | None:
    """A provenance value as a Python str, int or float; None for anything else (an array)."""
    if isinstance(value, str):
        return value
    if np.ndim(value) == 0 and np.asarray(value).dtype.kind in "biu":
        return int(value)
    if np.ndim(value) == 0 and np.asarray(value).dtype.kind == "f":
        return float(value)
    return None


class _Attributes:
    """A file's attributes, each taken at most once and parsed; a value that does not parse is
    one UserError naming the file and the attribute."""

    def __init__(self, path: Path, attrs: Mapping[str, Any]) -> None:
        self.path, self.attrs, self.taken = path, attrs, set[str]()

    def refuse(self, name: str, expected: str) -> UserError:
        shown = repr(self.attrs[name])[:60]
        return UserError(f"{self.path}: attribute '{name}' is {shown}, expected {expected}")

    def get(self, name: str, parse: Callable[[Any], T], expected: str) -> T | None:
        """The attribute `name` parsed, or None when absent."""
        self.taken.add(name)
        if name not in self.attrs:
            return None
        try:
            return parse(self.attrs[name])
        except (ValueError, TypeError):
            raise self.refuse(name, expected) from None

    def require(self, names: tuple[str, ...], why: str) -> None:
        missing = [name for name in names if name not in self.attrs]
        if missing:
            raise UserError(f"{self.path}: attribute '{missing[0]}' is missing ({why})")

    def rest(self) -> dict[str, Any]:
        """The attributes not taken."""
        return {name: value for name, value in self.attrs.items() if name not in self.taken}


def _variant(a: _Attributes) -> Variant | None:
    if not any(name in a.attrs for name in VARIANT):
        return None
    a.require(("bits", "scale"), "a file that records its variant records its bits and scale")
    bits = a.get("bits", _bits, "-1 (complex), 4 or 8")
    scale = a.get("scale", _scale, "a number in (0, 1]")
    assert scale is not None
    return Variant(bits, scale, a.get("variant", _text, "a string") or "", a.get("noise", _text, "a string") or "")


def _compression(a: _Attributes) -> Compression | None:
    description = a.get("coil_compression", _text, "a string")
    if description in (None, "none"):
        return None
    a.require(COMPRESSION, "a file with coil compression records its coils and the energy kept")
    coils = a.get("coils_acquired", _integer, "an integer")
    low = a.get("coil_compression_energy_min", _number, "a number")
    mean = a.get("coil_compression_energy_mean", _number, "a number")
    assert description is not None and coils is not None and low is not None and mean is not None
    return Compression(description, coils, low, mean)


def _splits(a: _Attributes, num_slices: int) -> dict[str, tuple[int, ...]] | None:
    names = [f"split_{name}" for name in SPLITS]
    a.taken.update(names)
    if not all(name in a.attrs for name in names):
        return None
    out = {}
    for name, key in zip(SPLITS, names):
        values = np.asarray(a.attrs[key]).reshape(-1)
        if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() >= num_slices):
            raise UserError(
                f"{a.path}: attribute '{key}' holds {values[:3].tolist()}..., expected slice "
                f"indices (integers in [0, {num_slices - 1}])"
            )
        out[name] = tuple(int(v) for v in values)
    return out


def _recon_size(a: _Attributes, shape: tuple[int, int]) -> tuple[int, int] | None:
    a.taken.add("recon_size")
    if "recon_size" not in a.attrs:
        return None
    size = np.asarray(a.attrs["recon_size"]).reshape(-1)
    if size.shape != (2,) or size.dtype.kind not in "iu" or not all(1 <= int(v) <= n for v, n in zip(size, shape)):
        raise UserError(
            f"{a.path}: attribute 'recon_size' is {size.tolist()}, expected 2 integers within {list(shape)}"
        )
    return int(size[0]), int(size[1])


def _source_attrs(a: _Attributes) -> dict[str, Provenance]:
    """The source_<key> attributes that are scalars (as preprocess writes them), by key; checked
    where the header reads them (cfl_axes, readouts)."""
    a.get("source_cfl_axes", parse_cfl_axes, "two BART dimensions 'a,b'")
    a.get("source_readouts", _readouts, "a JSON object of readout counts")
    out = {}
    for name, value in a.attrs.items():
        scalar = _scalar(value)
        if name.startswith(SOURCE) and name != "source_id" and scalar is not None:
            a.taken.add(name)
            out[name[len(SOURCE) :]] = scalar
    return out


def read_header(path: Path, attrs: Mapping[str, Any], num_slices: int, shape: tuple[int, int], has_rss: bool) -> Header:
    """The header of the DeepInPy file `path` (N = `num_slices` slices of `shape` (X, Y) as
    stored; `has_rss`: it holds the key `rss`) from its attributes, each checked (UserError)."""
    a = _Attributes(path, attrs)
    text = {name: a.get(name, _text, "a string") for name in TEXT}
    if text[PRODUCER] == "preprocess":
        a.require(PROCESSED, "every file of mrirecon preprocess records it: remake the file with mrirecon preprocess")
    return Header(
        producer=text[PRODUCER],
        version=text["mrirecon_version"],
        created=text["created"],
        source=text["source"],
        source_id=text["source_id"],
        source_attrs=_source_attrs(a),
        variant=_variant(a),
        splits=_splits(a, num_slices),
        transpose=bool(a.get("transpose", _flag, "true/false (or 0/1)")),
        has_reference=a.get("has_reference", _flag, "true/false (or 0/1)") is not False,
        has_rss=has_rss,
        recon_size=_recon_size(a, shape),
        mask=text["mask"],
        maps=text["maps"],
        noise_std_definition=text["noise_std_definition"],
        prewhitened=bool(a.get("prewhitened", _flag, "0 or 1")),
        coil_compression=_compression(a),
        extra=a.rest(),
    )
