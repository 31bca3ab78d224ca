"""ISMRMRD flags, calibration lines, partial echo / Fourier and repetitions, on files written with
the `ismrmrd` package from the real 4-coil phantom scan (fully sampled, real noise: the truth).

Every check compares what the reader returns with the truth the file was made from
(tests/ismrmrd_scans.py), never with the reader's own output; coil maps are judged by CG-SENSE
against the fully sampled reference, with maps from the truth's full calibration block.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from ismrmrd_scans import Scan, phantom, write_scan

from mrirecon.data.completion import MapEstimator, calibration_block, espirit_maps, sense_combine
from mrirecon.data.formats.ismrmrd import IsmrmrdOptions
from mrirecon.data.formats.ismrmrd_header import IGNORED
from mrirecon.data.formats.ismrmrd_rows import CALIBRATION, IMAGING, row_kinds
from mrirecon.data.formats.ismrmrd_sampling import recon_rows
from mrirecon.data.masks import MaskError
from mrirecon.data.source import ReadOptions, open_source
from mrirecon.errors import UserError
from mrirecon.evaluation import metrics
from mrirecon.methods import build_method
from mrirecon.physics.noise import estimate_noise_std
from mrirecon.physics.sense import SenseOperator


@pytest.fixture(scope="module")
def truth():
    return phantom(1)


@pytest.fixture(scope="module")
def full_block(truth):
    """Maps from the truth's fully sampled centre and the SENSE-combined reference."""
    maps = espirit_maps(truth[0], 24, 0.02, 0.95)
    return maps, sense_combine(truth[0], maps)


def cg_psnr(ksp: np.ndarray, mask: np.ndarray, maps: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of CG-SENSE from ksp * mask with `maps` against the reference."""
    y, m = torch.from_numpy(ksp * mask)[None], torch.from_numpy(mask)[None]
    op = SenseOperator(torch.from_numpy(maps)[None], m)
    with torch.no_grad():
        x = build_method({"name": "cg_sense"}).reconstruct(y, op, estimate_noise_std(y, m))[0].numpy()
    return metrics.psnr(np.abs(x), np.abs(reference))


def lines_of(mask: np.ndarray) -> np.ndarray:
    """(Y,) bool: the phase-encode lines a mask (X, Y) samples, checked to be whole lines."""
    assert ((mask == 0) | (mask == 1)).all() and (mask == mask[:1]).all(), "not whole lines"
    return mask[0] > 0


def test_flags_are_the_ismrmrd_packages():
    """Every flag combination gets the kind Gadgetron's bucketing gives it (flag numbers from the
    ismrmrd package)."""
    import ismrmrd

    def kind(*names: str) -> int:
        acq = ismrmrd.Acquisition()
        for name in names:
            acq.setFlag(getattr(ismrmrd, name))
        return int(row_kinds(np.array([acq.flags], np.uint64))[0])

    assert kind() == IMAGING and kind("ACQ_IS_REVERSE") == IMAGING
    assert kind("ACQ_IS_PARALLEL_CALIBRATION") == CALIBRATION
    assert kind("ACQ_IS_PARALLEL_CALIBRATION", "ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING") == IMAGING | CALIBRATION
    assert kind("ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING") == IMAGING | CALIBRATION
    assert kind("ACQ_IS_NOISE_MEASUREMENT") == 0
    for name in IGNORED:
        assert kind(name) == 0 and kind(name, "ACQ_IS_PARALLEL_CALIBRATION") == 0, name
    assert {"ACQ_IS_PHASE_STABILIZATION", "ACQ_IS_PHASE_STABILIZATION_REFERENCE", "ACQ_IS_NAVIGATION_DATA"} <= set(
        IGNORED
    )


@pytest.mark.parametrize("flag", IGNORED)
def test_non_imaging_readouts_change_nothing(tmp_path, truth, flag):
    """A readout of every ignored flag beside each imaging line (the centre line with another
    phase, same counters): the k-space equals the file without them, bit for bit (the old
    reader averaged phase-stabilisation lines into the image: -12 dB -> here -inf dB)."""
    plain = open_source(str(write_scan(tmp_path / "plain.h5", truth, Scan())), ReadOptions())
    extra = open_source(str(write_scan(tmp_path / "extra.h5", truth, Scan(extra=(flag,)))), ReadOptions())
    assert np.array_equal(extra.kspace(0), plain.kspace(0)) and np.array_equal(plain.kspace(0), truth[0])
    assert json.loads(extra.attrs["readouts"])[flag] == 256 and json.loads(extra.attrs["readouts"])["imaging"] == 256


def test_phase_stabilisation_slice_equals_the_file_without(tmp_path, truth):
    """Done when: the whole slice (k-space, maps, reference, noise) of the file with
    phase-stabilisation readouts equals the file without them to -30 dB or better."""
    scan = Scan(extra=("ACQ_IS_PHASE_STABILIZATION", "ACQ_IS_PHASE_STABILIZATION_REFERENCE"), noise_rows=4)
    for name in ("stab", "plain"):
        (tmp_path / name).mkdir()  # one file name: the same mask seed
    with_lines = open_source(str(write_scan(tmp_path / "stab" / "scan.h5", truth, scan)), ReadOptions()).read(0)
    plain = write_scan(tmp_path / "plain" / "scan.h5", truth, Scan(noise_rows=4))
    without = open_source(str(plain), ReadOptions()).read(0)
    for key in ("ksp", "maps", "img", "mask"):
        a, b = getattr(with_lines, key), getattr(without, key)
        assert np.linalg.norm(a - b) <= 10 ** (-30 / 20) * np.linalg.norm(b), key
    assert with_lines.noise_std == without.noise_std


@pytest.mark.parametrize("mode", [None, "embedded"])
def test_integrated_calibration_lines(tmp_path, truth, full_block, mode):
    """R = 2 with 24 calibration lines written as Siemens does (the block's non-imaging lines
    ACQ_IS_PARALLEL_CALIBRATION only): the mask is the R = 2 pattern that was measured, the
    k-space the truth on it, and the maps (from the full block) reconstruct within 1 dB of maps
    from the truth's full block (the old reader: 12.8 dB against 33.8 dB)."""
    scan = Scan(accel=2, calib=24, mode=mode)
    src = open_source(str(write_scan(tmp_path / "r2.h5", truth, scan)), ReadOptions())
    s = src.read(0)
    imaging = scan.imaging(256)
    assert not src.has_reference and np.array_equal(lines_of(s.mask), imaging)
    assert np.array_equal(s.ksp, truth[0] * imaging)
    assert src.attrs["calibration"] == ("integrated (inferred)" if mode is None else "integrated (header)")
    counts = json.loads(src.attrs["readouts"])
    assert counts["calibration"] == 24 and counts["ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING"] == 12
    assert counts["imaging"] == imaging.sum() and src.attrs["mask"] == "acquired"
    maps, reference = full_block
    ours, best = cg_psnr(s.ksp, s.mask, s.maps, reference), cg_psnr(s.ksp, s.mask, maps, reference)
    assert best > 30 and ours > best - 1


@pytest.mark.parametrize("mode", [None, "separate"])
def test_separate_reference_scan(tmp_path, truth, full_block, mode):
    """A reference scan of the 24 central lines in another contrast (half the signal) before an
    R = 2 acquisition: used for the maps, never as image data."""
    scan = Scan(accel=2, calib=24, calibration="separate", mode=mode)
    src = open_source(str(write_scan(tmp_path / "sep.h5", truth, scan)), ReadOptions())
    s = src.read(0)
    assert np.array_equal(s.ksp, truth[0] * scan.imaging(256)) and np.array_equal(lines_of(s.mask), scan.imaging(256))
    assert src.attrs["calibration"] == ("separate (inferred)" if mode is None else "separate (header)")
    maps, reference = full_block
    assert cg_psnr(s.ksp, s.mask, s.maps, reference) > cg_psnr(s.ksp, s.mask, maps, reference) - 1


def test_small_calibration_block_warns_and_none_is_refused(tmp_path, truth, caplog):
    """12 calibration lines (122..133; with the imaging line 134 a 13x13 centred block): maps from
    that block with a warning naming it; no block at all (R = 2 without calibration): a one-line
    error instead of maps from an undersampled centre."""
    small = open_source(str(write_scan(tmp_path / "small.h5", truth, Scan(accel=2, calib=12))), ReadOptions())
    with caplog.at_level(logging.WARNING):
        s = small.read(0)
    assert "13x13" in caplog.text and "calib_width 24" in caplog.text and np.abs(s.maps).max() > 0
    bare = open_source(str(write_scan(tmp_path / "bare.h5", truth, Scan(accel=2))), ReadOptions())
    with pytest.raises(UserError, match=r"bare\.h5.*no fully sampled calibration block"):
        bare.read(0)


def test_calibration_block():
    sampled = np.zeros((10, 12), bool)
    sampled[:, 3:9] = True  # six central lines (ESPIRiT places a side w at size // 2 - w // 2)
    assert calibration_block(sampled) == 6 and calibration_block(np.ones((5, 7), bool)) == 5
    sampled[5, 6] = False  # the centre itself missing
    assert calibration_block(sampled) == 0
    estimator = MapEstimator(ReadOptions(calib_width=4), "x")
    with pytest.raises(ValueError, match="6x6"):
        estimator(np.ones((2, 10, 12), np.complex64) * sampled)


@pytest.mark.parametrize("oversampling, echo, rows", [(1, 30, (30, 256)), (2, 60, (30, 256))])
def test_partial_echo(tmp_path, truth, oversampling, echo, rows):
    """`echo` encoded readout samples never acquired: those recon rows are unmeasured (zero
    k-space, zero mask, outside `acquired`), the file has no reference, and the measured rows
    are the truth (exactly without oversampling; with it, the readout crop's leakage from the
    missing samples stays under -40 dB overall)."""
    src = open_source(
        str(write_scan(tmp_path / "pe.h5", truth, Scan(echo=echo, oversampling=oversampling))), ReadOptions()
    )
    s = src.read(0)
    x0, x1 = rows
    assert not src.has_reference and s.acquired == (x0, x1, 0, 256) and src.attrs["missing_readout_samples"] == echo
    assert not s.ksp[:, :x0].any() and not s.mask[:x0].any() and s.mask[x0:].all() and not s.img.any()
    error = np.linalg.norm(s.ksp[:, x0:] - truth[0][:, x0:]) / np.linalg.norm(truth[0][:, x0:])
    assert error == 0 if oversampling == 1 else error < 10 ** (-40 / 20)


def test_recon_rows():
    assert recon_rows(0, 512, 512, 256) == (0, 256) and recon_rows(60, 512, 512, 256) == (30, 256)
    assert recon_rows(61, 512, 512, 256) == (31, 256) and recon_rows(0, 500, 512, 256) == (0, 250)
    assert recon_rows(30, 256, 256, 256) == (30, 256)


def test_partial_fourier_and_symmetric_limits(tmp_path, truth):
    """Lines 64..255 only (partial Fourier, the limits say so): no reference, the 64 lines
    unmeasured; lines 16..239 (symmetric limits, a lower resolution): a reference on the full
    grid, and the drawn mask stays inside the acquired lines."""
    partial = open_source(str(write_scan(tmp_path / "pf.h5", truth, Scan(lines=(64, 256)))), ReadOptions())
    s = partial.read(0)
    assert not partial.has_reference and s.acquired == (0, 256, 64, 256) and partial.attrs["missing_lines"] == 64
    assert np.array_equal(lines_of(s.mask), np.arange(256) >= 64) and np.array_equal(s.ksp, truth[0] * s.mask)
    narrow = open_source(str(write_scan(tmp_path / "sym.h5", truth, Scan(lines=(16, 240)))), ReadOptions(accel=4))
    s = narrow.read(0)
    inside = (np.arange(256) >= 16) & (np.arange(256) < 240)
    assert narrow.has_reference and s.acquired == (0, 256, 16, 240) and narrow.attrs["mask"] == "lines"
    sampled = lines_of(s.mask)
    assert not sampled[~inside].any() and sampled.sum() == round(224 / 4)
    assert np.allclose(s.img, sense_combine(truth[0] * inside, s.maps), atol=1e-6 * np.abs(s.img).max())


def test_2d_defaults_sample_whole_lines(tmp_path, truth):
    """Done when: a fully sampled 2D file gets whole phase-encode lines (R 4 over the lines, the
    24 central lines); explicit poisson is refused on 2D data (unless readout undersampling is
    asked for: tests/data/test_masks.py); a 3D file keeps a 2D (ky, kz) Poisson disc (below)."""
    path = write_scan(tmp_path / "full.h5", truth, Scan())
    src = open_source(str(path), ReadOptions(accel=4))
    lines = lines_of(src.read(0).mask)
    assert src.has_reference and src.attrs["mask"] == "lines" and lines.sum() == 64 and lines[116:140].all()
    with pytest.raises(MaskError, match="kind: 'poisson' undersamples the readout"):
        open_source(str(path), ReadOptions(mask="poisson")).read(0)


def test_3d_default_is_a_poisson_disc(tmp_path):
    from formats_helpers import centred_fftn, phantom_coils, write_ismrmrd

    write_ismrmrd(tmp_path / "3d.h5", centred_fftn(phantom_coils(2, (6, 32, 24)), (1, 2, 3)))
    src = open_source(str(tmp_path / "3d.h5"), ReadOptions(accel=3, calib=8, calib_width=12))
    mask = src.read(0).mask
    assert src.attrs["mask"] == "poisson" and (mask != mask[:1]).any() and mask[12:20, 8:16].all()


@pytest.mark.parametrize("mode", ["average", "slices"])
def test_repetitions(tmp_path, truth, caplog, mode):
    """Two repetitions, the second with twice the signal: averaged (1.5 x the truth, logged with
    the key that keeps them apart) or kept as two slices (1 x and 2 x the truth)."""
    path = write_scan(tmp_path / "rep.h5", truth, Scan(repetitions=2))
    with caplog.at_level(logging.INFO):
        src = open_source(str(path), ReadOptions(formats=(IsmrmrdOptions(repetitions=mode),)))
    if mode == "average":
        assert len(src) == 1 and np.allclose(src.kspace(0), 1.5 * truth[0], rtol=0, atol=1e-6 * np.abs(truth).max())
        assert "2 repetitions" in caplog.text and "ismrmrd_repetitions=slices" in caplog.text
    else:
        assert len(src) == 2 and src.attrs["repetitions_as_slices"] == 1
        assert np.array_equal(src.kspace(0), truth[0]) and np.array_equal(src.kspace(1), 2 * truth[0])


@pytest.mark.slow
def test_cli_provenance_and_table(tmp_path, truth):
    """Through the CLI: the processed file records the rows of every flag, the calibration mode
    and the mask kind; reconstruct's summary.json carries the mask kind (evaluate's `mask` column)
    and R of the whole-line default mask."""
    from helpers import run_cli

    from mrirecon.data.h5 import DeepInPyFile

    scan = Scan(accel=2, calib=24, extra=("ACQ_IS_PHASE_STABILIZATION",), noise_rows=2)
    write_scan(tmp_path / "r2.h5", truth, scan)
    write_scan(tmp_path / "full.h5", truth, Scan())
    for name in ("r2", "full"):
        res = run_cli("preprocess", "data=full", f"data.source={name}.h5", f"data.path={name}_out.h5", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    f = DeepInPyFile(tmp_path / "r2_out.h5")
    counts = json.loads(f.attrs["source_readouts"])
    assert (
        counts["ACQ_IS_PHASE_STABILIZATION"] == scan.imaging(256).sum() == 128
        and counts["ACQ_IS_NOISE_MEASUREMENT"] == 2
    )
    assert counts["calibration"] == 24 and f.attrs["source_calibration"] == "integrated (inferred)"
    assert f.attrs["mask"] == "acquired" and not f.attrs["has_reference"]
    full = DeepInPyFile(tmp_path / "full_out.h5")
    assert full.attrs["mask"] == "lines" and (full.read(0).mask == full.read(0).mask[:1]).all()
    res = run_cli(
        "reconstruct", "method=cg_sense", "data=full", "data.path=full_out.h5", "data.split=all", "figures=0",
        "hydra.run.dir=rec", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "rec" / "summary.json").read_text())
    assert summary["mask"] == "lines" and summary["acceleration"]["mean"] == pytest.approx(256 / round(256 / 6))
    assert np.isfinite(summary["mean"]["psnr"])
    res = run_cli(
        "reconstruct",
        "method=zero_filled",
        "data=full",
        "data.path=r2_out.h5",
        "data.split=all",
        "figures=0",
        cwd=tmp_path,
    )
    assert res.returncode == 0 and "no reference image" in res.stdout + res.stderr
    assert not re.search(r"\bnan\b", (res.stdout + res.stderr).lower())


def test_config_keys_take_effect(tmp_path):
    """data.undersampling.readout=true lets data.mask=poisson undersample a 2D file's readout;
    data.ismrmrd_repetitions=slices keeps repetitions apart; bad values are refused by key."""
    from formats_helpers import centred_fftn, phantom_coils
    from helpers import preprocess_in_process

    truth = centred_fftn(phantom_coils(4, (48, 40)), (-2, -1)).astype(np.complex64)[None]
    path = write_scan(tmp_path / "small.h5", truth, Scan(repetitions=2))
    small = ("data.espirit.calib_width=12", "data.undersampling.calib=8", "data.undersampling.accel=3")
    f = preprocess_in_process(
        tmp_path, f"data.source={path}", "data.mask=poisson", "data.undersampling.readout=true", *small
    )
    mask = f.read(0).mask
    assert f.attrs["mask"] == "poisson" and (mask != mask[:1]).any() and len(f) == 1
    f = preprocess_in_process(tmp_path, f"data.source={path}", "data.ismrmrd_repetitions=slices", *small)
    assert len(f) == 2 and f.attrs["mask"] == "lines" and np.allclose(f.read(1).ksp, 2 * f.read(0).ksp, atol=1e-6)
    for key, value in (("data.undersampling.readout", "maybe"), ("data.ismrmrd_repetitions", "split")):
        with pytest.raises(UserError, match=key.replace(".", r"\.")):
            preprocess_in_process(tmp_path, f"data.source={path}", f"{key}={value}", *small)


def test_3d_integrated_calibration(tmp_path):
    """3D (x 8, ky 24, kz 20): imaging on even ky, calibration-only readouts on the odd ky of
    the central 12 x 12 (ky, kz) block. Each readout-position slice: k-space the truth on the
    imaging lines, calibration data the truth on imaging and calibration lines (hybrid space),
    the mask the imaging pattern."""
    import ismrmrd
    from formats_helpers import centred_fftn, centred_ifftn, ismrmrd_header, phantom_coils, write_acquisitions

    c, ex, ey, ez = 4, 8, 24, 20
    k = centred_fftn(phantom_coils(c, (ex, ey, ez), seed=4), (1, 2, 3)).astype(np.complex64)
    ky, kz = np.meshgrid(np.arange(ey), np.arange(ez), indexing="ij")
    imaging = ky % 2 == 0
    block = (abs(ky - ey // 2 + 0.5) < 6) & (abs(kz - ez // 2 + 0.5) < 6)
    acqs = []
    for y, z in zip(*np.nonzero(imaging | block)):
        acq = ismrmrd.Acquisition(data=np.ascontiguousarray(k[:, :, y, z]))
        acq.idx.kspace_encode_step_1, acq.idx.kspace_encode_step_2, acq.center_sample = y, z, ex // 2
        if not imaging[y, z]:
            acq.setFlag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
        acqs.append(acq)
    write_acquisitions(tmp_path / "3d.h5", ismrmrd_header((ex, ey, ez), (ex, ey, ez), c), acqs)
    src = open_source(str(tmp_path / "3d.h5"), ReadOptions(calib_width=12))
    hybrid = centred_ifftn(k, (1,))
    assert not src.has_reference and src.attrs["calibration"] == "integrated (inferred)"
    for i in (0, 5):
        assert np.allclose(src.kspace(i), hybrid[:, i] * imaging, atol=1e-6)
        assert np.allclose(src.calibration(i), hybrid[:, i] * (imaging | block), atol=1e-6)
    s = src.read(3)
    assert np.array_equal(s.mask > 0, imaging) and np.abs(s.maps).max() > 0
