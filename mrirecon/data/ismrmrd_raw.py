"""ISMRMRD raw HDF5 (mridata.org): a 3D Cartesian acquisition turned into 2D slices.

The file holds `dataset/xml` (the ISMRMRD header) and `dataset/data` (one row per readout:
header, samples (coils, samples) complex64). With a 3D Cartesian acquisition such as the
Stanford 3D FSE knees the readout (x) is fully sampled and (ky, kz) are phase encodes: the
inverse FFT along the readout makes every readout position x a 2D (ky, kz) slice.

Honoured from the header: the trajectory (Cartesian only), encodedSpace and reconSpace matrix
sizes (readout oversampling removed: the central reconSpace.x positions are kept; a fully
sampled (ky, kz) plane is cropped to reconSpace y, z in image space) and the encoding limits'
centres (ky = kspace_encode_step_1 - center + Y // 2). Per readout: discard_pre/post,
center_sample (a partial echo is zero-filled), ACQ_IS_REVERSE; noise, navigator, phase
correction, feedback, dummy and phase-stabilisation readouts are skipped; repeated (ky, kz)
lines (averages) are averaged. The subject is subjectInformation/patientID, else the file stem.

Memory: a header pass on open (the readout headers, read in chunks); slices are then made in
slabs of as many slices as fit in half of `buffer_mb`, each slab by one pass over the readouts
in chunks of an eighth of it, with the file reopened for each pass (HDF5's caches of
variable-length data grow over repeated passes of one handle), so memory does not grow with
the file; the file is read once per slab.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.data.completion import OneSubjectFile, ReadOptions, complete_slice, fully_sampled
from mrirecon.data.h5 import Slice, open_hdf5
from mrirecon.data.transforms import center_crop, fft2c_numpy, ifft1c_numpy, ifft2c_numpy
from mrirecon.errors import UserError

# Readouts that are not imaging data (ISMRMRD flag bit numbers, 1-based).
SKIPPED_FLAGS = (19, 23, 24, 26, 27, 28, 29, 30, 31)  # noise, navigator, phasecorr, hp/rt feedback, dummy, ...
REVERSE_FLAG = 22


def _bit(flag: int) -> np.uint64:
    return np.uint64(1) << np.uint64(flag - 1)


class IsmrmrdSource(OneSubjectFile):
    """Read an ISMRMRD 3D Cartesian raw file as 2D slices (see the module docstring).

    Args:
        path: the .h5 file.
        options: ESPIRiT, mask and buffer settings (`ReadOptions`).
    """

    def __init__(self, path: str | os.PathLike, options: ReadOptions) -> None:
        self.path = Path(path)
        self.options = options
        self._file = open_hdf5(self.path)
        try:
            self._open()
        finally:
            self._file.close()  # reopened for every slab: HDF5's caches would otherwise grow with each pass
            del self._file
        self._slab: tuple[int, int, np.ndarray] | None = None

    def _error(self, message: str) -> UserError:
        return UserError(f"{self.path}: ISMRMRD {message}")

    def _open(self) -> None:
        import ismrmrd.xsd

        f = self._file
        for key in ("dataset/xml", "dataset/data"):
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise self._error(f"file without '{key}' (the XML header and the acquisitions)")
        try:
            xml = f["dataset/xml"][0]
            header = ismrmrd.xsd.CreateFromDocument(xml)
            enc = header.encoding[0]
            e, r = enc.encodedSpace.matrixSize, enc.reconSpace.matrixSize
        except Exception as exc:
            raise self._error(
                f"header in 'dataset/xml' does not parse ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0][:120] if str(exc) else ''})"
            ) from None
        trajectory = getattr(enc.trajectory, "value", str(enc.trajectory))
        if trajectory != "cartesian":
            raise self._error(
                f"trajectory is '{trajectory}': only Cartesian acquisitions are read (non-Cartesian "
                "data needs gridding, e.g. with BART or sigpy)"
            )
        ex, ey, ez = int(e.x), int(e.y), int(e.z)
        if ez < 2:
            raise self._error(
                f"encoded matrix {ex}x{ey}x{ez} is not 3D: only 3D Cartesian acquisitions (readout x ky x kz) are read"
            )
        limits = enc.encodingLimits
        centre = []
        for name, size in (("kspace_encoding_step_1", ey), ("kspace_encoding_step_2", ez)):
            lim = getattr(limits, name, None) if limits is not None else None
            centre.append(size // 2 if lim is None else int(lim.center))
        self.encoded = (ex, ey, ez)
        self.recon = (min(int(r.x), ex), min(int(r.y), ey), min(int(r.z), ez))
        subject = header.subjectInformation.patientID if header.subjectInformation is not None else None
        self.attrs: dict[str, Any] = {
            "format": "ismrmrd",
            "subject_id": str(subject or self.path.stem),
            "encoded_matrix": f"{ex}x{ey}x{ez}",
            "recon_matrix": "x".join(map(str, self.recon)),
        }
        self._header_pass(ex, ey, ez, centre)

    def _header_pass(self, ex: int, ey: int, ez: int, centre: list[int]) -> None:
        """Read every readout's header: check it, and record where its line goes."""
        ds = self._file["dataset/data"]
        n_acq = int(ds.shape[0])
        if n_acq == 0:
            raise self._error("file has no acquisitions")
        skip_mask = np.uint64(0)
        for flag in SKIPPED_FLAGS:
            skip_mask |= _bit(flag)
        keep, lin, reverse, first_ns = [], [], [], None
        self.num_coils = 0
        try:  # size the chunks of rows by the first row
            first = ds[0]["head"]
            row_bytes = 8 * int(first["active_channels"]) * int(first["number_of_samples"]) + 512
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise self._error(f"acquisitions in 'dataset/data' cannot be read ({exc.__class__.__name__})") from None
        self._n_acq = n_acq
        self._chunk = max(1, int(self.options.buffer_mb * 2**20 / 8 // row_bytes))
        try:
            for a, rows in self._blocks():
                head = rows["head"]
                flags = head["flags"].astype(np.uint64)
                k = (flags & skip_mask) == 0
                k &= head["encoding_space_ref"] == 0
                if np.any(head["trajectory_dimensions"][k] > 0):
                    raise self._error("readouts carry a trajectory: only Cartesian acquisitions are read")
                ns = head["number_of_samples"][k].astype(np.int64)
                pre, post = head["discard_pre"][k].astype(np.int64), head["discard_post"][k].astype(np.int64)
                ch = head["active_channels"][k].astype(np.int64)
                if k.any():
                    if first_ns is None:
                        first_ns = (int(ns[0]), int(pre[0]), int(post[0]), int(head["center_sample"][k][0]))
                        self.num_coils = int(ch[0])
                    if np.any(ns != first_ns[0]) or np.any(pre != first_ns[1]) or np.any(post != first_ns[2]):
                        raise self._error("readouts differ in number_of_samples or discard_pre/post")
                    if np.any(ch != self.num_coils):
                        raise self._error("readouts differ in active_channels")
                idx = head["idx"]
                ky = idx["kspace_encode_step_1"].astype(np.int64) - centre[0] + ey // 2
                kz = idx["kspace_encode_step_2"].astype(np.int64) - centre[1] + ez // 2
                bad = k & ((ky < 0) | (ky >= ey) | (kz < 0) | (kz >= ez))
                if bad.any():
                    j = int(np.flatnonzero(bad)[0])
                    raise self._error(
                        f"acquisition {a + j}: encode steps ({idx['kspace_encode_step_1'][j]}, "
                        f"{idx['kspace_encode_step_2'][j]}) lie outside the encoded matrix {ey}x{ez} "
                        "and the header's encoding limits"
                    )
                keep.append(k)
                lin.append(np.where(k, ky * ez + kz, 0))
                reverse.append((flags & _bit(REVERSE_FLAG)) != 0)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise self._error(f"acquisitions in 'dataset/data' cannot be read ({exc.__class__.__name__})") from None
        if first_ns is None or self.num_coils < 1:
            raise self._error("file has no imaging acquisitions")
        ns, pre, post, centre_sample = first_ns
        kept = ns - pre - post
        if kept > ex:
            raise self._error(f"readouts of {kept} samples exceed the encoded matrix x = {ex}")
        # Place the samples so that the echo centre lands at ex // 2 (partial echo: zero-filled).
        offset = ex // 2 - (centre_sample - pre) if centre_sample > 0 and kept < ex else (ex - kept) // 2
        if not 0 <= offset <= ex - kept:
            raise self._error(f"center_sample {centre_sample} does not fit readouts of {kept} samples in x = {ex}")
        self._readout = (pre, ns - post, offset)
        self._keep, self._lin, self._reverse = np.concatenate(keep), np.concatenate(lin), np.concatenate(reverse)
        counts = np.bincount(self._lin[self._keep], minlength=ey * ez)
        self._counts = counts
        self._sampled = (counts > 0).reshape(ey, ez)
        self.has_reference = bool(self._sampled.all())
        self.has_rss = False
        rx, ry, rz = self.recon
        self.num_slices = rx
        self.shape = (ry, rz) if self.has_reference else (ey, ez)
        slice_bytes = self.num_coils * ey * ez * 8
        self.slab = max(1, int(self.options.buffer_mb * 2**20 / 2 // slice_bytes))

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
        """Hybrid k-space (x, C, ky * kz) complex64 of slices start .. start + slab."""
        ex, ey, ez = self.encoded
        stop = min(start + self.slab, self.num_slices)
        x0 = (ex - self.recon[0]) // 2 + start
        buf = np.zeros((stop - start, self.num_coils, ey * ez), np.complex64)
        self._fill(buf, start, stop, x0)
        if self._counts.max() > 1:
            buf /= np.maximum(self._counts, 1).astype(np.float32)
        return start, stop, buf

    def _fill(self, buf: np.ndarray, start: int, stop: int, x0: int) -> None:
        """Add every kept readout's inverse-FFT'd samples at x0 .. x0 + stop - start into buf."""
        duplicates = bool(self._counts.max() > 1)
        try:
            for a, rows in self._blocks():
                sel = np.flatnonzero(self._keep[a : a + self._chunk])
                if len(sel):
                    self._add(rows["data"], sel, a, buf, stop - start, x0, duplicates)
        except (OSError, ValueError) as exc:
            raise self._error(f"acquisitions in 'dataset/data' cannot be read ({exc})") from None

    def _add(
        self, samples: np.ndarray, sel: np.ndarray, a: int, buf: np.ndarray, count: int, x0: int, duplicates: bool
    ) -> None:
        """Inverse-FFT the readouts `sel` of the chunk starting at row `a` and add readout
        positions x0 .. x0 + count into buf (count, C, ky * kz)."""
        ex = self.encoded[0]
        pre, end, offset = self._readout
        c = self.num_coils
        data = np.stack([samples[j] for j in sel]).view(np.complex64).reshape(len(sel), c, -1)
        line = np.zeros((len(sel), c, ex), np.complex64)
        line[..., offset : offset + end - pre] = data[..., pre:end]
        rev = self._reverse[a + sel]
        if rev.any():
            line[rev] = line[rev][..., ::-1]
        if not np.all(np.isfinite(line)):
            raise self._error(f"acquisitions {a}..{a + self._chunk} hold non-finite values (NaN or Inf)")
        hybrid = ifft1c_numpy(line, axis=-1)[..., x0 : x0 + count].astype(np.complex64)
        values = np.transpose(hybrid, (2, 1, 0))  # (x, C, lines)
        lin = self._lin[a + sel]
        if duplicates:
            np.add.at(buf, (slice(None), slice(None), lin), values)
        else:
            buf[:, :, lin] = values

    def read(self, i: int) -> Slice:
        """Slice i (readout position i of the recon FOV): (ky, kz) k-space with ESPIRiT maps."""
        if not 0 <= i < self.num_slices:
            raise IndexError(f"slice {i} out of range for {self.num_slices} slices")
        if self._slab is None or not self._slab[0] <= i < self._slab[1]:
            self._slab = None  # free the old slab before the new one is made
            self._slab = self._load_slab(i)
        start, _, buf = self._slab
        ksp = buf[i - start].reshape(self.num_coils, *self.encoded[1:])
        if self.has_reference and fully_sampled(ksp) and self.shape != tuple(self.encoded[1:]):
            ksp = fft2c_numpy(center_crop(ifft2c_numpy(ksp), self.shape))
        return complete_slice(ksp, i, self.options)

    def close(self) -> None:
        self._slab = None
