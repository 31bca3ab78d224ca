"""BART .cfl/.hdr: reading raw k-space (and optional maps), writing images, atomically.

A BART array is two files: `<base>.hdr`, text '# Dimensions' then the sizes of its (usually 16)
dimensions, and `<base>.cfl`, the complex64 values in column-major (Fortran) order. BART's
dimension order: 0 x (readout), 1 y, 2 z, 3 coils, 4 maps, ..., 13 slices. mrirecon reads 2D
multi-coil k-space in any plane of (x, y, z) whose third dimension is 1: (x, y, 1, coils, 1,
..., slices), (x, 1, z, ...) or (1, y, z, ...) (a 3D scan whose readout is already transformed,
e.g. the ESPIRiT tutorial's `full.cfl`, 1 x 230 x 180 x 8), as slices (coils, a, b) of the two
non-singleton dimensions in BART's order, and writes images back in the same plane.

Own setting: `data.cfl_maps` (conf/preprocess.yaml), BART coil maps to use instead of ESPIRiT.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from mrirecon.data.completion import (
    MapEstimator,
    OneSubjectFile,
    ReadOptions,
    complete_slice,
    fully_sampled,
    mask_label,
)
from mrirecon.data.h5 import Slice
from mrirecon.data.masks import volume_seed
from mrirecon.data.source import Format, Source, cfl_base, register_format
from mrirecon.errors import UserError
from mrirecon.io.files import atomic_path, temporary_sibling, write_target

SLICE_DIM = 13  # BART's SLICE_DIM
BART_DIMS = 16


def _base(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".cfl", ".hdr") else path


def read_dims(path: str | os.PathLike[str]) -> list[int]:
    """The dimensions in `<base>.hdr`; ValueError when the header is malformed."""
    hdr = _base(path).with_name(_base(path).name + ".hdr")
    lines = [ln.strip() for ln in hdr.read_text(errors="replace").splitlines()]
    if not lines or lines[0] != "# Dimensions" or len(lines) < 2:
        raise ValueError(f"{hdr}: not a BART header (expected '# Dimensions' then the sizes)")
    try:
        dims = [int(v) for v in lines[1].split()]
    except ValueError:
        raise ValueError(f"{hdr}: dimensions '{lines[1]}' are not integers") from None
    if not dims or min(dims) < 1:
        raise ValueError(f"{hdr}: dimensions {dims} must be >= 1")
    return dims


def read_cfl(path: str | os.PathLike[str]) -> np.ndarray:
    """The array of a .cfl/.hdr pair, memory-mapped read-only, shape = its dims (Fortran order).

    Raises ValueError when the header is malformed or the .cfl size does not match it.
    """
    base = _base(path)
    dims = read_dims(base)
    cfl = base.with_name(base.name + ".cfl")
    if not cfl.is_file():
        raise ValueError(f"{cfl}: not found (a BART array needs both .hdr and .cfl)")
    expected = math.prod(dims) * 8  # Python integers: NumPy's int64 product wraps (2^32 x 2^32 -> 0)
    if cfl.stat().st_size != expected:
        raise ValueError(
            f"{cfl}: {cfl.stat().st_size} bytes, expected {expected} for dimensions {dims} (complex64; truncated?)"
        )
    return np.memmap(cfl, dtype=np.complex64, mode="r", shape=tuple(dims), order="F")


def _header(dims: tuple[int, ...]) -> str:
    return "# Dimensions\n" + " ".join(str(d) for d in dims) + "\n"


def write_cfl(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` (its shape taken as BART dims, padded to 16) to `<base>.cfl/.hdr`, each
    file atomically (temporary name, then rename; the .cfl first)."""
    base = _base(path)
    dims = tuple(array.shape) + (1,) * max(0, BART_DIMS - array.ndim)
    with atomic_path(base.with_name(base.name + ".cfl")) as tmp:
        np.asfortranarray(array, dtype=np.complex64).reshape(-1, order="F").tofile(tmp)
    with atomic_path(base.with_name(base.name + ".hdr")) as tmp:
        tmp.write_text(_header(dims))


class CflImageWriter:
    """Write N images (A, B) one at a time as a BART array: A and B in dims `axes` (default x, y),
    the images in dim 13, every other dimension 1.

    The .cfl is filled through a memory map at a temporary name and renamed on success, then
    the .hdr is written atomically; on an exception nothing is left.
    """

    def __init__(
        self, path: str | os.PathLike[str], num_images: int, shape: tuple[int, int], axes: tuple[int, int] = (0, 1)
    ) -> None:
        self.base = _base(path)
        dims = [1] * BART_DIMS
        dims[axes[0]], dims[axes[1]], dims[SLICE_DIM] = shape[0], shape[1], num_images
        self.dims = tuple(dims)
        self.axes = axes
        self._tmp: Path | None = None
        self._map: np.memmap | None = None

    def __enter__(self) -> CflImageWriter:
        self._tmp = temporary_sibling(self.base.with_name(self.base.name + ".cfl"))
        self._map = np.memmap(self._tmp, dtype=np.complex64, mode="w+", shape=self.dims, order="F")
        return self

    def write(self, i: int, image: np.ndarray) -> None:
        """Store image i (A, B)."""
        assert self._map is not None
        index: list[int | slice] = [0] * BART_DIMS
        index[self.axes[0]] = index[self.axes[1]] = slice(None)
        index[SLICE_DIM] = i
        self._map[tuple(index)] = image

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._map is not None and self._tmp is not None
        try:
            if exc_type is None:
                self._map.flush()
            del self._map
            self._map = None
            if exc_type is None:
                os.replace(self._tmp, write_target(self.base.with_name(self.base.name + ".cfl")))
                with atomic_path(self.base.with_name(self.base.name + ".hdr")) as tmp:
                    tmp.write_text(_header(self.dims))
        finally:
            self._tmp.unlink(missing_ok=True)


def plane_axes(dims: list[int]) -> tuple[int, int] | None:
    """The two of BART's spatial dims (x 0, y 1, z 2) that form the 2D plane: those other than
    the last singleton one (z, else y, else x); None when x, y and z all exceed 1 (3D)."""
    for flat in (2, 1, 0):
        if dims[flat] == 1:
            a, b = (k for k in (0, 1, 2) if k != flat)
            return a, b
    return None


def _as_slices(arr: np.ndarray, what: str, path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """A BART array of 2D slices viewed as (a, b, coils, maps, slices), and the dims (a, b) of
    its plane (see `plane_axes`)."""
    dims = list(arr.shape) + [1] * max(0, BART_DIMS - arr.ndim)
    axes = plane_axes(dims)
    if axes is None:
        raise UserError(
            f"{path}: {what} has x, y, z = {dims[0]}, {dims[1]}, {dims[2]} (dims {dims[: arr.ndim]}): mrirecon "
            f"reads 2D planes (one of x, y, z = 1; slices in dim {SLICE_DIM}); for 3D k-space transform the "
            "readout first ('bart fft -i -u 1') and move it to the slice dim ('bart transpose 0 13'), "
            "which makes (1, y, z) planes"
        )
    extra = [d for k, d in enumerate(dims) if k not in (0, 1, 2, 3, 4, SLICE_DIM) and d != 1]
    if extra:
        raise UserError(
            f"{path}: {what} has dims {dims[: arr.ndim]}, expected a 2D plane of (x, y, z), coils, maps, "
            f"1, ..., slices in dim {SLICE_DIM}, with every other dimension 1"
        )
    full = arr.reshape(dims[:BART_DIMS], order="F")  # a view: trailing dimensions are 1
    index: list[int | slice] = [0] * BART_DIMS
    for k in (*axes, 3, 4, SLICE_DIM):
        index[k] = slice(None)
    return full[tuple(index)], axes


class CflSource(OneSubjectFile):
    """Raw k-space from a BART .cfl/.hdr pair, slice by slice (memory-mapped).

    k-space dims: a plane of (x, y, z), coils, 1, ..., slices (e.g. (x, y, 1, coils) or
    (1, y, z, coils)); optional maps in the same plane (coils, maps, slices or 1) from
    `maps` (a .cfl/.hdr base name; the first map set is used); otherwise ESPIRiT. Fully sampled
    k-space gets a reference and a generated mask (see source.complete_slice): whole lines of
    the second axis for a plane holding the readout x (a 2D scan), a Poisson disc for (y, z).
    """

    def __init__(self, path: str | os.PathLike[str], options: ReadOptions, maps: str | None = None) -> None:
        self.path = _base(path)
        self.options = options
        self._estimate = MapEstimator(options, str(self.path))
        try:
            self._ksp, self.axes = _as_slices(read_cfl(self.path), "k-space", self.path)
        except (ValueError, OSError) as exc:
            raise UserError(str(exc)) from None
        x, y, c, m, n = self._ksp.shape
        if m != 1:
            raise UserError(f"{self.path}: k-space has {m} entries in the maps dimension (4), expected 1")
        self._maps = None
        if maps:
            maps_path = _base(maps)
            try:
                self._maps, maps_axes = _as_slices(read_cfl(maps_path), "maps", maps_path)
            except (ValueError, OSError) as exc:
                raise UserError(f"maps: {exc}") from None
            mx, my, mc, _, mn = self._maps.shape
            if (mx, my, mc) != (x, y, c) or mn not in (1, n) or maps_axes != self.axes:
                raise UserError(
                    f"{maps_path}: maps of {mx}x{my}, {mc} coils, {mn} slices do not match k-space "
                    f"{self.path} ({x}x{y}, {c} coils, {n} slices) in the same plane (dims {self.axes})"
                )
        self.num_slices, self.num_coils, self.shape = n, c, (x, y)
        self.has_reference = fully_sampled(self._slice_ksp(0))
        self.has_rss = False
        self.attrs: dict[str, Any] = {
            "format": "bart_cfl",
            "subject_id": self.path.name,
            "cfl_axes": ",".join(map(str, self.axes)),  # the plane's BART dims, for recon.cfl
            "mask": mask_label(options, 0 in self.axes, self.has_reference),
        }

    def _slice_ksp(self, i: int) -> np.ndarray:
        k = np.ascontiguousarray(np.transpose(np.asarray(self._ksp[:, :, :, 0, i]), (2, 0, 1)), dtype=np.complex64)
        if not np.all(np.isfinite(k)):
            raise UserError(f"{self.path}: k-space slice {i} has non-finite values (NaN or Inf)")
        return k

    def __len__(self) -> int:
        return self.num_slices

    def read(self, i: int) -> Slice:
        """Slice i: k-space (C, X, Y) with the given or ESPIRiT maps."""
        maps = None
        if self._maps is not None:
            j = i if self._maps.shape[-1] > 1 else 0
            maps = np.ascontiguousarray(np.transpose(np.asarray(self._maps[:, :, :, 0, j]), (2, 0, 1)))
        seed = volume_seed(self.options.seed, self.path.name)  # one mask per volume, as fastMRI's
        ksp = self._slice_ksp(i)
        if maps is None:
            try:
                maps = self._estimate(ksp)
            except ValueError as exc:
                raise UserError(f"{self.path}: k-space slice {i}: {exc}") from None
        two_d = 0 in self.axes  # a plane holding the readout x: a 2D scan (whole lines); (y, z): 3D
        return complete_slice(ksp, i, self.options, maps=maps, seed=seed, two_d=two_d)

    def close(self) -> None:
        self._ksp = np.empty((0, 0, 0, 0, 0), np.complex64)  # releases the memory maps
        self._maps = None


MAPS_KEY = "cfl_maps"


@dataclass(frozen=True)
class CflOptions:
    """maps: BART .cfl coil maps (x, y, 1, coils, maps, ..., slices) to use (None: ESPIRiT)."""

    maps: str | None = None


@register_format("cfl")
class Cfl(Format):
    """Read by `CflSource`."""

    description = "BART .cfl/.hdr pair"
    priority = 50

    @classmethod
    def detect(cls, path: Path) -> bool:
        return cfl_base(path) is not None

    @classmethod
    def options(cls, data: Mapping[str, Any]) -> CflOptions:
        maps = data.get(MAPS_KEY)
        return CflOptions(None if maps is None else str(maps))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        return CflSource(cfl_base(path) or path, options, options.of(CflOptions).maps)
