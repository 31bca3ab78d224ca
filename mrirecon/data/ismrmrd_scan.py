"""What an ISMRMRD raw file holds, from its headers: geometry, where every readout goes, noise.

`read_geometry` parses the XML header (encoded and recon matrices, encoding-limit centres, 2D
multi-slice or 3D); `scan_rows` reads every acquisition header once (in chunks) and returns a
`RowLayout`: which rows are imaging data, the output slice and k-space line of each, reversal
flags, repeat counts, and the coil noise covariance of the noise-only rows. `place_readouts`
puts readout samples on the encoded readout grid. Conventions (ISMRMRD flags and counters):

- Readout placement: `center_sample` indexes the `number_of_samples` stored samples in k-space
  order, i.e. after a reversed readout (ACQ_IS_REVERSE, bit 22) is flipped back (mrpro's
  convention): stored sample j of a forward readout sits at k = j - center_sample, of a
  reversed one at k = (N - 1 - j) - center_sample; discard_pre/post count stored samples at
  the start/end of the acquisition (time order). The k = 0 sample lands at x // 2 of the
  encoded readout; samples a partial echo did not acquire stay zero. A readout of exactly the
  encoded size, or one with center_sample 0 (not set), is placed as a whole / centred.
- Lines: ky = kspace_encode_step_1 - encodingLimits.kspace_encoding_step_1.center + y // 2
  (same for kz); repeated lines (averages, repetitions) are averaged.
- 2D multi-slice (encoded z = 1): one output slice per `slice` counter, ordered by position
  along the slice normal (the acquisition headers' position . slice_dir), so interleaved
  acquisition order does not matter; by counter when positions coincide.
- Skipped rows: noise (bit 19, used for the covariance), parallel-calibration-only (bit 20
  without bit 21), navigator, phase correction, feedback, dummy and surface-coil scans.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

NOISE_FLAG, CALIBRATION_FLAG, CALIBRATION_AND_IMAGING_FLAG, REVERSE_FLAG = 19, 20, 21, 22
SKIPPED_FLAGS = (19, 23, 24, 26, 27, 28, 29)  # noise, navigator, phasecorr, hp/rt feedback, dummy, surface coil


class ScanError(ValueError):
    """A file whose headers cannot be read as a Cartesian acquisition; the message says why."""


def bit(flag: int) -> np.uint64:
    return np.uint64(1) << np.uint64(flag - 1)


@dataclass(frozen=True)
class Geometry:
    """From the XML header: encoded (x, y, z) and recon (x, y, z) matrix sizes, the encoding
    limits' centres of (ky, kz), the number of slices in the limits, the patient ID."""

    encoded: tuple[int, int, int]
    recon: tuple[int, int, int]
    centre: tuple[int, int]
    patient: str | None

    @property
    def two_d(self) -> bool:
        return self.encoded[2] == 1


def read_geometry(xml: bytes | str) -> Geometry:
    """Parse the ISMRMRD XML header; raises ScanError for a non-Cartesian or unreadable one."""
    import ismrmrd.xsd

    try:
        header = ismrmrd.xsd.CreateFromDocument(xml)
        enc = header.encoding[0]
        e, r = enc.encodedSpace.matrixSize, enc.reconSpace.matrixSize
    except Exception as exc:
        text = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise ScanError(f"header in 'dataset/xml' does not parse ({exc.__class__.__name__}: {text})") from None
    trajectory = getattr(enc.trajectory, "value", str(enc.trajectory))
    if trajectory != "cartesian":
        raise ScanError(
            f"trajectory is '{trajectory}': only Cartesian acquisitions are read (non-Cartesian data needs "
            "gridding, e.g. with BART or sigpy)"
        )
    encoded = (int(e.x), int(e.y), max(int(e.z), 1))
    limits = enc.encodingLimits
    centre = []
    for name, size in (("kspace_encoding_step_1", encoded[1]), ("kspace_encoding_step_2", encoded[2])):
        lim = getattr(limits, name, None) if limits is not None else None
        centre.append(size // 2 if lim is None or lim.center is None else int(lim.center))
    recon = tuple(min(max(int(a), 1), b) for a, b in zip((r.x, r.y, r.z), encoded))
    subject = header.subjectInformation.patientID if header.subjectInformation is not None else None
    return Geometry(encoded, recon, (centre[0], centre[1]), str(subject) if subject else None)  # type: ignore[arg-type]


def place_readouts(
    samples: np.ndarray, reverse: np.ndarray, discard: tuple[int, int], center_sample: int, size: int
) -> np.ndarray:
    """Readouts on the encoded readout grid (see the module docstring).

    Args:
        samples: stored samples (n, C, N) complex, in acquisition (time) order.
        reverse: (n,) bool, ACQ_IS_REVERSE of each readout.
        discard: (discard_pre, discard_post) stored samples to drop.
        center_sample: the k = 0 sample in k-space order (0: not set).
        size: encoded readout size X.

    Returns:
        (n, C, X) complex64, zeros where nothing was acquired.
    """
    n, c, count = samples.shape
    pre, post = discard
    kept = count - pre - post
    first_forward, first_reversed = readout_offsets(count, discard, center_sample, size)
    out = np.zeros((n, c, size), np.complex64)
    fwd = ~reverse
    out[fwd, :, first_forward : first_forward + kept] = samples[fwd][..., pre : count - post]
    if reverse.any():  # k-space order: flip, then the discarded time-order ends swap sides
        flipped = samples[reverse][..., ::-1]
        out[reverse, :, first_reversed : first_reversed + kept] = flipped[..., post : count - pre]
    return out


def readout_offsets(count: int, discard: tuple[int, int], center_sample: int, size: int) -> tuple[int, int]:
    """Where the first kept sample of a forward and of a reversed readout lands on the encoded
    grid of `size`; raises ScanError when the kept samples do not fit."""
    pre, post = discard
    kept = count - pre - post
    if kept < 1 or kept > size:
        raise ScanError(f"readouts keep {kept} of {count} samples (discard_pre {pre}, post {post}) for x = {size}")
    if kept == size or center_sample == 0:
        first = (size - kept) // 2
        return first, first
    forward, backward = size // 2 - center_sample + pre, size // 2 - center_sample + post
    for first in (forward, backward):
        if not 0 <= first <= size - kept:
            raise ScanError(
                f"center_sample {center_sample} places readouts of {kept} kept samples (discard_pre {pre}, "
                f"post {post}) outside the encoded x = {size}"
            )
    return forward, backward


@dataclass
class RowLayout:
    """Every row of dataset/data, classified: `keep` (imaging), `slice` (output slice of a 2D
    scan; 0 in 3D), `line` (ky * z + kz in 3D, ky in 2D), `reverse`; `counts` (slices, lines)
    acquisitions per line; the readout format (number_of_samples, discard, center_sample,
    coils); the noise rows' Gram matrix sum n n^H (C, C), sample count and dwell time;
    `slice_order` (2D: the slice counter of every output slice)."""

    keep: np.ndarray
    slice: np.ndarray
    line: np.ndarray
    reverse: np.ndarray
    counts: np.ndarray
    samples: int
    discard: tuple[int, int]
    center_sample: int
    coils: int
    dwell_us: float
    noise_gram: np.ndarray | None
    noise_samples: int
    noise_rows: int
    noise_dwell_us: float
    slice_order: list[int]

    def noise_covariance(self) -> np.ndarray | None:
        """Coil noise covariance per sample of the imaging readouts (C, C) complex128, from the
        noise rows, scaled by their dwell time over the imaging one (noise power is
        proportional to the bandwidth); None without noise rows."""
        if self.noise_gram is None or self.noise_samples == 0:
            return None
        cov = self.noise_gram / self.noise_samples
        if self.noise_dwell_us > 0 and self.dwell_us > 0:
            cov = cov * (self.noise_dwell_us / self.dwell_us)
        return cov


class _Rows:
    """Accumulates the per-chunk classification of `scan_rows`."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self.keep: list[np.ndarray] = []
        self.counter: list[np.ndarray] = []
        self.line: list[np.ndarray] = []
        self.reverse: list[np.ndarray] = []
        self.format: tuple[int, int, int, int, int, float] | None = None
        self.noise_gram: np.ndarray | None = None
        self.noise_samples = self.noise_rows = 0
        self.noise_dwell = 0.0
        self.positions: dict[int, float] = {}
        self.others: dict[str, set[int]] = {"contrast": set(), "phase": set(), "set": set()}


def _imaging_mask(flags: np.ndarray) -> np.ndarray:
    skip = np.uint64(0)
    for flag in SKIPPED_FLAGS:
        skip |= bit(flag)
    keep = (flags & skip) == 0
    calibration_only = ((flags & bit(CALIBRATION_FLAG)) != 0) & ((flags & bit(CALIBRATION_AND_IMAGING_FLAG)) == 0)
    return keep & ~calibration_only


def _classify(acc: _Rows, first_row: int, rows: np.ndarray) -> None:
    """Classify one chunk of rows into `acc` (checks formats; collects noise)."""
    head = rows["head"]
    flags = head["flags"].astype(np.uint64)
    keep = _imaging_mask(flags) & (head["encoding_space_ref"] == 0)
    noise = (flags & bit(NOISE_FLAG)) != 0
    if np.any(head["trajectory_dimensions"][keep] > 0):
        raise ScanError("readouts carry a trajectory: only Cartesian acquisitions are read")
    _check_format(acc, head, keep)
    if noise.any():
        _add_noise(acc, rows, np.flatnonzero(noise))
    idx = head["idx"]
    _, ey, ez = acc.geometry.encoded
    ky = idx["kspace_encode_step_1"].astype(np.int64) - acc.geometry.centre[0] + ey // 2
    kz = idx["kspace_encode_step_2"].astype(np.int64) - acc.geometry.centre[1] + ez // 2
    bad = keep & ((ky < 0) | (ky >= ey) | (kz < 0) | (kz >= ez))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ScanError(
            f"acquisition {first_row + j}: encode steps ({idx['kspace_encode_step_1'][j]}, "
            f"{idx['kspace_encode_step_2'][j]}) lie outside the encoded matrix {ey}x{ez} and the header's "
            "encoding limits"
        )
    counter = idx["slice"].astype(np.int64)
    for row in np.flatnonzero(keep):
        if int(counter[row]) not in acc.positions:
            acc.positions[int(counter[row])] = float(np.dot(head["position"][row], head["slice_dir"][row]))
    for name in acc.others:
        acc.others[name].update(np.unique(idx[name][keep]).tolist())
    acc.keep.append(keep)
    acc.counter.append(np.where(keep, counter, 0))
    acc.line.append(np.where(keep, ky * ez + kz, 0))
    acc.reverse.append((flags & bit(REVERSE_FLAG)) != 0)


def _check_format(acc: _Rows, head: np.ndarray, keep: np.ndarray) -> None:
    """All imaging readouts share number_of_samples, discard, center_sample and channels."""
    if not keep.any():
        return
    fields = np.stack(
        [head[name][keep].astype(np.int64) for name in ("number_of_samples", "discard_pre", "discard_post")]
        + [head["center_sample"][keep].astype(np.int64), head["active_channels"][keep].astype(np.int64)]
    )
    if acc.format is None:
        first = head[np.flatnonzero(keep)[0]]
        samples, pre, post, centre, channels = (int(v) for v in fields[:, 0])
        acc.format = (samples, pre, post, centre, channels, float(first["sample_time_us"]))
    expected = np.array(acc.format[:5])[:, None]
    mismatch = np.flatnonzero((fields != expected).any(1))
    if mismatch.size:
        names = ("number_of_samples", "discard_pre", "discard_post", "center_sample", "active_channels")
        raise ScanError(f"readouts differ in {names[int(mismatch[0])]}: mrirecon reads one readout format per file")


def _add_noise(acc: _Rows, rows: np.ndarray, sel: np.ndarray) -> None:
    """Add the noise rows' samples to the Gram matrix sum n n^H."""
    for j in sel:
        head = rows["head"][j]
        c, n = int(head["active_channels"]), int(head["number_of_samples"])
        data = np.asarray(rows["data"][j]).view(np.complex64).reshape(c, n).astype(np.complex128)
        if acc.noise_gram is None:
            acc.noise_gram = np.zeros((c, c), np.complex128)
            acc.noise_dwell = float(head["sample_time_us"])
        if data.shape[0] != acc.noise_gram.shape[0]:
            raise ScanError(f"noise readouts have {c} channels, earlier ones {acc.noise_gram.shape[0]}")
        acc.noise_gram += data @ data.conj().T
        acc.noise_samples += n
        acc.noise_rows += 1


def _slice_order(positions: dict[int, float]) -> list[int]:
    """Slice counters ordered along the slice normal; by counter when the positions coincide."""
    counters = sorted(positions)
    where = np.array([positions[c] for c in counters])
    if len(counters) > 1 and np.ptp(where) > 0 and len(np.unique(where)) == len(counters):
        return [counters[i] for i in np.argsort(where, kind="stable")]
    return counters


def scan_rows(geometry: Geometry, blocks: Callable[[], Iterator[tuple[int, np.ndarray]]]) -> RowLayout:
    """Classify every row of dataset/data (see the module docstring); `blocks()` yields
    (first row, rows) chunks of whole rows."""
    acc = _Rows(geometry)
    for first_row, rows in blocks():
        _classify(acc, first_row, rows)
    if acc.format is None or acc.format[4] < 1:
        raise ScanError("file has no imaging acquisitions")
    for name, values in acc.others.items():
        if len(values) > 1:
            raise ScanError(
                f"file holds {len(values)} values of the '{name}' counter ({sorted(values)[:6]}): mrirecon reads "
                "one image per slice (split the file by that counter first)"
            )
    counter = np.concatenate(acc.counter)
    keep = np.concatenate(acc.keep)
    if not geometry.two_d and len(acc.positions) > 1:
        raise ScanError(f"3D acquisition with {len(acc.positions)} slabs (slice counter): one slab is read")
    order = _slice_order(acc.positions) if geometry.two_d else [0]
    where = {c: i for i, c in enumerate(order)}
    out_slice = np.array([where.get(int(c), 0) for c in counter], np.int64) if geometry.two_d else counter * 0
    line = np.concatenate(acc.line)
    _, ey, ez = geometry.encoded
    counts = np.zeros((len(order), ey * ez), np.int64)
    np.add.at(counts, (out_slice[keep], line[keep]), 1)
    ns, pre, post, centre, coils, dwell = acc.format
    if acc.noise_gram is not None and acc.noise_gram.shape[0] != coils:
        raise ScanError(f"noise readouts have {acc.noise_gram.shape[0]} channels, imaging readouts {coils}")
    return RowLayout(
        keep, out_slice, line, np.concatenate(acc.reverse), counts, ns, (pre, post), centre, coils, dwell,
        acc.noise_gram, acc.noise_samples, acc.noise_rows, acc.noise_dwell, order,
    )  # fmt: skip


def covariance_json(cov: np.ndarray) -> str:
    """A covariance matrix as JSON: rows of [real, imag] pairs (provenance)."""
    return json.dumps([[[float(v.real), float(v.imag)] for v in row] for row in cov])


def provenance(geometry: Geometry, layout: RowLayout) -> dict[str, Any]:
    """Attributes describing the acquisition for the processed file."""
    ex, ey, ez = geometry.encoded
    return {
        "format": "ismrmrd",
        "acquisition": "2D multi-slice" if geometry.two_d else "3D",
        "encoded_matrix": f"{ex}x{ey}x{ez}",
        "recon_matrix": "x".join(map(str, geometry.recon)),
        "noise_scans": int(layout.noise_rows),
        "noise_samples": int(layout.noise_samples),
        "repeated_lines": int((layout.counts > 1).sum()),
        **({"slice_order": json.dumps(layout.slice_order)} if geometry.two_d else {}),
    }
