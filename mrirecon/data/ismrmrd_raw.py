"""ISMRMRD raw HDF5 (mridata.org, converted scanner files): Cartesian 3D or 2D multi-slice.

The file holds `dataset/xml` (the ISMRMRD header) and `dataset/data` (one row per readout:
header, samples (coils, samples) complex64). Which readouts are imaging data, where they go and
the noise covariance come from `ismrmrd_scan` (flags, counters and placement conventions there).

- 3D Cartesian (e.g. the Stanford 3D FSE knees): the readout (x) is fully sampled and (ky, kz)
  are phase encodes; the inverse FFT along the readout makes every readout position x a 2D
  (ky, kz) slice. Readout oversampling is removed (the central reconSpace x positions).
- 2D multi-slice (encoded z = 1): one (x, ky) slice per slice counter, in spatial order;
  the readout is cropped to reconSpace x in image space.
A fully sampled slice is cropped to reconSpace (y, z) in image space. Repeated lines (averages,
repetitions) are averaged.

Noise: noise-only readouts (ACQ_IS_NOISE_MEASUREMENT) give the coil noise covariance Psi per
sample (scaled to the imaging dwell time). With `prewhiten` auto or true, k-space is prewhitened
with W = L^-1 (Psi = L L^H, Cholesky, as BART's `whiten` and mrpro), so the noise is white with
sigma = 1 per sample and coil (in the whitened data's units); without prewhitening sigma is the
root mean square of the coils' noise standard deviations. Either way the slice's `noise_std`
comes from the noise scans (divided by sqrt of the average repeat count of averaged lines);
files without noise scans leave it to preprocess's estimate from the k-space periphery.

The subject is subjectInformation/patientID, else the file stem.

Memory: one header pass on open (rows read in chunks); slices are then made in slabs of as
many slices as fit in half of `buffer_mb`, each slab by one pass over the rows in chunks of an
eighth of it, with the file reopened every few chunks (HDF5's caches of variable-length data
grow over repeated passes of one handle), so memory does not grow with the file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.data.completion import OneSubjectFile, ReadOptions, complete_slice
from mrirecon.data.h5 import Slice
from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.data.ismrmrd_scan import (
    Geometry,
    RowLayout,
    ScanError,
    covariance_json,
    place_readouts,
    provenance,
    read_geometry,
    scan_rows,
)
from mrirecon.data.masks import volume_seed
from mrirecon.data.transforms import fft1c_numpy, ifft1c_numpy
from mrirecon.errors import UserError
from mrirecon.memory import require

log = logging.getLogger(__name__)


def _crop(ksp: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """k-space (C, X, Y) cropped to `shape` in image space, one axis at a time (1-D FFTs, so
    samples that were never acquired along the other axis stay exactly zero)."""
    for axis, size in ((1, shape[0]), (2, shape[1])):
        if ksp.shape[axis] != size:
            image = ifft1c_numpy(ksp, axis=axis)
            start = (ksp.shape[axis] - size) // 2
            ksp = fft1c_numpy(np.take(image, np.arange(start, start + size), axis=axis), axis=axis)
    return ksp


def whitening_matrix(cov: np.ndarray) -> np.ndarray:
    """W = L^-1 with cov = L L^H (Cholesky): W cov W^H = I. (C, C) complex128."""
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError("cov: the noise covariance is not positive definite (a dead or duplicated channel?)") from None
    return np.linalg.inv(chol)


class IsmrmrdSource(OneSubjectFile):
    """Read an ISMRMRD Cartesian raw file (3D or 2D multi-slice) as 2D slices.

    Args:
        path: the .h5 file.
        options: ESPIRiT, mask and prewhitening settings (`ReadOptions`).
        buffer_mb: memory for the slab of slices made at once (MB; `data.ismrmrd_buffer_mb`).
    """

    def __init__(self, path: str | os.PathLike[str], options: ReadOptions, buffer_mb: float = 256.0) -> None:
        self.path = Path(path)
        self.options, self.buffer_mb = options, float(buffer_mb)
        with open_hdf5(self.path) as f:  # reopened for every slab: HDF5's caches would otherwise grow with each pass
            for key in ("dataset/xml", "dataset/data"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise self._error(f"file without '{key}' (the XML header and the acquisitions)")
            xml = f["dataset/xml"][0]
            self._n_acq = int(f["dataset/data"].shape[0])
            first = f["dataset/data"][0]["head"] if self._n_acq else None
        try:
            self.geometry = read_geometry(xml)
            if first is None:
                raise ScanError("file has no acquisitions")
            check_declared_size(self.path, self.geometry, int(first["active_channels"]))
            row_bytes = 8 * int(first["active_channels"]) * int(first["number_of_samples"]) + 512
            self._chunk = max(1, int(self.buffer_mb * 2**20 / 8 // row_bytes))
            self.layout = scan_rows(self.geometry, self._blocks)
        except ScanError as exc:
            raise self._error(str(exc)) from None
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise self._error(f"acquisitions in 'dataset/data' cannot be read ({exc.__class__.__name__})") from None
        self._setup()
        self._slab: tuple[int, int, np.ndarray] | None = None

    def _error(self, message: str) -> UserError:
        return UserError(f"{self.path}: ISMRMRD {message}")

    def _setup(self) -> None:
        """Sizes, sampling, noise and provenance from the geometry and the row layout."""
        g, lay = self.geometry, self.layout
        ex, ey, ez = g.encoded
        self.num_coils = lay.coils
        self._repeats = bool(lay.counts.max() > 1)
        sampled = lay.counts > 0
        self.has_reference = bool(sampled.all())
        self.has_rss = False
        self.num_slices = len(lay.slice_order) if g.two_d else g.recon[0]
        if g.two_d:
            self.shape = (g.recon[0], g.recon[1] if self.has_reference else ey)
        else:
            self.shape = (g.recon[1], g.recon[2]) if self.has_reference else (ey, ez)
        slice_bytes = self.num_coils * ey * ez * (ex if g.two_d else 1) * 8
        self.slab = max(1, int(self.buffer_mb * 2**20 / 2 // slice_bytes))
        self.attrs: dict[str, Any] = {"subject_id": g.patient or self.path.stem, **provenance(g, lay)}
        if g.patient:  # joins this patient's files into one subject (source.MultiSource)
            self.attrs["patient_id"] = g.patient
        self._noise(lay)

    def _noise(self, lay: RowLayout) -> None:
        """The whitening matrix and sigma from the noise rows (see the module docstring)."""
        cov = lay.noise_covariance()
        self.whitening: np.ndarray | None = None
        self.noise_std: float | None = None
        self.attrs["prewhitened"] = 0
        if cov is None:
            return
        repeats = lay.counts[lay.counts > 0]
        shrink = float(np.sqrt(np.mean(1.0 / repeats)))  # averaged lines carry less noise
        if self.options.prewhiten in ("auto", "true"):
            try:
                self.whitening = whitening_matrix(cov)
            except ValueError as exc:
                if self.options.prewhiten == "true":
                    raise self._error(f"noise scans: {exc}") from None
                log.warning(
                    "%s: noise scans unusable (%s): not prewhitened, sigma estimated from k-space", self.path, exc
                )
                self.attrs["noise_scans_unusable"] = 1
                return
            self.noise_std = shrink  # sigma = 1 per averaged sample after whitening
            self.attrs["prewhitened"] = 1
        else:
            self.noise_std = shrink * float(np.sqrt(np.real(np.trace(cov)) / cov.shape[0]))
        self.attrs["noise_covariance"] = covariance_json(cov)

    def _blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) of dataset/data in chunks of `_chunk` whole rows (header and
        samples). The file is reopened every 4 chunks (about buffer_mb / 2 read): h5py's
        reads of variable-length data grow HDF5's caches until the handle closes, and reading
        the header field alone (Dataset.fields) leaks the samples, so neither is used."""
        for block in range(0, self._n_acq, 4 * self._chunk):
            with h5py.File(self.path, "r") as f:
                ds = f["dataset/data"]
                for a in range(block, min(block + 4 * self._chunk, self._n_acq), self._chunk):
                    yield a, ds[a : a + self._chunk]

    def __len__(self) -> int:
        return self.num_slices

    def _load_slab(self, start: int) -> tuple[int, int, np.ndarray]:
        """The slab of slices start .. start + slab: 3D: hybrid k-space (slices, C, ky * kz)
        at readout positions; 2D: k-space (slices, C, ky, x). Repeated lines averaged."""
        ex, ey, ez = self.geometry.encoded
        stop = min(start + self.slab, self.num_slices)
        shape = (
            (stop - start, self.num_coils, ey, ex) if self.geometry.two_d else (stop - start, self.num_coils, ey * ez)
        )
        buf = np.zeros(shape, np.complex64)
        try:
            for a, rows in self._blocks():
                self._add_chunk(rows, a, buf, start, stop)
        except (OSError, ValueError) as exc:
            raise self._error(f"acquisitions in 'dataset/data' cannot be read ({exc})") from None
        counts = np.maximum(self.layout.counts, 1).astype(np.float32)
        if self.geometry.two_d:
            buf /= counts[start:stop, None, :, None]
        else:
            buf /= counts[0]
        return start, stop, buf

    def _add_chunk(self, rows: np.ndarray, a: int, buf: np.ndarray, start: int, stop: int) -> None:
        """Add the chunk's kept readouts that belong to slices start .. stop into buf."""
        lay = self.layout
        rng = slice(a, a + len(rows))
        want = (
            lay.keep[rng] & (lay.slice[rng] >= start) & (lay.slice[rng] < stop)
            if self.geometry.two_d
            else lay.keep[rng]
        )
        sel = np.flatnonzero(want)
        if not len(sel):
            return
        c, ex = self.num_coils, self.geometry.encoded[0]
        samples = np.stack([rows["data"][j] for j in sel]).view(np.complex64).reshape(len(sel), c, -1)
        lines = place_readouts(samples, lay.reverse[a + sel], lay.discard, lay.center_sample, ex)
        if not np.all(np.isfinite(lines)):
            raise self._error(f"acquisitions {a}..{a + len(rows)} hold non-finite values (NaN or Inf)")
        line = lay.line[a + sel]
        if self.geometry.two_d:
            where: tuple[Any, ...] = (lay.slice[a + sel] - start, slice(None), line)
            values = lines
        else:
            x0 = (ex - self.geometry.recon[0]) // 2 + start
            hybrid = ifft1c_numpy(lines, axis=-1)[..., x0 : x0 + stop - start].astype(np.complex64)
            where, values = (slice(None), slice(None), line), np.transpose(hybrid, (2, 1, 0))
        if self._repeats:
            np.add.at(buf, where, values)  # repeated lines add up (averaged after the pass)
        else:
            buf[where] = values

    def kspace(self, i: int) -> np.ndarray:
        """Slice i's k-space (C, X, Y) as stored by preprocess: oversampling removed, cropped to
        reconSpace when fully sampled, prewhitened when noise scans allow and were asked for."""
        if not 0 <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        if self._slab is None or not self._slab[0] <= i < self._slab[1]:
            self._slab = None  # free the old slab before the new one is made
            self._slab = self._load_slab(i)
        start, _, buf = self._slab
        g = self.geometry
        if g.two_d:
            ksp = np.swapaxes(buf[i - start], 1, 2)  # (C, x, ky)
            ksp = _crop(ksp, (g.recon[0], ksp.shape[2]))  # readout oversampling
        else:
            ksp = buf[i - start].reshape(self.num_coils, *g.encoded[1:])
        if self.has_reference:
            ksp = _crop(ksp, self.shape)
        if self.whitening is not None:
            ksp = np.einsum("cd,dxy->cxy", self.whitening, ksp)
        return np.ascontiguousarray(ksp, dtype=np.complex64)

    def read(self, i: int) -> Slice:
        """Slice i: k-space (`kspace`) completed with ESPIRiT maps (and reference and mask when
        fully sampled); noise_std from the noise scans when the file has them."""
        seed = volume_seed(self.options.seed, self.path.name)  # one mask per volume, as fastMRI's
        return dataclasses.replace(complete_slice(self.kspace(i), i, self.options, seed=seed), noise_std=self.noise_std)

    def close(self) -> None:
        self._slab = None


def check_declared_size(path: Path, geometry: Geometry, coils: int) -> None:
    """Refuse (UserError) a header whose encoded matrix makes one slice (its k-space and coil
    maps, complex64, and the line counts) too large for the memory available (mrirecon/memory.py),
    before the reader allocates it: a small file can declare any matrix."""
    ex, ey, ez = geometry.encoded
    plane = ex * ey if geometry.two_d else ey * ez
    need = 2 * 8 * max(coils, 1) * plane + 8 * ey * ez
    require(need, f"{path}: ISMRMRD header declares an encoded matrix {ex}x{ey}x{ez} of {coils} coils")


__all__ = ["Geometry", "IsmrmrdSource", "check_declared_size", "whitening_matrix"]
