"""ISMRMRD raw HDF5 (mridata.org, converted scanner files): Cartesian 3D or 2D multi-slice.

The file holds `dataset/xml` (the ISMRMRD header) and `dataset/data` (one row per readout:
header, samples (coils, samples) complex64). Which readouts are imaging or calibration data,
where they go, what was never acquired and the noise covariance come from `ismrmrd_rows` (flags,
counters and placement conventions there).

- 3D Cartesian (e.g. the Stanford 3D FSE knees): the readout (x) is fully sampled and (ky, kz)
  are phase encodes; the inverse FFT along the readout makes every readout position x a 2D
  (ky, kz) slice. Readout oversampling is removed (the central reconSpace x positions).
- 2D multi-slice (encoded z = 1): one (x, ky) slice per slice counter, in spatial order (and
  per repetition when they are kept apart); the readout is cropped to reconSpace x in image
  space, and the rows a partial echo never acquired are zeroed (`Sampling.readout_rows`).
A slice whose data determine the image (`Sampling.has_reference`) is cropped to reconSpace
(y, z) in image space; others keep the encoded grid, with the acquired region and the
reconSpace crop for metrics. Repeated lines (averages, repetitions) are averaged (logged).

Coil maps (`completion.MapEstimator`): from the imaging k-space, or from the calibration data
when its fully sampled centre is larger: integrated calibration lines fill the imaging k-space's
missing lines; a separate reference scan is used alone.

Noise: from the noise-only readouts, with prewhitening (`ismrmrd_header`'s docstring).

The subject is subjectInformation/patientID, else the file stem.

Memory: one header pass on open (rows read in chunks); slices are then made in slabs of as
many slices as fit in half of `buffer_mb`, each slab by one pass over the rows in chunks of an
eighth of it, with the file reopened every few chunks (HDF5's caches of variable-length data
grow over repeated passes of one handle), so memory does not grow with the file. Calibration
lines are kept in a second buffer of those lines only.

Own settings (conf/preprocess.yaml): `data.ismrmrd_buffer_mb`, the memory for the slab of slices the
reader makes at once; `data.ismrmrd_repetitions`, average the repetitions of a line or keep each
repetition as its own slices.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.data.completion import MapEstimator, OneSubjectFile, ReadOptions, complete_slice, mask_label
from mrirecon.data.formats.ismrmrd_header import (
    IGNORED,
    Geometry,
    ScanError,
    check_declared_size,
    covariance_json,
    crop_kspace,
    place_readouts,
    read_geometry,
    whitening_matrix,
)
from mrirecon.data.formats.ismrmrd_rows import CALIBRATION, IMAGING, RowLayout, provenance, scan_rows
from mrirecon.data.formats.ismrmrd_sampling import sampling
from mrirecon.data.h5 import Slice
from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.data.masks import volume_seed
from mrirecon.data.source import Format, Source, file_keys, register_format
from mrirecon.data.transforms import ifft1c_numpy
from mrirecon.errors import UserError

log = logging.getLogger(__name__)


class IsmrmrdSource(OneSubjectFile):
    """Read an ISMRMRD Cartesian raw file (3D or 2D multi-slice) as 2D slices.

    Args:
        path: the .h5 file.
        options: ESPIRiT, mask and prewhitening settings (`ReadOptions`).
        buffer_mb: memory for the slab of slices made at once (MB; `data.ismrmrd_buffer_mb`).
        repetitions: 'average' the repetitions of a line, or keep each as its own 'slices'.
    """

    def __init__(
        self, path: str | os.PathLike[str], options: ReadOptions, buffer_mb: float = 256.0, repetitions: str = "average"
    ) -> None:
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
            self.layout = scan_rows(self.geometry, self._blocks, repetitions == "slices")
            self.sampling = sampling(self.geometry, self.layout)
        except ScanError as exc:
            raise self._error(str(exc)) from None
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise self._error(f"acquisitions in 'dataset/data' cannot be read ({exc.__class__.__name__})") from None
        self._setup()
        self._maps = MapEstimator(options, str(self.path))
        self._slab: tuple[int, int, np.ndarray, np.ndarray | None] | None = None

    def _error(self, message: str) -> UserError:
        return UserError(f"{self.path}: ISMRMRD {message}")

    def _setup(self) -> None:
        """Sizes, sampling, calibration lines, noise and provenance from the geometry and the rows."""
        g, lay, smp = self.geometry, self.layout, self.sampling
        ex, ey, ez = g.encoded
        self.num_coils = lay.coils
        self._repeats = bool(lay.counts.max() > 1)
        self._accumulate = self._repeats or bool(lay.calibration_counts.max() > 1)  # np.add.at, else assignment
        self.has_reference, self.has_rss = smp.has_reference, False
        self.num_slices = lay.counts.shape[0] if g.two_d else g.recon[0]
        self.shape, self.recon_size, self.acquired = smp.shape, smp.recon_size, smp.acquired
        self._calibration_lines = np.unique(lay.line[lay.calibration])
        slice_bytes = self.num_coils * (ey * ez + len(self._calibration_lines)) * (ex if g.two_d else 1) * 8
        self.slab = max(1, int(self.buffer_mb * 2**20 / 2 // slice_bytes))
        self.attrs: dict[str, Any] = {"subject_id": g.patient or self.path.stem, **provenance(g, lay)}
        self.attrs.update(missing_readout_samples=smp.missing_samples, missing_lines=smp.missing_lines)
        self.attrs["mask"] = mask_label(self.options, g.two_d, self.has_reference)
        if g.patient:  # joins this patient's files into one subject (source.MultiSource)
            self.attrs["patient_id"] = g.patient
        self._log_sampling()
        self._noise(lay)

    def _log_sampling(self) -> None:
        """Log what is averaged, ignored and never acquired."""
        lay, smp = self.layout, self.sampling
        if self._repeats:
            log.info(
                "%s: %d lines acquired more than once (averages%s) are averaged",
                self.path,
                int((lay.counts > 1).sum()),
                f", {lay.repetitions} repetitions: data.ismrmrd_repetitions=slices keeps them apart"
                if lay.repetitions > 1 and not lay.repetitions_as_slices
                else "",
            )
        ignored = {k: v for k, v in lay.readouts.items() if v and k in (*IGNORED, "other_encoding_space")}
        if ignored:
            log.info("%s: readouts not used as data: %s", self.path, ", ".join(f"{k} {v}" for k, v in ignored.items()))
        if lay.readouts.get("calibration_other_format"):
            log.warning(
                "%s: %d calibration readouts differ from the imaging readouts' format: not used for coil maps",
                self.path,
                lay.readouts["calibration_other_format"],
            )
        if not smp.has_reference and (smp.missing_samples or smp.missing_lines):
            log.info(
                "%s: %d of %d readout samples and %d lines never acquired (partial echo / Fourier): unmeasured, "
                "no reference image",
                self.path,
                smp.missing_samples,
                self.geometry.encoded[0],
                smp.missing_lines,
            )

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

    def _buffer(self, count: int, lines: int) -> np.ndarray:
        """Zeros for `count` slices of `lines` lines: 3D (count, C, lines) hybrid k-space at
        readout positions; 2D (count, C, lines, x)."""
        c, ex = self.num_coils, self.geometry.encoded[0]
        return np.zeros((count, c, lines, ex) if self.geometry.two_d else (count, c, lines), np.complex64)

    def _load_slab(self, start: int) -> tuple[int, int, np.ndarray, np.ndarray | None]:
        """The slab of slices start .. start + slab: imaging and calibration buffers (`_buffer`;
        calibration: its lines only, None without), repeated lines averaged."""
        _, ey, ez = self.geometry.encoded
        stop = min(start + self.slab, self.num_slices)
        buf = self._buffer(stop - start, ey * ez)
        cal = self._buffer(stop - start, len(self._calibration_lines)) if len(self._calibration_lines) else None
        try:
            for a, rows in self._blocks():
                self._add_chunk(rows, a, (buf, cal), start, stop)
        except (OSError, ValueError) as exc:
            raise self._error(f"acquisitions in 'dataset/data' cannot be read ({exc})") from None
        lay = self.layout
        lines = self._calibration_lines
        for target, counts in ((buf, lay.counts), (cal, lay.calibration_counts[:, lines])):
            if target is None:
                continue
            scale = np.maximum(counts, 1).astype(np.float32)
            if self.geometry.two_d:
                target /= scale[start:stop, None, :, None]
            else:
                target /= scale[0]
        return start, stop, buf, cal

    def _add_chunk(
        self, rows: np.ndarray, a: int, buffers: tuple[np.ndarray, np.ndarray | None], start: int, stop: int
    ) -> None:
        """Add the chunk's imaging and calibration readouts of slices start .. stop into the
        buffers (imaging, calibration)."""
        lay = self.layout
        rng = slice(a, a + len(rows))
        want = lay.kind[rng] > 0
        if self.geometry.two_d:
            want &= (lay.slice[rng] >= start) & (lay.slice[rng] < stop)
        sel = np.flatnonzero(want)
        if not len(sel):
            return
        c, ex = self.num_coils, self.geometry.encoded[0]
        samples = np.stack([rows["data"][j] for j in sel]).view(np.complex64).reshape(len(sel), c, -1)
        lines = place_readouts(samples, lay.reverse[a + sel], lay.discard, lay.center_sample, ex)
        if not np.all(np.isfinite(lines)):
            raise self._error(f"acquisitions {a}..{a + len(rows)} hold non-finite values (NaN or Inf)")
        kind = lay.kind[a + sel]
        for buf, bit_, index in ((buffers[0], IMAGING, None), (buffers[1], CALIBRATION, self._calibration_lines)):
            use = (kind & bit_) > 0
            if buf is None or not use.any():
                continue
            line = lay.line[a + sel[use]]
            line = line if index is None else np.searchsorted(index, line)
            self._place(buf, lines[use], lay.slice[a + sel[use]] - start, line, start, stop)

    def _place(
        self, buf: np.ndarray, lines: np.ndarray, slices: np.ndarray, line: np.ndarray, start: int, stop: int
    ) -> None:
        """Put readouts (n, C, X) at (slice, line) of `buf` (2D) or their readout positions
        start .. stop at `line` (3D); repeated lines add up (averaged after the pass)."""
        ex = self.geometry.encoded[0]
        if self.geometry.two_d:
            where: tuple[Any, ...] = (slices, slice(None), line)
            values = lines
        else:
            x0 = (ex - self.geometry.recon[0]) // 2 + start
            hybrid = ifft1c_numpy(lines, axis=-1)[..., x0 : x0 + stop - start].astype(np.complex64)
            where, values = (slice(None), slice(None), line), np.transpose(hybrid, (2, 1, 0))
        if self._accumulate:
            np.add.at(buf, where, values)
        else:
            buf[where] = values

    def _slab_for(self, i: int) -> tuple[int, int, np.ndarray, np.ndarray | None]:
        if not 0 <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        if self._slab is None or not self._slab[0] <= i < self._slab[1]:
            self._slab = None  # free the old slab before the new one is made
            self._slab = self._load_slab(i)
        return self._slab

    def _grid(self, buf: np.ndarray) -> np.ndarray:
        """One slice of a full buffer on the encoded grid: 2D (C, x, ky), 3D (C, ky, kz)."""
        if self.geometry.two_d:
            return np.swapaxes(buf, 1, 2)
        return buf.reshape(self.num_coils, *self.geometry.encoded[1:])

    def _finish(self, ksp: np.ndarray) -> np.ndarray:
        """Encoded-grid k-space (`_grid`) as stored: readout oversampling removed (2D: rows a
        partial echo never acquired zeroed), cropped to reconSpace when the data determine the
        image, prewhitened when noise scans allow and were asked for."""
        g, smp = self.geometry, self.sampling
        if g.two_d:
            ksp = crop_kspace(ksp, (g.recon[0], ksp.shape[2]))
            x0, x1 = smp.readout_rows
            ksp[:, :x0] = 0
            ksp[:, x1:] = 0
        if smp.crop:
            ksp = crop_kspace(ksp, self.shape)
        if self.whitening is not None:
            ksp = np.einsum("cd,dxy->cxy", self.whitening, ksp)
        return np.ascontiguousarray(ksp, dtype=np.complex64)

    def kspace(self, i: int) -> np.ndarray:
        """Slice i's k-space (C, X, Y) as stored by preprocess (`_finish`)."""
        start, _, buf, _ = self._slab_for(i)
        return self._finish(self._grid(buf[i - start]))

    def calibration(self, i: int) -> np.ndarray | None:
        """Slice i's calibration k-space (C, X, Y) like `kspace`, or None without calibration
        lines: integrated lines fill the imaging k-space's missing lines, a separate reference
        scan stands alone."""
        start, _, buf, cal = self._slab_for(i)
        if cal is None:
            return None
        lines = self._calibration_lines
        grid = np.zeros_like(buf[i - start]) if self.layout.calibration_mode[0] == "separate" else buf[i - start].copy()
        fill = self.layout.calibration_counts[i if self.geometry.two_d else 0, lines] > 0
        if self.layout.calibration_mode[0] != "separate":
            fill &= self.layout.counts[i if self.geometry.two_d else 0, lines] == 0
        grid[:, lines[fill]] = cal[i - start][:, fill]
        return self._finish(self._grid(grid))

    def read(self, i: int) -> Slice:
        """Slice i: k-space (`kspace`) with ESPIRiT maps from its calibration block (`calibration`),
        and reference and mask when the data determine the image; noise_std from the noise scans
        when the file has them."""
        seed = volume_seed(self.options.seed, self.path.name)  # one mask per volume, as fastMRI's
        ksp = self.kspace(i)
        try:
            maps = self._maps(ksp, self.calibration(i))
        except ValueError as exc:
            raise self._error(f"slice {i}: {exc}") from None
        s = complete_slice(
            ksp, i, self.options, maps=maps, acquired=self.acquired, seed=seed,
            reference=self.has_reference, two_d=self.geometry.two_d,
        )  # fmt: skip
        return dataclasses.replace(s, noise_std=self.noise_std)

    def close(self) -> None:
        self._slab = None


__all__ = ["Geometry", "IsmrmrdSource", "check_declared_size", "whitening_matrix"]


BUFFER_KEY = "ismrmrd_buffer_mb"
REPETITIONS_KEY = "ismrmrd_repetitions"
REPETITIONS = ("average", "slices")


@dataclass(frozen=True)
class IsmrmrdOptions:
    """buffer_mb: memory for the reader's slab of slices (MB, > 0); repetitions: 'average' or
    'slices' (each repetition of a 2D scan its own slices)."""

    buffer_mb: float = 256.0
    repetitions: str = "average"


@register_format("ismrmrd")
class Ismrmrd(Format):
    """Read by `IsmrmrdSource`."""

    description = "ISMRMRD raw HDF5 (dataset/data, dataset/xml)"
    priority = 10

    @classmethod
    def detect(cls, path: Path) -> bool:
        keys = file_keys(path)
        return "dataset/data" in keys or "dataset/xml" in keys

    @classmethod
    def options(cls, data: Mapping[str, Any]) -> IsmrmrdOptions:
        value = data.get(BUFFER_KEY, IsmrmrdOptions.buffer_mb)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{BUFFER_KEY}: {value!r} must be a number > 0 (MB)")
        repetitions = data.get(REPETITIONS_KEY, IsmrmrdOptions.repetitions)
        if repetitions not in REPETITIONS:
            raise ValueError(f"{REPETITIONS_KEY}: {repetitions!r} must be one of {', '.join(REPETITIONS)}")
        return IsmrmrdOptions(float(value), str(repetitions))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        own = options.of(IsmrmrdOptions)
        return IsmrmrdSource(path, options, own.buffer_mb, own.repetitions)
