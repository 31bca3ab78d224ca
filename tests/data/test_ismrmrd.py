"""ISMRMRD raw files as scanners write them: 2D multi-slice, readout geometry, noise scans.

Files are written with the `ismrmrd` package from known k-space; what the reader returns is
checked against an independent NumPy computation from that k-space (placement is never re-run
here: the expected arrays are the known k-space with the unacquired samples zeroed, averaged
lines averaged, then cropped and whitened by the definitions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from formats_helpers import centred_fftn, centred_ifftn, ismrmrd_header, phantom_coils, write_acquisitions
from helpers import run_cli

from mrirecon.data.formats.ismrmrd import IsmrmrdOptions, IsmrmrdSource
from mrirecon.data.formats.ismrmrd_header import place_readouts
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.source import ReadOptions, open_source
from mrirecon.errors import UserError

GARBAGE = 1e3  # value of discarded samples: must never reach the data


@dataclass
class Readout:
    """How the test scans acquire a readout: stored samples, discard, centre sample."""

    samples: int = 40
    pre: int = 2
    post: int = 2
    centre: int = 14  # k = 0 at stored sample 14 (k-space order): a partial echo

    def store(self, line: np.ndarray, reverse: bool) -> np.ndarray:
        """Stored samples (time order) of the encoded line (C, X): sample j holds k = j - centre
        (forward) or k = N - 1 - j - centre (reversed), k = 0 at X // 2; discarded samples hold
        garbage."""
        c, x = line.shape
        out = np.full((c, self.samples), GARBAGE, np.complex64)
        for j in range(self.pre, self.samples - self.post):
            k = (self.samples - 1 - j if reverse else j) - self.centre
            out[:, j] = line[:, x // 2 + k]
        return out

    def acquired(self, x: int, reverse: bool = False) -> np.ndarray:
        """The encoded readout positions (X,) that a readout acquires (bool)."""
        got = np.zeros(x, bool)
        for j in range(self.pre, self.samples - self.post):
            got[x // 2 + (self.samples - 1 - j if reverse else j) - self.centre] = True
        return got


@dataclass
class Scan2D:
    """A 2D multi-slice scan: 4 coils, readout 48 (2x oversampled, recon 24; a full echo stored
    with discarded samples at both ends), 20 phase encodes (recon 16) whose limits centre is 12
    (steps 2..21), 5 slices acquired interleaved
    (counters 0, 2, 4, 1, 3) at positions that order them 1, 3, 0, 4, 2 along the normal, odd
    lines reversed, lines 8..11 acquired twice (average counter 1), and 3 noise readouts of
    correlated noise at twice the imaging dwell time; every readout carries noise of the same
    covariance (scaled to its dwell time)."""

    coils: int = 4
    encoded: tuple[int, int] = (48, 20)
    recon: tuple[int, int] = (24, 16)
    readout: Readout = field(default_factory=lambda: Readout(samples=52, pre=2, post=2, centre=26))
    positions: tuple[int, ...] = (2, 0, 4, 1, 3)
    order: tuple[int, ...] = (1, 3, 0, 4, 2)
    repeated: tuple[int, ...] = (8, 9, 10, 11)
    noise_factor: np.ndarray = field(
        default_factory=lambda: (
            0.02 * np.array([[1, 0, 0, 0], [0.5, 0.8, 0, 0], [0.2j, 0.3, 1.5, 0], [0, 0.1, 0.4, 0.6]])
        )
    )

    def imaging_noise(self, rng: np.random.Generator, samples: int) -> np.ndarray:
        """Noise of an imaging readout (C, samples): the noise scans' covariance, doubled (half
        their dwell time: twice the bandwidth)."""
        z = rng.standard_normal((self.coils, samples)) + 1j * rng.standard_normal((self.coils, samples))
        return self.noise_factor @ z

    def kspace(self, counter: int) -> np.ndarray:
        return centred_fftn(phantom_coils(self.coils, self.encoded, seed=50 + counter), (-2, -1)).astype(np.complex64)


def write_scan_2d(path: Path, scan: Scan2D, noise: bool = True) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Write `scan`; returns the k-space each counter's lines were averaged to (C, X, Y) and the
    noise samples (C, n)."""
    import ismrmrd

    rng = np.random.default_rng(7)
    ex, ey = scan.encoded
    header = ismrmrd_header(
        (ex, ey, 1), (*scan.recon, 1), scan.coils, patient="pat-2d", centre=(12, 0), limits=(ey + 1, 0), slices=5
    )
    noise_samples = (
        scan.noise_factor
        @ (rng.standard_normal((scan.coils, 192)) + 1j * rng.standard_normal((scan.coils, 192)))
        / np.sqrt(2)
    )
    expected: dict[int, np.ndarray] = {}
    acqs = []
    if noise:
        for part in np.split(noise_samples, 3, axis=1):
            acq = ismrmrd.Acquisition(data=part.astype(np.complex64))
            acq.setFlag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            acq.sample_time_us = 5.0
            acqs.append(acq)
    for counter in (0, 2, 4, 1, 3):
        k = scan.kspace(counter)
        avg = k.copy()
        for ky in range(ey):
            reverse = ky % 2 == 1
            repeats = (0, 1) if ky in scan.repeated else (0,)
            lines = [(k[:, :, ky] + scan.imaging_noise(rng, ex)).astype(np.complex64) for _ in repeats]
            avg[:, :, ky] = np.mean(lines, axis=0)
            avg[:, ~scan.readout.acquired(ex, reverse), ky] = 0  # the partial echo
            for average, line in zip(repeats, lines):
                acq = ismrmrd.Acquisition(data=scan.readout.store(line, reverse))
                acq.idx.kspace_encode_step_1, acq.idx.slice, acq.idx.average = ky + 2, counter, average
                acq.discard_pre, acq.discard_post = scan.readout.pre, scan.readout.post
                acq.center_sample, acq.sample_time_us = scan.readout.centre, 2.5
                acq.position, acq.slice_dir = (1.0, 2.0, 5.0 * scan.positions[counter]), (0.0, 0.0, 1.0)
                if reverse:
                    acq.setFlag(ismrmrd.ACQ_IS_REVERSE)
                acqs.append(acq)
        expected[counter] = avg
    write_acquisitions(path, header, acqs)
    return expected, noise_samples


def crop(k: np.ndarray, axis: int, size: int) -> np.ndarray:
    """Crop k-space to `size` along `axis` in image space (centred)."""
    img = centred_ifftn(k, (axis,))
    start = (k.shape[axis] - size) // 2
    return centred_fftn(np.take(img, np.arange(start, start + size), axis=axis), (axis,))


def expected_2d(scan: Scan2D, averaged: np.ndarray, whitening: np.ndarray | None) -> np.ndarray:
    out = crop(crop(averaged, 1, scan.recon[0]), 2, scan.recon[1])
    return out if whitening is None else np.einsum("cd,dxy->cxy", whitening, out)


def close(a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> bool:
    return float(np.abs(a - b).max()) <= tol * float(np.abs(b).max())


@pytest.fixture(scope="module")
def scan_2d(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ismrmrd_2d")
    scan = Scan2D()
    expected, noise = write_scan_2d(folder / "ms.h5", scan)
    return folder, scan, expected, noise


def test_place_readouts_against_direct_indexing():
    """Forward and reversed readouts with discards and an off-centre echo land where k says."""
    rng = np.random.default_rng(1)
    readout = Readout(samples=13, pre=1, post=3, centre=4)
    lines = (rng.standard_normal((2, 3, 16)) + 1j * rng.standard_normal((2, 3, 16))).astype(np.complex64)
    reverse = np.array([False, True])
    stored = np.stack([readout.store(lines[i], bool(reverse[i])) for i in range(2)])
    placed = place_readouts(stored, reverse, (readout.pre, readout.post), readout.centre, 16)
    for i in range(2):
        got = readout.acquired(16, bool(reverse[i]))
        assert np.array_equal(placed[i][:, got], lines[i][:, got]) and not placed[i][:, ~got].any()
    assert not np.array_equal(readout.acquired(16, False), readout.acquired(16, True))  # discards swap sides


def test_2d_multislice_matches_numpy(scan_2d):
    folder, scan, expected, noise = scan_2d
    for buffer_mb in (256.0, 0.01):  # one slab, and slabs of one slice (memory bounded)
        src = open_source(str(folder / "ms.h5"), ReadOptions(formats=(IsmrmrdOptions(buffer_mb),)))
        assert isinstance(src, IsmrmrdSource) and min(src.slab, 5) == (1 if buffer_mb < 1 else 5)
        assert (len(src), src.num_coils, src.shape) == (5, 4, (24, 16)) and src.has_reference
        assert json.loads(src.attrs["slice_order"]) == list(scan.order)
        assert src.attrs["subject_id"] == "pat-2d" and src.attrs["acquisition"] == "2D multi-slice"
        cov = noise @ noise.conj().T / noise.shape[1] * 2.0  # noise dwell 5 us, imaging 2.5 us
        whitening = np.linalg.inv(np.linalg.cholesky(cov))
        for i, counter in enumerate(scan.order):
            assert close(src.kspace(i), expected_2d(scan, expected[counter], whitening))
        src.close()
    white = whitening @ noise
    assert np.allclose(white @ white.conj().T / noise.shape[1], 0.5 * np.eye(4), atol=1e-6)  # half: the dwell scaling


def test_one_mask_per_volume(scan_2d):
    """Every slice of a raw volume gets the same mask, seeded by (seed, file name) as fastMRI's
    volumes are; another seed gives another mask."""
    folder = scan_2d[0]
    masks_of = {}
    for seed in (723, 724):
        src = open_source(str(folder / "ms.h5"), ReadOptions(seed=seed, accel=3, calib=4))
        masks_of[seed] = [src.read(i).mask for i in range(len(src))]
        src.close()
        assert all(np.array_equal(m, masks_of[seed][0]) for m in masks_of[seed])
    assert not np.array_equal(masks_of[723][0], masks_of[724][0])


def test_2d_noise_std_and_no_prewhitening(scan_2d):
    folder, scan, expected, noise = scan_2d
    shrink = np.sqrt((16 + 4 / 2) / 20)  # 4 of 20 lines are averages of 2
    src = open_source(str(folder / "ms.h5"), ReadOptions(calib_width=12, calib=8, accel=2))
    s = src.read(0)
    assert src.attrs["prewhitened"] == 1 and src.attrs["noise_scans"] == 3 and s.noise_std == pytest.approx(shrink)
    plain = open_source(str(folder / "ms.h5"), ReadOptions(prewhiten="false", calib_width=12, calib=8, accel=2))
    cov = noise @ noise.conj().T / noise.shape[1] * 2.0
    assert plain.attrs["prewhitened"] == 0
    assert close(plain.kspace(2), expected_2d(scan, expected[scan.order[2]], None))
    sigma = np.sqrt(np.trace(cov).real / 4) * shrink
    assert plain.read(1).noise_std == pytest.approx(sigma, rel=1e-5)
    stored = np.array(json.loads(plain.attrs["noise_covariance"]))
    assert np.allclose(stored[..., 0] + 1j * stored[..., 1], cov)


@pytest.mark.slow
def test_2d_preprocess_reconstruct_with_prewhitening(scan_2d):
    """The CLI path: preprocess stores the whitened k-space and sigma, reconstruct says so."""
    folder, scan, expected, noise = scan_2d
    small = ("data.espirit.calib_width=12", "data.undersampling.calib=8", "data.undersampling.accel=2")
    res = run_cli(
        "preprocess", "data=full", "data.source=ms.h5", "data.path=out.h5", *small, "hydra.run.dir=pre", cwd=folder
    )
    assert res.returncode == 0, res.stderr
    f = DeepInPyFile(folder / "out.h5")
    assert f.attrs["source_prewhitened"] == 1 and "noise scans" in f.attrs["noise_std_definition"]
    cov = noise @ noise.conj().T / noise.shape[1] * 2.0
    whitening = np.linalg.inv(np.linalg.cholesky(cov))
    for i, counter in enumerate(scan.order):
        s = f.read(i)
        assert close(s.ksp, expected_2d(scan, expected[counter], whitening))
        assert close(s.img, np.sum(np.conj(s.maps) * centred_ifftn(s.ksp, (-2, -1)), axis=0))
        assert s.noise_std == pytest.approx(np.sqrt(0.9))
    assert (f.subjects() == 0).all()
    res = run_cli(
        "reconstruct",
        "method=cg_sense",
        "data=full",
        "data.path=out.h5",
        "data.split=all",
        "figures=0",
        "hydra.run.dir=rec",
        cwd=folder,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((folder / "rec" / "summary.json").read_text())
    assert summary["prewhitened"] is True and summary["noise_std"]["mean"] == pytest.approx(np.sqrt(0.9), rel=1e-5)
    assert summary["mean"]["psnr"] > 20 and summary["data_consistency"]["max"] < 0.1


def test_prewhiten_true_needs_noise_scans(tmp_path):
    write_scan_2d(tmp_path / "quiet.h5", Scan2D(), noise=False)
    src = open_source(str(tmp_path / "quiet.h5"), ReadOptions())
    assert src.attrs["prewhitened"] == 0 and src.attrs["noise_scans"] == 0 and src.noise_std is None
    res = run_cli(
        "preprocess", "data=full", "data.source=quiet.h5", "data.path=o.h5", "data.prewhiten=true", cwd=tmp_path
    )
    assert res.returncode == 2 and "data.prewhiten" in res.stderr and "noise" in res.stderr
    assert not (tmp_path / "o.h5").exists()


def test_3d_reversed_partial_echo_repeats_match_numpy(tmp_path):
    """3D: encoded 16 x 8 x 6, readouts of 12 stored samples (discard 1 + 2, echo at stored
    sample 4: 9 of 16 positions acquired, a partial echo whose side depends on the direction),
    odd ky reversed, kz limits centre 4 (steps shifted by +1), line (3, 2) acquired three
    times (repetitions), slabs of one slice."""
    import ismrmrd

    rng = np.random.default_rng(3)
    c, ex, ey, ez = 3, 16, 8, 6
    readout = Readout(samples=12, pre=1, post=2, centre=4)
    k = centred_fftn(phantom_coils(c, (ex, ey, ez), seed=9), (1, 2, 3)).astype(np.complex64)
    header = ismrmrd_header((ex, ey, ez), (ex, ey, ez), c, centre=(ey // 2, 4), limits=(ey - 1, ez))
    acqs, avg = [], k.copy()
    for kz in range(ez):
        for ky in range(ey):
            repeats = 3 if (ky, kz) == (3, 2) else 1
            lines = [k[:, :, ky, kz] + (0.1 * rng.standard_normal((c, ex)) if r else 0) for r in range(repeats)]
            reverse = ky % 2 == 1
            avg[:, :, ky, kz] = np.mean(lines, axis=0)
            avg[:, ~readout.acquired(ex, reverse), ky, kz] = 0  # partial echo; discards differ by direction
            for r, line in enumerate(lines):
                acq = ismrmrd.Acquisition(data=readout.store(line.astype(np.complex64), reverse))
                acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2, acq.idx.repetition = ky, kz + 1, r
                acq.discard_pre, acq.discard_post, acq.center_sample = readout.pre, readout.post, readout.centre
                if reverse:
                    acq.setFlag(ismrmrd.ACQ_IS_REVERSE)
                acqs.append(acq)
    write_acquisitions(tmp_path / "p.h5", header, acqs)
    src = open_source(str(tmp_path / "p.h5"), ReadOptions(formats=(IsmrmrdOptions(0.001),)))
    hybrid = centred_ifftn(avg, (1,))
    assert len(src) == ex and src.attrs["repeated_lines"] == 1 and src.noise_std is None
    for i in range(ex):
        assert close(src.kspace(i), hybrid[:, i])


def test_two_contrasts_refused(tmp_path):
    import ismrmrd

    header = ismrmrd_header((8, 4, 1), (8, 4, 1), 2)
    acqs = []
    for contrast in (0, 1):
        for ky in range(4):
            acq = ismrmrd.Acquisition(data=np.ones((2, 8), np.complex64))
            acq.idx.kspace_encode_step_1, acq.idx.contrast = ky, contrast
            acqs.append(acq)
    write_acquisitions(tmp_path / "two.h5", header, acqs)
    with pytest.raises(UserError, match="two.h5.*'contrast' counter"):
        open_source(str(tmp_path / "two.h5"), ReadOptions())


def test_2d_without_repeats_matches_numpy(tmp_path):
    """Lines acquired once are placed by assignment (no accumulation): same result."""
    scan = Scan2D(repeated=())
    expected, _ = write_scan_2d(tmp_path / "once.h5", scan)
    src = open_source(str(tmp_path / "once.h5"), ReadOptions(prewhiten="false"))
    assert src.attrs["repeated_lines"] == 0
    for i, counter in enumerate(scan.order):
        assert close(src.kspace(i), expected_2d(scan, expected[counter], None))
