"""Writing DeepInPy-format HDF5 (data/h5.py reads it): slice by slice to a temporary name,
renamed on success, with the file's typed `Header` (data/header.py) as its attributes."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from mrirecon.data.h5 import Slice, whole_grid
from mrirecon.data.h5_checks import expected_shapes
from mrirecon.data.header import Header
from mrirecon.errors import UserError
from mrirecon.io.files import temporary_sibling, write_target


class DeepInPyWriter:
    """Write a DeepInPy-format file slice by slice to a temporary name; rename on success.

    On any exception inside the `with` block the temporary file is removed and `path` is left
    as it was. Chunks are one slice, so reading and writing stream in bounded memory. The chunk
    cache is off, so each slice goes to disk in `write` and a full disk fails there, not later.

    Args:
        path: destination .h5 file.
        num_slices, num_coils, shape: N, C and (X, Y).
        header: what the file records about itself, stored as its attributes; with
            `header.has_rss` the slices' second reference `rss` (N, X, Y) float32 is stored too.
        compression: h5py compression filter for the large arrays ("gzip", "lzf", a gzip level 0-9) or None.
        subjects: the subject of every slice (N,), stored as `subject`; None: one per slice.
        volumes: the source volume of every slice (N,), stored as `volume`; None: the subjects.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        num_slices: int,
        num_coils: int,
        shape: tuple[int, int],
        header: Header | None = None,
        compression: str | int | None = None,
        subjects: np.ndarray | None = None,
        volumes: np.ndarray | None = None,
    ) -> None:
        self.path = Path(path)
        self.n, self.c, self.shape = num_slices, num_coils, tuple(shape)
        self.header = Header() if header is None else header
        self.compression = compression
        self.subjects = np.arange(num_slices) if subjects is None else np.asarray(subjects, dtype=np.int64)
        self.volumes = self.subjects if volumes is None else np.asarray(volumes, dtype=np.int64)
        self.rss = self.header.has_rss
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
        for key, shape in expected_shapes(self.n, self.c, x, y).items():
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
        self._file.attrs.update(self.header.attributes())
        return self

    def update_header(self, header: Header) -> None:
        """Replace the header by one known only after the slices were written (e.g. with the
        coil compression's energy); the file's keys (`rss`) stay as they are."""
        assert self._file is not None, "update_header inside the with block"
        if header.has_rss != self.header.has_rss:
            raise ValueError("header: has_rss cannot change once the file is made")
        attributes = header.attributes()
        for name in set(self._file.attrs) - set(attributes):
            del self._file.attrs[name]
        self._file.attrs.update(attributes)
        self.header = header

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
