"""2D multi-slice ISMRMRD scans as scanners write them, made from known k-space with the `ismrmrd`
package: undersampling, integrated or separate calibration lines, non-imaging readouts
(navigators, phase stabilisation, ...), readout oversampling, partial echo, partial Fourier,
repetitions and noise scans, each switched on by a field of `Scan`.

The truth is k-space (S, C, X, Y) per slice, X the readout and Y the phase encodes; `phantom()`
gives the real 4-coil phantom scan (tests/assets: fully sampled, real scanner noise) as two
slices. The tests check what the reader returns against this truth, never against the reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from formats_helpers import centred_fftn, centred_ifftn, ismrmrd_header, write_acquisitions

ASSETS = Path(__file__).resolve().parent / "assets"
NOISE_STD = 2.7e-6  # the phantom's k-space noise std per sample (its corners)


def phantom(slices: int = 2) -> np.ndarray:
    """The real phantom's k-space (4 coils, 256 x 256) as `slices` slices (S, 4, X, Y), X its
    readout (the file's last axis) and Y its lines (the file's middle axis, along which its coils
    separate: R = 2 SENSE works there); odd slices have the image flipped along y (another real
    image per slice)."""
    k = np.swapaxes(np.load(ASSETS / "phantom_4coil_gre_256.npy"), 1, 2)
    flipped = centred_fftn(centred_ifftn(k, (-2, -1))[:, :, ::-1], (-2, -1))
    return np.stack([k if s % 2 == 0 else flipped for s in range(slices)]).astype(np.complex64)


@dataclass(frozen=True)
class Scan:
    """How a scan acquires the truth (all defaults: every line once, full echo, no oversampling).

    accel: imaging lines every accel-th ky (the centre line Y // 2 among them).
    calib: the calibration block, `calib` central lines (Y // 2 - calib // 2 ...).
    calibration: 'integrated' (block lines that are not imaging lines are calibration-only
        readouts, ACQ_IS_PARALLEL_CALIBRATION; imaging lines in the block carry that flag and
        ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING, as Siemens writes them) or 'separate' (a
        reference scan of the whole block before the imaging, ACQ_IS_PARALLEL_CALIBRATION, with
        another contrast: `reference_scale` times the truth).
    mode: the header's parallelImaging/calibrationMode (None: not stated).
    oversampling: readout oversampling factor (the image placed in the centre of a readout FOV
        this many times larger, the rest real-level noise, as a scanner's oversampling sees).
    echo: encoded readout samples not acquired at the start of every readout (partial echo).
    lines: (first, last + 1) acquired ky range (partial Fourier); the header's limits say so.
    extra: flag names (ismrmrd.ACQ_IS_...): for every imaging line one more readout with that
        flag and the same counters, holding the centre line with another phase (a navigator).
    repetitions: every readout acquired this many times (repetition counter); repetition r
        holds (1 + r * repeat_gain) times the truth (a signal that changes between repetitions).
    noise_rows: noise-only readouts (ACQ_IS_NOISE_MEASUREMENT) before the imaging.
    """

    accel: int = 1
    calib: int = 0
    calibration: str = "integrated"
    mode: str | None = None
    reference_scale: float = 0.5
    oversampling: int = 1
    echo: int = 0
    lines: tuple[int, int] | None = None
    extra: tuple[str, ...] = ()
    repetitions: int = 1
    repeat_gain: float = 1.0
    noise_rows: int = 0

    def imaging(self, y: int) -> np.ndarray:
        """(Y,) bool: the imaging lines."""
        ky = np.arange(y)
        out = (ky - y // 2) % self.accel == 0
        if self.lines is not None:
            out &= (ky >= self.lines[0]) & (ky < self.lines[1])
        return out

    def block(self, y: int) -> np.ndarray:
        """(Y,) bool: the calibration block."""
        out = np.zeros(y, bool)
        out[y // 2 - self.calib // 2 : y // 2 - self.calib // 2 + self.calib] = True
        return out


def oversampled(k: np.ndarray, factor: int, rng: np.random.Generator) -> np.ndarray:
    """k-space (C, X, Y) with the readout FOV `factor` times larger: the image in the centre, the
    added FOV holding complex noise of the phantom's k-space level (exactly removed by a crop)."""
    if factor == 1:
        return k
    c, x, y = k.shape
    img = np.zeros((c, factor * x, y), np.complex128)
    img += NOISE_STD / np.sqrt(2) * (rng.standard_normal(img.shape) + 1j * rng.standard_normal(img.shape))
    start = (factor * x - x) // 2
    img[:, start : start + x] = centred_ifftn(k, (-2, -1))
    return centred_fftn(img, (-2, -1)).astype(np.complex64)


def _readout(line: np.ndarray, scan: Scan, ky: int, s: int, centre: int, flags: tuple[int, ...]):
    """One ismrmrd.Acquisition of the encoded line (C, X) at (ky, slice s)."""
    import ismrmrd

    acq = ismrmrd.Acquisition(data=np.ascontiguousarray(line[:, scan.echo :], dtype=np.complex64))
    acq.idx.kspace_encode_step_1, acq.idx.slice = ky, s
    acq.center_sample = centre - scan.echo
    acq.position, acq.slice_dir = (0.0, 0.0, 4.0 * s), (0.0, 0.0, 1.0)
    acq.sample_time_us = 5.0
    for flag in flags:
        acq.setFlag(flag)
    return acq


def write_scan(path: Path, truth: np.ndarray, scan: Scan, seed: int = 0) -> Path:
    """Write the ISMRMRD file of `truth` (S, C, X, Y) acquired as `scan` says (see `Scan`)."""
    import ismrmrd
    import ismrmrd.xsd as xsd

    rng = np.random.default_rng(seed)
    s_count, c, x, y = truth.shape
    ex = scan.oversampling * x
    first, stop = scan.lines or (0, y)
    header = ismrmrd_header((ex, y, 1), (x, y, 1), c, centre=(y // 2, 0), slices=s_count)
    limits = header.encoding[0].encodingLimits.kspace_encoding_step_1
    limits.minimum, limits.maximum = first, stop - 1
    if scan.mode is not None:
        factor = xsd.accelerationFactorType(kspace_encoding_step_1=scan.accel, kspace_encoding_step_2=1)
        header.encoding[0].parallelImaging = xsd.parallelImagingType(
            accelerationFactor=factor, calibrationMode=xsd.calibrationModeType(scan.mode)
        )
    acqs = []
    for _ in range(scan.noise_rows):
        noise = NOISE_STD / np.sqrt(2) * (rng.standard_normal((c, ex)) + 1j * rng.standard_normal((c, ex)))
        acq = ismrmrd.Acquisition(data=noise.astype(np.complex64))
        acq.setFlag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        acq.sample_time_us = 5.0
        acqs.append(acq)
    imaging, block = scan.imaging(y), scan.block(y) if scan.calib else np.zeros(y, bool)
    calibration_flag, both_flag = ismrmrd.ACQ_IS_PARALLEL_CALIBRATION, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
    for s in range(s_count):
        k = oversampled(truth[s], scan.oversampling, rng)
        if scan.calibration == "separate":
            for ky in np.flatnonzero(block):
                acqs.append(_readout(scan.reference_scale * k[:, :, ky], scan, ky, s, ex // 2, (calibration_flag,)))
        for rep in range(scan.repetitions):
            for ky in range(y):
                integrated = scan.calibration == "integrated" and block[ky]
                if not imaging[ky] and not integrated:
                    continue
                line = k[:, :, ky] * (1 + rep * scan.repeat_gain)
                flags = () if not integrated else (calibration_flag, both_flag) if imaging[ky] else (calibration_flag,)
                acq = _readout(line, scan, ky, s, ex // 2, flags)
                acq.idx.repetition = rep
                acqs.append(acq)
                if imaging[ky]:
                    for name in scan.extra:
                        navigator = k[:, :, y // 2] * np.exp(1j * (0.3 + ky / 7))
                        extra = _readout(navigator, scan, ky, s, ex // 2, (getattr(ismrmrd, name),))
                        extra.idx.repetition = rep
                        acqs.append(extra)
    write_acquisitions(path, header, acqs)
    return path
