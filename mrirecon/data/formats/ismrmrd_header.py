"""What an ISMRMRD raw file's XML header and acquisition headers say, one readout at a time:
the flags (the `ismrmrd` package's numbers), the geometry (`read_geometry`: encoded and recon
matrices, encoding limits, 2D multi-slice or 3D, the calibration mode), where a readout's samples
go (`place_readouts`), the declared size checked against memory, and the noise whitening matrix.
The conventions are listed in `ismrmrd_rows`.

Noise: noise-only readouts (ACQ_IS_NOISE_MEASUREMENT) give the coil noise covariance Psi per
sample (scaled to the imaging dwell time). With `prewhiten` auto or true, k-space is prewhitened
with W = L^-1 (Psi = L L^H, Cholesky, as BART's `whiten` and mrpro), so the noise is white with
sigma = 1 per sample and coil (in the whitened data's units); without prewhitening sigma is the
root mean square of the coils' noise standard deviations. Either way the slice's `noise_std`
comes from the noise scans (divided by sqrt of the average repeat count of averaged lines);
files without noise scans leave it to preprocess's estimate from the k-space periphery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import ismrmrd
import numpy as np

from mrirecon.data.transforms import fft1c_numpy, ifft1c_numpy
from mrirecon.io.memory import require

IGNORED = (  # mrpro's DEFAULT_IGNORE_FLAGS less noise and calibration, which are used
    "ACQ_IS_NAVIGATION_DATA",
    "ACQ_IS_PHASECORR_DATA",
    "ACQ_IS_HPFEEDBACK_DATA",
    "ACQ_IS_RTFEEDBACK_DATA",
    "ACQ_IS_DUMMYSCAN_DATA",
    "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA",
    "ACQ_IS_PHASE_STABILIZATION_REFERENCE",
    "ACQ_IS_PHASE_STABILIZATION",
)


COUNTED = (  # flags whose rows the provenance counts
    "ACQ_IS_NOISE_MEASUREMENT",
    "ACQ_IS_PARALLEL_CALIBRATION",
    "ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING",
    "ACQ_IS_REVERSE",
    *IGNORED,
)


SEPARATE_MODES = ("separate", "external")


class ScanError(ValueError):
    """A file whose headers cannot be read as a Cartesian acquisition; the message says why."""


def bit(flag: int | str) -> np.uint64:
    """The bit of an ISMRMRD flag (its number, or its name in the `ismrmrd` package)."""
    number = int(getattr(ismrmrd, flag)) if isinstance(flag, str) else flag
    return np.uint64(1) << np.uint64(number - 1)


@dataclass(frozen=True)
class Geometry:
    """From the XML header: encoded (x, y, z) and recon (x, y, z) matrix sizes, the encoding
    limits' centres of (ky, kz), the patient ID, the limits' (minimum, maximum) of (ky, kz)
    steps (None where absent) and the parallel-imaging calibration mode (None: not stated)."""

    encoded: tuple[int, int, int]
    recon: tuple[int, int, int]
    centre: tuple[int, int]
    patient: str | None
    limits: tuple[tuple[int, int] | None, tuple[int, int] | None] = (None, None)
    calibration_mode: str | None = None

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
    centre: list[int] = []
    bounds: list[tuple[int, int] | None] = []
    for name, size in (("kspace_encoding_step_1", encoded[1]), ("kspace_encoding_step_2", encoded[2])):
        lim = getattr(limits, name, None) if limits is not None else None
        centre.append(size // 2 if lim is None or lim.center is None else int(lim.center))
        has_bounds = lim is not None and lim.minimum is not None and lim.maximum is not None
        bounds.append((int(lim.minimum), int(lim.maximum)) if has_bounds else None)  # type: ignore[union-attr]
    recon = tuple(min(max(int(a), 1), b) for a, b in zip((r.x, r.y, r.z), encoded))
    subject = header.subjectInformation.patientID if header.subjectInformation is not None else None
    mode = getattr(getattr(enc.parallelImaging, "calibrationMode", None), "value", None)
    return Geometry(
        encoded,
        recon,  # type: ignore[arg-type]
        (centre[0], centre[1]),
        str(subject) if subject else None,
        (bounds[0], bounds[1]),
        None if mode is None else str(mode),
    )


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


def readout_range(
    count: int, discard: tuple[int, int], center_sample: int, size: int, forward: bool, reversed_: bool
) -> tuple[int, int]:
    """[first, stop) of the encoded readout positions that the forward and/or reversed readouts
    acquire (`readout_offsets`): the whole grid unless an echo is partial."""
    kept = count - sum(discard)
    first_forward, first_reversed = readout_offsets(count, discard, center_sample, size)
    firsts = [f for f, used in ((first_forward, forward), (first_reversed, reversed_)) if used] or [first_forward]
    return min(firsts), max(firsts) + kept


def covariance_json(cov: np.ndarray) -> str:
    """A covariance matrix as JSON: rows of [real, imag] pairs (provenance)."""
    return json.dumps([[[float(v.real), float(v.imag)] for v in row] for row in cov])


def crop_kspace(ksp: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
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


def check_declared_size(path: Path, geometry: Geometry, coils: int) -> None:
    """Refuse (UserError) a header whose encoded matrix makes one slice (its k-space and coil
    maps, complex64, and the line counts) too large for the memory available (mrirecon/io/memory.py),
    before the reader allocates it: a small file can declare any matrix."""
    ex, ey, ez = geometry.encoded
    plane = ex * ey if geometry.two_d else ey * ez
    need = 2 * 8 * max(coils, 1) * plane + 8 * ey * ez
    require(need, f"{path}: ISMRMRD header declares an encoded matrix {ex}x{ey}x{ez} of {coils} coils")
