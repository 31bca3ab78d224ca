"""DeepInPy-format HDF5: validated lazy reading and atomic writing.

Keys (N slices, C coils, X x Y pixels):
    imgs  (N, X, Y)     complex  reference image (coil-combined; real magnitude also accepted)
    maps  (N, C, X, Y)  complex  coil sensitivities
    ksp   (N, C, X, Y)  complex  fully sampled centred k-space
    masks (N, X, Y)     real     sampling pattern in {0, 1}
Files written by mrirecon may add `rss` (N, X, Y) float32, a second reference (fastMRI's
`reconstruction_rss`, zero outside the recon size), and always add three per-slice arrays, `noise_std`
(N,) float32 (the estimated noise standard deviation per k-space sample), `subject` (N,) int64 (the
subject of each slice: the unit of splits and paired tests), `volume` (N,) int64 (the source volume,
i.e. file, of each slice: the unit of per-volume metrics; two files of one patient are two volumes of
one subject) and `acquired` (N, 4) int64 (the acquired k-space region x0, x1, y0, y1,
half-open: outside it the grid is zero padding, e.g. fastMRI's padded phase-encode columns, never
measured), and attributes (source, variant, splits, version, creation time, and `recon_size` (2,):
the centre crop of the image that metrics use, fastMRI's reconSpace, when smaller than X x Y).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from mrirecon.data.h5_checks import check_per_slice_keys, parse_cfl_axes, read_attributes
from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.errors import UserError
from mrirecon.io.files import temporary_sibling, write_target
from mrirecon.io.memory import require

KEYS = ("imgs", "maps", "ksp", "masks")
SPLITS = ("train", "val", "test")


@dataclass
class Slice:
    """One slice: img (X, Y) complex64, maps (C, X, Y) complex64, ksp (C, X, Y) complex64,
    mask (X, Y) float32 in {0, 1}, the noise standard deviation per k-space sample when it
    is known (simulated data) or was estimated (processed files), None otherwise, an optional
    second reference `rss` (X, Y) float32 (fastMRI's root-sum-of-squares reconstruction), and
    the acquired k-space region (x0, x1, y0, y1), half-open, outside which the grid is zero
    padding that was never measured (None: the whole grid)."""

    img: np.ndarray
    maps: np.ndarray
    ksp: np.ndarray
    mask: np.ndarray
    noise_std: float | None = None
    rss: np.ndarray | None = None
    acquired: tuple[int, int, int, int] | None = None


def whole_grid(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """The acquired region (x0, x1, y0, y1) of a grid without padding: all of (X, Y)."""
    return 0, int(shape[-2]), 0, int(shape[-1])


def region_size(acquired: tuple[int, int, int, int]) -> int:
    """Number of k-space locations in an acquired region (x0, x1, y0, y1)."""
    x0, x1, y0, y1 = acquired
    return (x1 - x0) * (y1 - y0)


def region_mask(acquired: tuple[int, int, int, int], shape: tuple[int, int]) -> np.ndarray:
    """(X, Y) float32: 1 inside the acquired region, 0 in the padding."""
    x0, x1, y0, y1 = acquired
    out = np.zeros(shape, np.float32)
    out[x0:x1, y0:y1] = 1
    return out


PRODUCER = "mrirecon_subcommand"  # the attribute naming the subcommand that wrote an HDF5 file


def producer(path: Path) -> str | None:
    """The mrirecon subcommand that wrote the HDF5 file `path`: its `mrirecon_subcommand`
    attribute (preprocess: a processed file; reconstruct: a recon.h5), or for files written
    before it, 'reconstruct' for a `recon` array with the attributes method, variant and
    data_path and 'preprocess' for `ksp` with `mrirecon_version`; None for any other file."""
    try:
        with h5py.File(path, "r") as f:
            attrs = set(f.attrs)
            if PRODUCER in attrs:
                return str(f.attrs[PRODUCER])
            if "recon" in f and {"method", "variant", "data_path"} <= attrs:
                return "reconstruct"
            return "preprocess" if "mrirecon_version" in attrs and "ksp" in f else None
    except (OSError, KeyError, TypeError, ValueError):
        return None


def _expected_shapes(n: int, c: int, x: int, y: int) -> dict[str, tuple[int, ...]]:
    return {"imgs": (n, x, y), "maps": (n, c, x, y), "ksp": (n, c, x, y), "masks": (n, x, y)}


class DeepInPyFile:
    """Read a DeepInPy-format file slice by slice, validating as it goes.

    Metadata (keys, shapes, dtypes) is checked on open; values (finite, binary masks) are
    checked on each slice read, so a 50 GB file opens instantly. The HDF5 handle is opened
    lazily in each process, so the object can be handed to DataLoader workers.

    Args:
        path: the .h5 file.
        transpose: swap the last two axes of every array on read (e.g. 256x320 -> 320x256).
    """

    def __init__(self, path: str | os.PathLike[str], transpose: bool = False) -> None:
        self.path = Path(path)
        self.transpose = transpose
        self._file: h5py.File | None = None
        self._pid: int | None = None
        f = self._handle()
        missing = [k for k in KEYS if k not in f]
        if missing:
            raise UserError(f"{self.path}: missing key '{missing[0]}' (a DeepInPy file needs {', '.join(KEYS)})")
        for key in KEYS:
            if not isinstance(f[key], h5py.Dataset):
                raise UserError(f"{self.path}: key '{key}' is a group, expected an array")
        if f["maps"].ndim != 4:
            raise UserError(f"{self.path}: key 'maps' has shape {f['maps'].shape}, expected (N, C, X, Y)")
        n, c, x, y = f["maps"].shape
        for key, shape in _expected_shapes(n, c, x, y).items():
            if f[key].shape != shape:
                raise UserError(
                    f"{self.path}: key '{key}' has shape {f[key].shape}, expected {shape} to match 'maps' {f['maps'].shape}"
                )
        if min(n, c, x, y) == 0:
            raise UserError(f"{self.path}: key 'maps' has an empty dimension {f['maps'].shape}")
        for key in ("maps", "ksp"):
            if f[key].dtype.kind != "c":
                raise UserError(f"{self.path}: key '{key}' has dtype {f[key].dtype}, expected complex64 or complex128")
        for key in ("imgs", "masks"):
            if f[key].dtype.kind not in "cfiub":
                raise UserError(f"{self.path}: key '{key}' has dtype {f[key].dtype}, expected a numeric array")
        self.num_slices, self.num_coils = int(n), int(c)
        self.shape = (int(y), int(x)) if transpose else (int(x), int(y))
        self.attrs: dict[str, Any] = read_attributes(self.path, f)
        check_per_slice_keys(self.path, f, self.num_slices, int(x), int(y))
        self._check_memory()
        self.has_reference = bool(self.attrs.get("has_reference", True))
        self.has_rss = "rss" in f
        self.recon_size = self._recon_size()
        self.cfl_axes = parse_cfl_axes(self.attrs.get("source_cfl_axes", "0,1"))  # checked by read_attributes
        self._acquired = self._acquired_regions(f)

    def _check_memory(self) -> None:
        """Refuse a file whose one slice (k-space and maps, complex64) and per-slice arrays do not
        fit in the memory available (mrirecon/io/memory.py): its header can declare far more than
        the file holds."""
        n, c, (x, y) = self.num_slices, self.num_coils, self.shape
        need = 2 * 8 * c * x * y + 64 * n
        require(need, f"{self.path}: declares {n} slices of {c} coils x {x}x{y} (one slice's k-space and maps)")

    def _recon_size(self) -> tuple[int, int] | None:
        """The `recon_size` attribute (the image crop metrics use), checked; None when absent."""
        if "recon_size" not in self.attrs:
            return None
        size = np.asarray(self.attrs["recon_size"]).reshape(-1)
        stored = self.shape[::-1] if self.transpose else self.shape
        if size.shape != (2,) or size.dtype.kind not in "iu" or not all(1 <= int(v) <= n for v, n in zip(size, stored)):
            raise UserError(
                f"{self.path}: attribute 'recon_size' is {size.tolist()}, expected 2 integers within {list(stored)}"
            )
        out = (int(size[0]), int(size[1]))
        return out[::-1] if self.transpose else out

    def _acquired_regions(self, f: h5py.File) -> np.ndarray | None:
        """The `acquired` key (N, 4), checked (0 <= x0 < x1 <= X, 0 <= y0 < y1 <= Y); None when absent."""
        if "acquired" not in f:
            return None
        regions = np.asarray(f["acquired"][()])
        x, y = self.shape[::-1] if self.transpose else self.shape
        ok = regions.shape == (self.num_slices, 4) and regions.dtype.kind in "iu"
        if ok:
            x0, x1, y0, y1 = regions.T
            ok = bool(np.all((x0 >= 0) & (x0 < x1) & (x1 <= x) & (y0 >= 0) & (y0 < y1) & (y1 <= y)))
        if not ok:
            raise UserError(
                f"{self.path}: key 'acquired' must be ({self.num_slices}, 4) integers x0 < x1 <= {x}, y0 < y1 <= {y}"
            )
        return regions[:, [2, 3, 0, 1]] if self.transpose else regions

    def acquired(self, i: int) -> tuple[int, int, int, int]:
        """The acquired k-space region (x0, x1, y0, y1) of slice `i` (the whole grid when the file
        stores none)."""
        if self._acquired is None:
            return whole_grid(self.shape)
        return tuple(int(v) for v in self._acquired[i])  # type: ignore[return-value]

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise UserError(f"{self.path}: file not found")
            self._file = open_hdf5(self.path)
            self._pid = os.getpid()
        return self._file

    def __len__(self) -> int:
        return self.num_slices

    def _read(self, key: str, i: int, dtype: type) -> np.ndarray:
        try:
            arr = np.asarray(self._handle()[key][i])
        except (OSError, KeyError) as exc:
            raise UserError(f"{self.path}: key '{key}' slice {i} cannot be read ({exc})") from None
        if not np.all(np.isfinite(arr)):
            raise UserError(f"{self.path}: key '{key}' slice {i} has non-finite values (NaN or Inf)")
        arr = arr.astype(dtype, copy=False)
        return np.ascontiguousarray(np.swapaxes(arr, -1, -2)) if self.transpose else arr

    def read(self, i: int) -> Slice:
        """Slice `i` as copies in memory, converted to complex64 / float32."""
        if not 0 <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        mask = self._read("masks", i, np.float32)
        if not np.all((mask == 0) | (mask == 1)):
            bad = np.unique(mask[(mask != 0) & (mask != 1)])[:3]
            raise UserError(f"{self.path}: key 'masks' slice {i} has values {bad.tolist()}, expected only 0 and 1")
        return Slice(
            img=self._read("imgs", i, np.complex64),
            maps=self._read("maps", i, np.complex64),
            ksp=self._read("ksp", i, np.complex64),
            mask=mask,
            noise_std=self.noise_std(i),
            rss=self._read("rss", i, np.float32) if self.has_rss else None,
            acquired=self.acquired(i),
        )

    def noise_std(self, i: int) -> float | None:
        """The stored noise estimate of slice `i` (files made by mrirecon), or None."""
        f = self._handle()
        if "noise_std" not in f:
            return None
        value = float(f["noise_std"][i])
        if not (np.isfinite(value) and value >= 0):
            raise UserError(f"{self.path}: key 'noise_std' slice {i} is {value}, expected a finite number >= 0")
        return value

    def subjects(self) -> np.ndarray | None:
        """The subject of every slice (N,) int64 (files made by mrirecon), or None."""
        f = self._handle()
        if "subject" not in f:
            return None
        return np.asarray(f["subject"][()], dtype=np.int64).reshape(-1)  # (N,) integers: checked on open

    def volumes(self) -> np.ndarray | None:
        """The source volume (file) of every slice (N,) int64 (files made by mrirecon since volumes
        were recorded), or None."""
        f = self._handle()
        if "volume" not in f:
            return None
        volumes = np.asarray(f["volume"][()], dtype=np.int64).reshape(-1)
        if volumes.shape != (self.num_slices,):
            raise UserError(f"{self.path}: key 'volume' has {volumes.size} entries, expected {self.num_slices}")
        return volumes

    def read_image(self, i: int) -> np.ndarray:
        """The reference image of slice `i` only, (X, Y) complex64 (no k-space or maps read)."""
        if not 0 <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        return self._read("imgs", i, np.complex64)

    def splits(self) -> dict[str, np.ndarray] | None:
        """The split indices stored by mrirecon (`split_train`, ...), or None if absent."""
        if not all(f"split_{s}" in self.attrs for s in SPLITS):
            return None
        out = {}
        for name in SPLITS:
            values = np.asarray(self.attrs[f"split_{name}"]).reshape(-1)
            if values.size and (values.dtype.kind not in "iu" or values.min() < 0 or values.max() >= self.num_slices):
                raise UserError(
                    f"{self.path}: attribute 'split_{name}' holds {values[:3].tolist()}..., expected slice "
                    f"indices (integers in [0, {self.num_slices - 1}])"
                )
            out[name] = values.astype(np.int64)
        return out

    def split_indices(self, split: str) -> np.ndarray:
        """Slice indices of `split` (train, val, test or all)."""
        if split == "all":
            return np.arange(self.num_slices)
        if split not in SPLITS:
            raise UserError(f"data.split: unknown split '{split}' (expected train, val, test or all)")
        splits = self.splits()
        if splits is None:
            raise UserError(f"{self.path}: no split indices stored; run 'mrirecon preprocess' or use data.split=all")
        return splits[split]

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __enter__(self) -> DeepInPyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state


class DeepInPyWriter:
    """Write a DeepInPy-format file slice by slice to a temporary name; rename on success.

    On any exception inside the `with` block the temporary file is removed and `path` is left
    as it was. Chunks are one slice, so reading and writing stream in bounded memory. The chunk
    cache is off, so each slice goes to disk in `write` and a full disk fails there, not later.

    Args:
        path: destination .h5 file.
        num_slices, num_coils, shape: N, C and (X, Y).
        attrs: file attributes (provenance); numpy arrays and scalars allowed.
        compression: h5py compression filter for the large arrays ("gzip", "lzf", a gzip level 0-9) or None.
        subjects: the subject of every slice (N,), stored as `subject`; None: one per slice.
        volumes: the source volume of every slice (N,), stored as `volume`; None: the subjects.
        rss: also store the slices' second reference `rss` (N, X, Y) float32.
        recon_size: the image crop metrics use (attribute `recon_size`); None: the whole image.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        num_slices: int,
        num_coils: int,
        shape: tuple[int, int],
        attrs: dict[str, Any] | None = None,
        compression: str | int | None = None,
        subjects: np.ndarray | None = None,
        rss: bool = False,
        recon_size: tuple[int, int] | None = None,
        volumes: np.ndarray | None = None,
    ) -> None:
        self.path = Path(path)
        self.n, self.c, self.shape = num_slices, num_coils, tuple(shape)
        self.attrs = attrs or {}
        self.compression = compression
        self.subjects = np.arange(num_slices) if subjects is None else np.asarray(subjects, dtype=np.int64)
        self.volumes = self.subjects if volumes is None else np.asarray(volumes, dtype=np.int64)
        self.rss = rss
        if recon_size is not None:
            self.attrs = {**self.attrs, "recon_size": np.asarray(recon_size, dtype=np.int64)}
        self._tmp: Path | None = None
        self._file: h5py.File | None = None

    def __enter__(self) -> DeepInPyWriter:
        self._tmp = temporary_sibling(self.path)
        try:
            self._file = h5py.File(self._tmp, "w", rdcc_nbytes=0)
        except OSError as exc:
            self._tmp.unlink(missing_ok=True)
            raise UserError(f"{self.path}: cannot create ({exc})") from None
        x, y = self.shape
        for key, shape in _expected_shapes(self.n, self.c, x, y).items():
            dtype = np.float32 if key == "masks" else np.complex64
            self._file.create_dataset(
                key, shape=shape, dtype=dtype, chunks=(1, *shape[1:]), compression=self.compression
            )
        if self.rss:
            self._file.create_dataset(
                "rss", shape=(self.n, x, y), dtype=np.float32, chunks=(1, x, y), compression=self.compression
            )
        self._file.create_dataset("noise_std", shape=(self.n,), dtype=np.float32)
        self._file.create_dataset("acquired", shape=(self.n, 4), dtype=np.int64)
        self._file["subject"] = self.subjects
        self._file["volume"] = self.volumes
        for name, value in self.attrs.items():
            self._file.attrs[name] = "" if value is None else value
        return self

    def update_attrs(self, attrs: dict[str, Any]) -> None:
        """Add or replace file attributes known only after the slices were written."""
        assert self._file is not None, "update_attrs inside the with block"
        for name, value in attrs.items():
            self._file.attrs[name] = "" if value is None else value

    def write(self, i: int, s: Slice) -> None:
        """Store slice `i` (its noise_std must be set)."""
        assert self._file is not None
        if s.noise_std is None:
            raise ValueError(f"slice {i}: noise_std is not set")
        try:
            self._file["imgs"][i] = s.img
            self._file["maps"][i] = s.maps
            self._file["ksp"][i] = s.ksp
            self._file["masks"][i] = s.mask
            self._file["noise_std"][i] = s.noise_std
            self._file["acquired"][i] = whole_grid(self.shape) if s.acquired is None else s.acquired
            if self.rss:
                if s.rss is None:
                    raise ValueError(f"slice {i}: rss is not set")
                self._file["rss"][i] = s.rss
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else exc  # e.g. 'No space left on device'
            raise UserError(f"{self.path}: write failed at slice {i} ({reason})") from None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._file is not None and self._tmp is not None
        try:
            self._file.close()
        except (OSError, RuntimeError) as close_exc:  # h5py raises RuntimeError when a flush fails
            exc_type = exc_type or type(close_exc)
            if exc is None:
                self._tmp.unlink(missing_ok=True)
                raise UserError(f"{self.path}: write failed ({close_exc})") from None
        if exc_type is None:
            os.replace(self._tmp, write_target(self.path))
        else:
            self._tmp.unlink(missing_ok=True)
