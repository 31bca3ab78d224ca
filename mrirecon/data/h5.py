"""DeepInPy-format HDF5: validated lazy reading (writing: data/h5_writer.py).

Keys (N slices, C coils, X x Y pixels):
    imgs  (N, X, Y)     complex  reference image (coil-combined; real magnitude also accepted)
    maps  (N, C, X, Y)  complex  coil sensitivities
    ksp   (N, C, X, Y)  complex  fully sampled centred k-space
    masks (N, X, Y)     real     sampling pattern in {0, 1}
Files written by mrirecon may add `rss` (N, X, Y) float32, a second reference (fastMRI's
`reconstruction_rss`, zero outside the recon size), and always add four per-slice arrays, `noise_std`
(N,) float32 (the estimated noise standard deviation per k-space sample), `subject` (N,) int64 (the
subject of each slice: the unit of splits and paired tests), `volume` (N,) int64 (the source volume,
i.e. file, of each slice: the unit of per-volume metrics; two files of one patient are two volumes of
one subject) and `acquired` (N, 4) int64 (the acquired k-space region x0, x1, y0, y1,
half-open: outside it the grid is zero padding, e.g. fastMRI's padded phase-encode columns, never
measured). What the file records about itself (its attributes) is its typed `Header`
(data/header.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.data.h5_checks import check_arrays, check_per_slice_keys
from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.data.header import PRODUCER, SPLITS, Header, read_header
from mrirecon.errors import UserError
from mrirecon.io.memory import require


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


def producer(path: Path) -> str | None:
    """The mrirecon subcommand that wrote the HDF5 file `path`: its `mrirecon_subcommand`
    attribute (preprocess: a processed file; reconstruct: a recon.h5); None for any other file."""
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs[PRODUCER]) if PRODUCER in f.attrs else None
    except (OSError, KeyError, TypeError, ValueError):
        return None


def stored_attributes(path: Path, f: h5py.File) -> dict[str, Any]:
    """The attributes of `f` as h5py reads them (UserError when they cannot be read)."""
    try:
        return dict(f.attrs)
    except (OSError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: its attributes cannot be read ({exc.__class__.__name__})") from None


class DeepInPyFile:
    """Read a DeepInPy-format file slice by slice, validating as it goes.

    Metadata (keys, shapes, dtypes, the attributes as its typed `header`) is checked on open;
    values (finite, binary masks) are checked on each slice read, so a 50 GB file opens
    instantly. The HDF5 handle is opened lazily in each process, so the object can be handed to
    DataLoader workers. `attrs` (the attributes as stored) is the provenance a `Source` hands to
    preprocess (data/source.py), which records it as source_<key>; the tasks read `header`.

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
        n, c, x, y = check_arrays(self.path, f)
        self.num_slices, self.num_coils = n, c
        self.shape = (y, x) if transpose else (x, y)
        self.attrs = stored_attributes(self.path, f)
        header = read_header(self.path, self.attrs, n, (x, y), "rss" in f)
        self.header: Header = header.transposed() if transpose else header
        check_per_slice_keys(self.path, f, n, x, y, processed=header.producer == "preprocess")
        self._check_memory()
        # the Source protocol's view (data/source.py), when preprocess reads this file
        self.has_reference, self.has_rss, self.recon_size = header.has_reference, header.has_rss, self.header.recon_size
        self._acquired = self._acquired_regions(f)

    def _check_memory(self) -> None:
        """Refuse a file whose one slice (k-space and maps, complex64) and per-slice arrays do not
        fit in the memory available (mrirecon/io/memory.py): its header can declare far more than
        the file holds."""
        n, c, (x, y) = self.num_slices, self.num_coils, self.shape
        need = 2 * 8 * c * x * y + 64 * n
        require(need, f"{self.path}: declares {n} slices of {c} coils x {x}x{y} (one slice's k-space and maps)")

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
        """The source volume (file) of every slice (N,) int64 (every file of preprocess), or None
        when the file records none."""
        f = self._handle()
        if "volume" not in f:
            return None
        return np.asarray(f["volume"][()], dtype=np.int64).reshape(-1)  # (N,) integers: checked on open

    def read_image(self, i: int) -> np.ndarray:
        """The reference image of slice `i` only, (X, Y) complex64 (no k-space or maps read)."""
        if not 0 <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        return self._read("imgs", i, np.complex64)

    def splits(self) -> dict[str, np.ndarray] | None:
        """The split indices stored by preprocess (train, val, test: (K,) int64 each), or None."""
        if self.header.splits is None:
            return None
        return {name: self.header.split(name) for name in SPLITS}

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
