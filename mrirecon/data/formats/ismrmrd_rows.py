"""What every readout of an ISMRMRD raw file is and where it goes: one pass over the acquisition headers.

`read_geometry` parses the XML header (encoded and recon matrices, encoding limits, 2D
multi-slice or 3D, the parallel-imaging calibration mode); `scan_rows` reads every acquisition
header once (in chunks) and returns a `RowLayout`: what every row is (imaging, calibration or
both), the output slice and k-space line of each, reversal flags, repeat counts, the count of
every flag, and the coil noise covariance of the noise-only rows. `place_readouts` puts
readout samples on the encoded readout grid. Conventions (ISMRMRD flags and counters; the flag
numbers are the `ismrmrd` package's):

- Which rows are what, as Gadgetron's bucketing and mrpro read the flags: noise readouts
  (ACQ_IS_NOISE_MEASUREMENT) give the noise covariance; navigator, phase-correction,
  phase-stabilisation (and its reference), RT/HP feedback, dummy and surface-coil-correction
  readouts (`IGNORED`, mrpro's default ignore list) are skipped; a row flagged
  ACQ_IS_PARALLEL_CALIBRATION or ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING is calibration data
  (coil maps); a row is imaging data unless it is calibration-only (ACQ_IS_PARALLEL_CALIBRATION
  without ..._AND_IMAGING). Rows of another encoding space (encoding_space_ref > 0) are counted
  and skipped.
- Calibration mode: the header's parallelImaging/calibrationMode (separate or external: a
  reference scan, used for maps only; embedded, interleaved: lines inside the imaging pattern);
  when the header does not say, a calibration-only line that repeats an imaging line of the same
  slice marks a separate reference scan, else the lines are integrated.
- Readout placement: `center_sample` indexes the `number_of_samples` stored samples in k-space
  order, i.e. after a reversed readout (ACQ_IS_REVERSE) is flipped back (mrpro's
  convention): stored sample j of a forward readout sits at k = j - center_sample, of a
  reversed one at k = (N - 1 - j) - center_sample; discard_pre/post count stored samples at
  the start/end of the acquisition (time order). The k = 0 sample lands at x // 2 of the
  encoded readout; samples a partial echo did not acquire stay zero (`readout_range` says
  which were). A readout of exactly the encoded size, or one with center_sample 0 (not set),
  is placed as a whole / centred.
- Lines: ky = kspace_encode_step_1 - encodingLimits.kspace_encoding_step_1.center + y // 2
  (same for kz); the limits' minimum and maximum bound the lines that were acquired
  (`line_region`: partial Fourier leaves the others unmeasured). Repeated lines (averages;
  repetitions unless kept apart as slices) are averaged.
- 2D multi-slice (encoded z = 1): one output slice per `slice` counter, ordered by position
  along the slice normal (the acquisition headers' position . slice_dir), so interleaved
  acquisition order does not matter; by counter when positions coincide. With repetitions
  kept apart, each (slice, repetition) is an output slice, repetitions of a slice together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrirecon.data.formats.ismrmrd_header import (
    COUNTED,
    IGNORED,
    SEPARATE_MODES,
    Geometry,
    ScanError,
    bit,
    readout_range,
)

IMAGING, CALIBRATION = 1, 2  # bits of RowLayout.kind


@dataclass
class RowLayout:
    """Every row of dataset/data, classified: `kind` (bits IMAGING, CALIBRATION; 0: not used),
    `slice` (output slice), `line` (ky * z + kz in 3D, ky in 2D), `reverse`; `counts` and
    `calibration_counts` (slices, lines): imaging and calibration acquisitions per line; the
    readout format (number_of_samples, discard, center_sample, coils, dwell time); the noise
    rows' Gram matrix sum n n^H (C, C), sample count and dwell time; `slice_order` (2D: the
    slice counter of every output slice); `readouts` (rows per flag and per kind);
    `repetitions` (distinct repetition counters of the imaging rows, and whether each is an
    output slice); `calibration_mode` ('integrated', 'separate' or 'none') and how it was
    known."""

    kind: np.ndarray
    slice: np.ndarray
    line: np.ndarray
    reverse: np.ndarray
    counts: np.ndarray
    calibration_counts: np.ndarray
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
    readouts: dict[str, int] = field(default_factory=dict)
    repetitions: int = 1
    repetitions_as_slices: bool = False
    calibration_mode: tuple[str, str] = ("none", "")

    @property
    def keep(self) -> np.ndarray:
        """(rows,) bool: the imaging rows."""
        return (self.kind & IMAGING) > 0

    @property
    def calibration(self) -> np.ndarray:
        """(rows,) bool: the calibration rows (used for coil maps)."""
        return (self.kind & CALIBRATION) > 0

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

    def readout_range(self, size: int) -> tuple[int, int]:
        """[first, stop) of the encoded readout (of `size`) that the imaging readouts acquire."""
        keep = self.keep
        forward, reversed_ = bool((keep & ~self.reverse).any()), bool((keep & self.reverse).any())
        return readout_range(self.samples, self.discard, self.center_sample, size, forward, reversed_)


class _Rows:
    """Accumulates the per-chunk classification of `scan_rows`."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self.kind: list[np.ndarray] = []
        self.counter: list[np.ndarray] = []
        self.repetition: list[np.ndarray] = []
        self.line: list[np.ndarray] = []
        self.reverse: list[np.ndarray] = []
        self.calibration_format: list[np.ndarray] = []
        self.format: tuple[int, int, int, int, int, float] | None = None
        self.noise_gram: np.ndarray | None = None
        self.noise_samples = self.noise_rows = 0
        self.noise_dwell = 0.0
        self.positions: dict[int, float] = {}
        self.others: dict[str, set[int]] = {"contrast": set(), "phase": set(), "set": set()}
        self.readouts: dict[str, int] = dict.fromkeys(COUNTED, 0)
        self.readouts["other_encoding_space"] = 0


def row_kinds(flags: np.ndarray) -> np.ndarray:
    """(rows,) uint8 kind of each row from its flags (uint64): bits IMAGING and CALIBRATION
    (see the module docstring); 0 for noise and ignored rows."""
    has = lambda name: (flags & bit(name)) != 0  # noqa: E731
    skipped = has("ACQ_IS_NOISE_MEASUREMENT")
    for name in IGNORED:
        skipped |= has(name)
    both = has("ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING")
    calibration = has("ACQ_IS_PARALLEL_CALIBRATION") | both
    imaging = ~has("ACQ_IS_PARALLEL_CALIBRATION") | both
    kind = imaging.astype(np.uint8) * IMAGING + calibration.astype(np.uint8) * CALIBRATION
    return np.where(skipped, 0, kind).astype(np.uint8)


FORMAT_FIELDS = ("number_of_samples", "discard_pre", "discard_post", "center_sample", "active_channels")


def _classify(acc: _Rows, first_row: int, rows: np.ndarray) -> None:
    """Classify one chunk of rows into `acc` (checks formats; collects noise)."""
    head = rows["head"]
    flags = head["flags"].astype(np.uint64)
    for name in COUNTED:
        acc.readouts[name] += int(((flags & bit(name)) != 0).sum())
    kind = row_kinds(flags)
    other_space = (head["encoding_space_ref"] != 0) & (kind > 0)
    acc.readouts["other_encoding_space"] += int(other_space.sum())
    kind[other_space] = 0
    keep, used = (kind & IMAGING) > 0, kind > 0
    if np.any(head["trajectory_dimensions"][used] > 0):
        raise ScanError("readouts carry a trajectory: only Cartesian acquisitions are read")
    _check_format(acc, head, keep)
    acc.calibration_format.append(np.stack([head[name].astype(np.int64) for name in FORMAT_FIELDS], axis=1))
    noise = (flags & bit("ACQ_IS_NOISE_MEASUREMENT")) != 0
    if noise.any():
        _add_noise(acc, rows, np.flatnonzero(noise))
    idx = head["idx"]
    _, ey, ez = acc.geometry.encoded
    ky = idx["kspace_encode_step_1"].astype(np.int64) - acc.geometry.centre[0] + ey // 2
    kz = idx["kspace_encode_step_2"].astype(np.int64) - acc.geometry.centre[1] + ez // 2
    bad = used & ((ky < 0) | (ky >= ey) | (kz < 0) | (kz >= ez))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ScanError(
            f"acquisition {first_row + j}: encode steps ({idx['kspace_encode_step_1'][j]}, "
            f"{idx['kspace_encode_step_2'][j]}) lie outside the encoded matrix {ey}x{ez} and the header's "
            "encoding limits"
        )
    counter = idx["slice"].astype(np.int64)
    for row in np.flatnonzero(used):
        if int(counter[row]) not in acc.positions:
            acc.positions[int(counter[row])] = float(np.dot(head["position"][row], head["slice_dir"][row]))
    for name in acc.others:
        acc.others[name].update(np.unique(idx[name][keep]).tolist())
    acc.kind.append(kind)
    acc.counter.append(np.where(used, counter, 0))
    acc.repetition.append(np.where(used, idx["repetition"].astype(np.int64), 0))
    acc.line.append(np.where(used, ky * ez + kz, 0))
    acc.reverse.append((flags & bit("ACQ_IS_REVERSE")) != 0)


def _check_format(acc: _Rows, head: np.ndarray, keep: np.ndarray) -> None:
    """All imaging readouts share number_of_samples, discard, center_sample and channels."""
    if not keep.any():
        return
    fields = np.stack([head[name][keep].astype(np.int64) for name in FORMAT_FIELDS])
    if acc.format is None:
        first = head[np.flatnonzero(keep)[0]]
        samples, pre, post, centre, channels = (int(v) for v in fields[:, 0])
        acc.format = (samples, pre, post, centre, channels, float(first["sample_time_us"]))
    expected = np.array(acc.format[:5])[:, None]
    mismatch = np.flatnonzero((fields != expected).any(1))
    if mismatch.size:
        raise ScanError(
            f"readouts differ in {FORMAT_FIELDS[int(mismatch[0])]}: mrirecon reads one readout format per file"
        )


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


def _check_counters(acc: _Rows, geometry: Geometry) -> None:
    """Refuse what one image per slice cannot hold: several contrasts, phases or sets, or
    several slabs of a 3D scan."""
    if acc.format is None or acc.format[4] < 1:
        raise ScanError("file has no imaging acquisitions")
    for name, values in acc.others.items():
        if len(values) > 1:
            raise ScanError(
                f"file holds {len(values)} values of the '{name}' counter ({sorted(values)[:6]}): mrirecon reads "
                "one image per slice (split the file by that counter first)"
            )
    if not geometry.two_d and len(acc.positions) > 1:
        raise ScanError(f"3D acquisition with {len(acc.positions)} slabs (slice counter): one slab is read")


def _usable_calibration(acc: _Rows, kind: np.ndarray) -> None:
    """Calibration-only rows whose readout format differs from the imaging rows' cannot share
    their grid: they are dropped (counted as readouts['calibration_other_format'])."""
    assert acc.format is not None
    fmt = np.concatenate(acc.calibration_format)
    other = ((kind & CALIBRATION) > 0) & (fmt != np.array(acc.format[:5])).any(1)
    acc.readouts["calibration_other_format"] = int(other.sum())
    kind[other] &= np.uint8(IMAGING)


def _output_slices(
    acc: _Rows, geometry: Geometry, kind: np.ndarray, separate_repetitions: bool
) -> tuple[np.ndarray, list[int], int]:
    """The output slice of every row, the slice order and the number of repetitions (see the
    module docstring): (rows,) int64, counters in output order, repetitions."""
    counter, repetition = np.concatenate(acc.counter), np.concatenate(acc.repetition)
    reps = np.unique(repetition[(kind & IMAGING) > 0])
    order = _slice_order(acc.positions) if geometry.two_d else [0]
    where = {c: i for i, c in enumerate(order)}
    base = np.array([where.get(int(c), 0) for c in counter], np.int64) if geometry.two_d else counter * 0
    if not separate_repetitions or len(reps) < 2:
        return base, order, len(reps)
    if not geometry.two_d:
        raise ScanError(
            f"3D acquisition with {len(reps)} repetitions: kept apart only for 2D multi-slice scans (split the "
            "file by repetition, or average them)"
        )
    rep_index = np.searchsorted(reps, repetition).clip(0, len(reps) - 1)
    return base * len(reps) + rep_index, order, len(reps)


def _calibration_mode(geometry: Geometry, kind: np.ndarray, out_slice: np.ndarray, line: np.ndarray) -> tuple[str, str]:
    """('integrated' | 'separate' | 'none', 'header' | 'inferred' | ''): see the module docstring."""
    only = kind == CALIBRATION
    if not ((kind & CALIBRATION) > 0).any():
        return "none", ""
    if geometry.calibration_mode is not None and geometry.calibration_mode != "other":
        return ("separate" if geometry.calibration_mode in SEPARATE_MODES else "integrated"), "header"
    lines = int(line.max()) + 1
    imaging = np.unique(out_slice[(kind & IMAGING) > 0] * lines + line[(kind & IMAGING) > 0])
    repeats = np.isin(out_slice[only] * lines + line[only], imaging).any()
    return ("separate" if repeats else "integrated"), "inferred"


def scan_rows(
    geometry: Geometry,
    blocks: Callable[[], Iterator[tuple[int, np.ndarray]]],
    separate_repetitions: bool = False,
) -> RowLayout:
    """Classify every row of dataset/data (see the module docstring); `blocks()` yields
    (first row, rows) chunks of whole rows; `separate_repetitions`: each repetition of a 2D scan
    is an output slice (else repeated lines are averaged)."""
    acc = _Rows(geometry)
    for first_row, rows in blocks():
        _classify(acc, first_row, rows)
    _check_counters(acc, geometry)
    assert acc.format is not None
    kind = np.concatenate(acc.kind)
    _usable_calibration(acc, kind)
    out_slice, order, repetitions = _output_slices(acc, geometry, kind, separate_repetitions)
    line = np.concatenate(acc.line)
    _, ey, ez = geometry.encoded
    slices = len(order) * (repetitions if separate_repetitions and repetitions > 1 else 1)
    counts = np.zeros((slices, ey * ez), np.int64)
    calibration_counts = np.zeros_like(counts)
    for target, bit_ in ((counts, IMAGING), (calibration_counts, CALIBRATION)):
        rows = (kind & bit_) > 0
        np.add.at(target, (out_slice[rows], line[rows]), 1)
    ns, pre, post, centre, coils, dwell = acc.format
    if acc.noise_gram is not None and acc.noise_gram.shape[0] != coils:
        raise ScanError(f"noise readouts have {acc.noise_gram.shape[0]} channels, imaging readouts {coils}")
    acc.readouts["imaging"] = int(((kind & IMAGING) > 0).sum())
    acc.readouts["calibration"] = int(((kind & CALIBRATION) > 0).sum())
    return RowLayout(
        kind, out_slice, line, np.concatenate(acc.reverse), counts, calibration_counts, ns, (pre, post), centre,
        coils, dwell, acc.noise_gram, acc.noise_samples, acc.noise_rows, acc.noise_dwell, order, acc.readouts,
        repetitions, separate_repetitions and repetitions > 1, _calibration_mode(geometry, kind, out_slice, line),
    )  # fmt: skip


def provenance(geometry: Geometry, layout: RowLayout) -> dict[str, Any]:
    """Attributes describing the acquisition for the processed file: matrices, noise scans,
    repeated lines, the rows of every flag (`readouts`, JSON) and the calibration mode."""
    ex, ey, ez = geometry.encoded
    mode, known = layout.calibration_mode
    return {
        "format": "ismrmrd",
        "acquisition": "2D multi-slice" if geometry.two_d else "3D",
        "encoded_matrix": f"{ex}x{ey}x{ez}",
        "recon_matrix": "x".join(map(str, geometry.recon)),
        "noise_scans": int(layout.noise_rows),
        "noise_samples": int(layout.noise_samples),
        "repeated_lines": int((layout.counts > 1).sum()),
        "repetitions": int(layout.repetitions),
        "repetitions_as_slices": int(layout.repetitions_as_slices),
        "readouts": json.dumps(layout.readouts),
        "calibration": mode + (f" ({known})" if known else ""),
        **({"slice_order": json.dumps(layout.slice_order)} if geometry.two_d else {}),
    }
