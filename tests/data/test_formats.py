"""The field's raw formats: ISMRMRD raw, fastMRI multi-coil HDF5 and BART cfl, read by content.

Each test builds small files in the real layout (the ismrmrd package, h5py in fastMRI's
documented layout, the cfl format), checks what preprocess stores against an independent NumPy
computation from the known k-space, and runs preprocess -> reconstruct through the CLI. Bad
files of each kind are refused with the usual contract (test_errors.assert_refused).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from formats_helpers import (
    centred_fftn,
    centred_ifftn,
    oversampled_coils,
    phantom_coils,
    write_fastmri,
    write_ismrmrd,
)
from helpers import ASSETS, run_cli, tiny_arrays, write_h5
from test_errors import assert_refused, cli, snapshot

from mrirecon.data.formats.cfl import read_cfl, write_cfl
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.source import FORMATS, ReadOptions, detect, open_source
from mrirecon.errors import UserError

pytestmark = pytest.mark.slow  # readers run through preprocess and reconstruct

# Small ESPIRiT calibration and Poisson calibration square for the small test images.
SMALL = ("data.espirit.calib_width=12", "data.undersampling.calib=12")
FASTMRI_PAD = (4, 44)  # acquired columns of 48 (fastMRI knees: [16, 350) of 368)


def sense(ksp: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Independent SENSE combination sum_c conj(S_c) ifft2c(k_c) of (C, X, Y) arrays."""
    return np.sum(np.conj(maps) * centred_ifftn(ksp, (-2, -1)), axis=0)


def close(a: np.ndarray, b: np.ndarray, tol: float = 1e-5) -> bool:
    """max |a - b| <= tol * max |b|, with b not all zero (zero maps would make both zero)."""
    assert float(np.abs(b).max()) > 0, "the expected array is all zeros"
    return float(np.abs(a - b).max()) <= tol * float(np.abs(b).max())


def preprocess(cwd: Path, source: str, out: str = "out.h5", *extra: str) -> DeepInPyFile:
    res = run_cli(
        "preprocess",
        "data=full",
        f"data.source={source}",
        f"data.path={out}",
        *SMALL,
        *extra,
        f"hydra.run.dir=pre_{out}",
        cwd=cwd,
    )
    assert res.returncode == 0, res.stderr
    return DeepInPyFile(cwd / out)


def numpy_adjoint(s) -> np.ndarray:
    """Independent zero-filled SENSE image sum_c conj(S_c) ifft2c(mask * k_c) of a slice."""
    return sense(s.mask * s.ksp, s.maps)


def numpy_cg_sense(s, lam: float) -> np.ndarray:
    """Independent Tikhonov SENSE: (A^H A + lam I) x = A^H y solved by SciPy's CG on NumPy FFTs."""
    from scipy.sparse.linalg import LinearOperator, cg

    shape = s.img.shape

    def normal(v: np.ndarray) -> np.ndarray:
        x = v.reshape(shape)
        k = s.mask * centred_fftn(s.maps * x, (-2, -1))
        return (np.sum(np.conj(s.maps) * centred_ifftn(k, (-2, -1)), 0) + lam * x).ravel()

    n = int(np.prod(shape))
    x, info = cg(LinearOperator((n, n), matvec=normal, dtype=np.complex128), numpy_adjoint(s).ravel(), rtol=1e-10)
    assert info == 0
    return x.reshape(shape)


def reconstruct(cwd: Path, data: str, *extra: str, lam: float | None = None) -> dict:
    """Reconstruct every slice of `data` (zero_filled, or cg_sense with a fixed `lam`) and check
    recon.h5 and metrics.csv against an independent NumPy reconstruction, centre-cropped to the
    file's recon size as fastMRI crops (start (n - m) // 2), and metrics computed here."""
    method, name = ["method=zero_filled"], f"rec_{data}"
    if lam is not None:
        name = f"rec_cg_{data}"
        method = ["method=cg_sense", f"method.lam={lam}", "method.max_iter=200", "method.tol=1e-9"]
    res = run_cli(
        "reconstruct",
        *method,
        "data=full",
        f"data.path={data}",
        "data.split=all",
        "figures=1",
        *extra,
        f"hydra.run.dir={name}",
        cwd=cwd,
    )
    assert res.returncode == 0, res.stderr
    run = cwd / name
    lines = (run / "metrics.csv").read_text().splitlines()
    rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    f = DeepInPyFile(cwd / data)
    crop = f.recon_size or f.shape
    top, left = (f.shape[0] - crop[0]) // 2, (f.shape[1] - crop[1]) // 2
    with h5py.File(run / "recon.h5") as h5:
        recon, refs, slices = h5["recon"][()], h5["imgs"][()], h5["slices"][()]
    assert recon.shape == (len(f), *crop) and list(slices) == list(range(len(f)))
    for k, i in enumerate(slices):
        s = f.read(int(i))
        full = numpy_adjoint(s) if lam is None else numpy_cg_sense(s, lam)
        x, ref = full[top : top + crop[0], left : left + crop[1]], s.img[top : top + crop[0], left : left + crop[1]]
        assert close(recon[k], x, 1e-5 if lam is None else 1e-3)
        if not f.has_reference:  # raw data: the zero-filled image is shown in place of a reference
            assert close(refs[k], numpy_adjoint(s)[top : top + crop[0], left : left + crop[1]])
            continue
        assert np.array_equal(refs[k], ref)
        err = np.abs(recon[k]).astype(np.float64) - np.abs(ref)
        nrmse, psnr = float(rows[k]["nrmse"]), float(rows[k]["psnr"])
        assert nrmse == pytest.approx(np.linalg.norm(err) / np.linalg.norm(np.abs(ref)), rel=1e-4)
        assert psnr == pytest.approx(20 * np.log10(np.abs(ref).max() / np.sqrt(np.mean(err**2))), abs=1e-3)
    return json.loads((run / "summary.json").read_text())


# ---------------------------------------------------------------------------- cfl


def test_cfl_round_trip_and_bart_order(tmp_path):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((5, 4, 1, 3)) + 1j * rng.standard_normal((5, 4, 1, 3))).astype(np.complex64)
    write_cfl(tmp_path / "a", a)
    assert (tmp_path / "a.hdr").read_text() == "# Dimensions\n5 4 1 3" + " 1" * 12 + "\n"
    raw = np.fromfile(tmp_path / "a.cfl", dtype=np.complex64)
    assert np.array_equal(raw, a.reshape(-1, order="F"))  # column-major: x fastest
    back = read_cfl(tmp_path / "a.cfl")
    assert back.shape == (5, 4, 1, 3) + (1,) * 12 and np.array_equal(back[..., 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], a)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(shutil.which("bart") is None, reason="BART is not installed (optional check)")
def test_bart_agrees_on_dimension_order(tmp_path):
    """BART reads what write_cfl writes (its root-sum-of-squares over dim 3, the coils, matches
    NumPy's) and CflSource reads what BART writes (a 4-coil phantom: 1 slice, 4 coils, 32x32)."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal((6, 5, 1, 3)) + 1j * rng.standard_normal((6, 5, 1, 3))).astype(np.complex64)
    write_cfl(tmp_path / "a", a)
    subprocess.run(["bart", "rss", "8", str(tmp_path / "a"), str(tmp_path / "r")], check=True, capture_output=True)
    r = np.asarray(read_cfl(tmp_path / "r")).reshape(6, 5, order="F")
    assert np.allclose(r, np.sqrt((np.abs(a[:, :, 0]) ** 2).sum(-1)), rtol=1e-5)
    subprocess.run(
        ["bart", "phantom", "-x", "32", "-k", "-s", "4", str(tmp_path / "k")], check=True, capture_output=True
    )
    source = open_source(str(tmp_path / "k"), ReadOptions())
    assert (len(source), source.num_coils, source.shape) == (1, 4, (32, 32))
    assert np.allclose(
        source._slice_ksp(0),
        np.moveaxis(np.asarray(read_cfl(tmp_path / "k"))[:, :, 0, :, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], -1, 0),
    )


# ---------------------------------------------------------------------------- detection


def test_formats_detected_by_content_not_suffix(tmp_path):
    a = tiny_arrays(n=2)
    deepinpy = write_h5(tmp_path / "deepinpy.dat", a)
    raw = write_h5(tmp_path / "raw.bin", {"ksp": a["ksp"]})
    fast = write_h5(tmp_path / "fast.xyz", {"kspace": a["ksp"], "ismrmrd_header": b"<ismrmrdHeader/>"})
    write_cfl(tmp_path / "k", a["ksp"][0].transpose(1, 2, 0)[:, :, None])
    np.save(tmp_path / "k.npy", a["ksp"])
    (tmp_path / "k.npy").rename(tmp_path / "npy_without_suffix")
    ism = write_ismrmrd(tmp_path / "ism.raw", centred_fftn(phantom_coils(2, (4, 4, 4)), (1, 2, 3)))
    assert set(FORMATS) == {"ismrmrd", "fastmri", "raw", "deepinpy", "cfl", "sample"}
    found = {
        p.name: detect(p).name
        for p in (deepinpy, raw, fast, tmp_path / "k.cfl", tmp_path / "k", tmp_path / "npy_without_suffix", ism)
    }
    assert found == {
        "deepinpy.dat": "deepinpy",
        "raw.bin": "raw",
        "fast.xyz": "fastmri",
        "k.cfl": "cfl",
        "k": "cfl",
        "npy_without_suffix": "raw",
        "ism.raw": "ismrmrd",
    }


# ---------------------------------------------------------------------------- ISMRMRD


@pytest.fixture(scope="module")
def ismrmrd_run(tmp_path_factory):
    """An 8-coil 3D acquisition, readout 64 (2x oversampled: 32 slices) x ky 64 x kz 48,
    preprocessed in slabs of 2 slices (data.ismrmrd_buffer_mb=1) and reconstructed."""
    cwd = tmp_path_factory.mktemp("ismrmrd")
    ksp = centred_fftn(phantom_coils(8, (64, 64, 48), seed=1), (1, 2, 3)).astype(np.complex64)
    write_ismrmrd(cwd / "P1.h5", ksp, recon_x=32, patient="knee-7")
    f = preprocess(cwd, "P1.h5", "out.h5", "data.ismrmrd_buffer_mb=1")
    return cwd, ksp, f


def test_ismrmrd_slices_match_numpy(ismrmrd_run):
    _cwd, ksp, f = ismrmrd_run
    assert len(f) == 32 and f.num_coils == 8 and f.shape == (64, 48)
    hybrid = centred_ifftn(ksp, (1,))[:, 16:48]  # readout transformed, oversampling removed
    for i in range(32):
        s = f.read(i)
        assert close(s.ksp, hybrid[:, i])
        assert close(s.img, sense(hybrid[:, i], s.maps))
    power = (np.abs(f.read(16).maps) ** 2).sum(0)
    assert power.max() < 1.01 and (power > 0.9).mean() > 0.3
    assert f.attrs["source_subject_id"] == "knee-7" and f.attrs["source_format"] == "ismrmrd"
    assert (f.subjects() == 0).all() and f.has_reference
    m = f.read(3).mask
    assert 4 < m.size / m.sum() < 8 and m[26:38, 18:30].all()  # Poisson, accel 6, 12x12 centre


def test_ismrmrd_reconstruct(ismrmrd_run):
    cwd, _, _ = ismrmrd_run
    summary = reconstruct(cwd, "out.h5")
    assert summary["num_slices"] == 32


def test_ismrmrd_several_subjects_folder(tmp_path):
    """Three files (one per subject; one written by the package's own appending writer) in a
    folder: one processed file, one subject per file, splits that never cut a subject."""
    folder = tmp_path / "raw"
    folder.mkdir()
    for k, name in enumerate(("A", "B", "C")):
        ksp = centred_fftn(phantom_coils(4, (8, 24, 16), seed=10 + k), (1, 2, 3)).astype(np.complex64)
        write_ismrmrd(folder / f"{name}.h5", ksp, patient=None, bulk=(k != 0))
    f = preprocess(
        tmp_path,
        "raw",
        "multi.h5",
        "data.val_fraction=0.34",
        "data.test_fraction=0.34",
        "data.espirit.calib_width=12",
        "data.mask=fastmri_equispaced",
        "data.undersampling.accel=3",
    )
    assert len(f) == 24 and json.loads(f.attrs["source_subject_ids"]) == ["A", "B", "C"]
    assert (np.abs(f.read(12).maps) ** 2).sum(0).max() > 0.9  # ESPIRiT found the coils
    assert np.array_equal(f.subjects(), np.repeat([0, 1, 2], 8))
    splits = f.splits()
    assert [np.unique(f.subjects()[splits[s]]).tolist() for s in ("train", "val", "test")] == [[0], [1], [2]]
    res = run_cli(
        "preprocess",
        "data=full",
        "data.source=[raw/A.h5,raw/C.h5]",
        "data.path=two.h5",
        "data.espirit.calib_width=12",
        "data.mask=fastmri_equispaced",
        "data.undersampling.accel=3",
        "hydra.run.dir=two",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert len(DeepInPyFile(tmp_path / "two.h5")) == 16


# ---------------------------------------------------------------------------- fastMRI


@pytest.fixture(scope="module")
def fastmri_run(tmp_path_factory):
    """Three volumes in fastMRI's layout, two of patient P1 and one of P2: 3 slices each, 8 coils,
    readout 64 (2x oversampled), 48 phase encodes of which [4, 44) acquired (encodingLimits),
    recon size 32x32, white k-space noise of known level; preprocessed together with fastMRI
    random masks at R = 4 and half the subjects for test."""
    cwd = tmp_path_factory.mktemp("fastmri")
    for k, patient in enumerate(("P1", "P2", "P1")):
        coils = oversampled_coils(3, seed=20 + 3 * k)
        write_fastmri(cwd / f"file100000{k}.h5", coils, (32, 32), padding=FASTMRI_PAD, patient=patient, noise=0.02)
    f = preprocess(
        cwd,
        "[file1000000.h5,file1000001.h5,file1000002.h5]",
        "out.h5",
        "data.mask=fastmri_random",
        "data.undersampling.accel=4",
        "data.val_fraction=0",
        "data.test_fraction=0.5",
    )
    return cwd, f


def test_fastmri_processed_file(fastmri_run):
    """The acquired width is kept, the recon size recorded, padding never measured, the noise
    estimate within 10 % of the true noise, one mask per volume, subjects from patient IDs."""
    _cwd, f = fastmri_run
    assert len(f) == 9 and f.shape == (32, 48) and f.recon_size == (32, 32) and f.has_rss
    sigma = np.sqrt(2e-4 + 0.02**2)  # phantom_coils' image noise and write_fastmri's k-space noise
    for i in range(9):
        s = f.read(i)
        assert s.acquired == (0, 32, *FASTMRI_PAD) and not s.mask[:, :4].any() and not s.mask[:, 44:].any()
        assert s.noise_std == pytest.approx(sigma, rel=0.10)
        assert np.array_equal(s.mask, f.read(3 * (i // 3)).mask)  # the volume's mask
    assert not np.array_equal(f.read(0).mask, f.read(3).mask)
    assert f.subjects().tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert json.loads(f.attrs["source_subject_ids"]) == ["P1", "P2"]
    splits = f.splits()
    assert splits["train"].tolist() == [0, 1, 2, 6, 7, 8] and splits["test"].tolist() == [3, 4, 5]


def test_fastmri_reconstruct_crops_as_fastmri_and_counts_acquired_columns(fastmri_run):
    """recon.h5 and the metrics are the NumPy reconstruction cropped to 32x32 (checked in
    `reconstruct`); R counts the 40 acquired columns, not the 48 of the grid."""
    cwd, f = fastmri_run
    summary = reconstruct(cwd, "out.h5", "output.cfl=true")
    measured = np.array([f.read(i).mask.sum() for i in range(9)])
    assert summary["acceleration"]["per_slice"] == pytest.approx((32 * 40 / measured).tolist())
    assert summary["image_size"]["shape"] == [32, 32]
    back = read_cfl(cwd / "rec_out.h5" / "recon")
    assert back.shape[:3] == (32, 32, 1) and back.shape[13] == 9
    with h5py.File(cwd / "rec_out.h5" / "recon.h5") as h5:
        assert np.array_equal(np.moveaxis(np.asarray(back).reshape(32, 32, 9, order="F"), -1, 0), h5["recon"][()])
    for i in (0, 4):  # the stored fastMRI reference, cropped, is the file's reconstruction_rss
        with h5py.File(cwd / f"file100000{i // 3}.h5") as raw:
            assert np.array_equal(f.read(i).rss[:, 8:40], raw["reconstruction_rss"][i % 3])


def test_fastmri_cg_sense_matches_numpy(fastmri_run):
    cwd, _ = fastmri_run
    reconstruct(cwd, "out.h5", lam=0.05)


# ---------------------------------------------------------------------------- BART cfl


def test_cfl_source_with_maps_through_cli(tmp_path):
    """k-space (x, y, 1, coils, 1, ..., slices) and maps (x, y, 1, coils): reference = SENSE
    combine with the given maps; reconstruct writes recon.cfl back for BART."""
    coils = np.stack([phantom_coils(4, (32, 24), seed=40 + i) for i in range(3)])
    rss = np.sqrt((np.abs(coils) ** 2).sum(1, keepdims=True))
    a = {
        "ksp": centred_fftn(coils, (-2, -1)).astype(np.complex64),
        "maps": (coils / rss).astype(np.complex64),
        "imgs": rss[:, 0].astype(np.complex64),
    }
    bart = lambda arr: np.moveaxis(arr, 1, -1)  # noqa: E731  (N, C, X, Y) -> (N, X, Y, C)
    k = bart(a["ksp"])  # (N, X, Y, C)
    kdims = np.zeros((32, 24, 1, 4) + (1,) * 9 + (3,), np.complex64)
    kdims[:, :, 0, :, 0, 0, 0, 0, 0, 0, 0, 0, 0, :] = np.moveaxis(k, 0, -1)
    write_cfl(tmp_path / "ksp", kdims)
    write_cfl(
        tmp_path / "maps",
        np.moveaxis(bart(a["maps"]), 0, -1)[:, :, None, :, None, None, None, None, None, None, None, None, None, :],
    )
    f = preprocess(
        tmp_path,
        "ksp.cfl",
        "out.h5",
        "data.cfl_maps=maps",
        "data.undersampling.calib=6",
        "data.undersampling.accel=2.5",
    )
    assert len(f) == 3 and f.shape == (32, 24) and f.num_coils == 4
    for i in range(3):
        s = f.read(i)
        assert np.array_equal(s.ksp, a["ksp"][i]) and np.array_equal(s.maps, a["maps"][i])
        assert close(s.img, sense(a["ksp"][i], a["maps"][i]))
        assert close(s.img, a["imgs"][i], 1e-4)  # normalised maps: the SENSE combine is the image
    reconstruct(tmp_path, "out.h5", "output.cfl=true")
    assert (tmp_path / "rec_out.h5" / "recon.hdr").read_text().startswith("# Dimensions\n32 24 1 1")


def test_cfl_espirit_maps(tmp_path):
    """Without maps: ESPIRiT maps, and the reference is the SENSE combine with them (in-process)."""
    coils = phantom_coils(4, (32, 32), seed=3)
    write_cfl(tmp_path / "k", centred_fftn(coils, (-2, -1)).transpose(1, 2, 0)[:, :, None])
    s = open_source(str(tmp_path / "k"), ReadOptions(calib_width=12, calib=4)).read(0)
    assert close(s.img, sense(s.ksp, s.maps)) and close(s.ksp, centred_fftn(coils, (-2, -1)))
    power = (np.abs(s.maps) ** 2).sum(0)
    assert power.max() < 1.01 and (power > 0.9).mean() > 0.3


@pytest.mark.parametrize("axes", [(0, 1), (0, 2), (1, 2)])
def test_cfl_any_plane_of_xyz(tmp_path, axes):
    """(x, y, 1, coils), (x, 1, z, coils) and (1, y, z, coils) are 32x24 slices of the two
    non-singleton dims, in BART's order (in-process)."""
    coils = phantom_coils(4, (32, 24), seed=3)
    k = centred_fftn(coils, (-2, -1)).astype(np.complex64)  # (C, 32, 24)
    dims = [1, 1, 1, 4]
    dims[axes[0]], dims[axes[1]] = 32, 24
    write_cfl(tmp_path / "k", np.moveaxis(k, 0, -1).reshape(dims))
    source = open_source(str(tmp_path / "k"), ReadOptions(calib_width=12, mask="fastmri_random"))
    assert source.shape == (32, 24) and source.axes == axes and source.attrs["cfl_axes"] == f"{axes[0]},{axes[1]}"
    assert np.array_equal(source.read(0).ksp, k)


def test_cfl_espirit_tutorial_layout_real_brain(tmp_path):
    """The ESPIRiT tutorial's layout, dims 1 x 230 x 180 x 8 (readout transformed, a y-z plane),
    with the real 8-coil brain k-space (8x Poisson, no reference): read as 230x180 slices, and
    recon.cfl comes back in the same plane."""
    brain = np.load(ASSETS / "brain_8coil_ksp_poisson8x.npy")  # (8, 230, 180)
    write_cfl(tmp_path / "full", np.moveaxis(brain, 0, -1)[None])
    assert (tmp_path / "full.hdr").read_text().split("\n")[1].startswith("1 230 180 8 1")
    f = preprocess(tmp_path, "full.cfl", "out.h5")
    assert len(f) == 1 and f.shape == (230, 180) and not f.has_reference
    s = f.read(0)
    assert np.array_equal(s.ksp, brain) and np.array_equal(s.mask, (np.abs(brain).sum(0) > 0).astype(np.float32))
    reconstruct(tmp_path, "out.h5", "output.cfl=true")
    assert (tmp_path / "rec_out.h5" / "recon.hdr").read_text().startswith("# Dimensions\n1 230 180 1")
    back = np.asarray(read_cfl(tmp_path / "rec_out.h5" / "recon"))[0, :, :, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    with h5py.File(tmp_path / "rec_out.h5" / "recon.h5") as h5:
        assert np.array_equal(back, h5["recon"][0])


# ---------------------------------------------------------------------------- bad files


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _ismrmrd(tmp: Path, **kw) -> Path:
    return write_ismrmrd(tmp / "src.h5", centred_fftn(phantom_coils(2, (4, 6, 4)), (1, 2, 3)), **kw)


def _ismrmrd_without_xml(tmp: Path) -> Path:
    path = _ismrmrd(tmp)
    with h5py.File(path, "a") as f:
        del f["dataset/xml"]
    return path


def _fastmri(tmp: Path, drop: str | None = None, kspace: np.ndarray | None = None) -> Path:
    path = tmp / "src.h5"
    write_fastmri(path, np.stack([phantom_coils(2, (8, 8))]), (4, 4))
    with h5py.File(path, "a") as f:
        if drop:
            del f[drop]
        if kspace is not None:
            del f["kspace"]
            f["kspace"] = kspace
    return path


def _cfl(tmp: Path, dims: tuple[int, ...] = (8, 6, 1, 2)) -> Path:
    write_cfl(tmp / "src", np.ones(dims, np.complex64))
    return tmp / "src.cfl"


def _cfl_truncated(tmp: Path) -> Path:
    path = _cfl(tmp)
    path.write_bytes(path.read_bytes()[:-8])
    return path


def _cfl_bad_header(tmp: Path) -> Path:
    path = _cfl(tmp)
    (tmp / "src.hdr").write_text("# Dimensions\n8 six 1 2\n")
    return path


def _h5_unknown_keys(tmp: Path) -> Path:
    return write_h5(tmp / "src.h5", {"images": np.zeros((2, 4, 4), np.float32)})


BAD_FILES = {
    "ismrmrd_truncated": (lambda t: _truncated(_ismrmrd(t)), ("src.h5", "HDF5")),
    "ismrmrd_non_cartesian": (lambda t: _ismrmrd(t, trajectory="radial"), ("src.h5", "radial", "Cartesian")),
    "ismrmrd_missing_xml": (_ismrmrd_without_xml, ("src.h5", "dataset/xml")),
    "fastmri_missing_header": (lambda t: _fastmri(t, drop="ismrmrd_header"), ("src.h5", "'ismrmrd_header'")),
    "fastmri_wrong_dims": (
        lambda t: _fastmri(t, kspace=np.ones((2, 8, 8), np.complex64)),
        ("src.h5", "'kspace'", "(2, 8, 8)", "(slices, coils, H, W)"),
    ),
    "fastmri_real_kspace": (lambda t: _fastmri(t, kspace=np.ones((1, 2, 8, 8), np.float32)), ("src.h5", "complex")),
    "fastmri_truncated": (lambda t: _truncated(_fastmri(t)), ("src.h5", "HDF5")),
    "cfl_truncated": (_cfl_truncated, ("src.cfl", "truncated")),
    "cfl_bad_header": (_cfl_bad_header, ("src.hdr", "not integers")),
    "cfl_3d": (lambda t: _cfl(t, (8, 6, 4, 2)), ("src", "x, y, z = 8, 6, 4", "bart transpose 0 13")),
    "cfl_wrong_dims": (lambda t: _cfl(t, (8, 6, 1, 2, 1, 3)), ("src", "every other dimension 1")),
    "h5_unknown_keys": (_h5_unknown_keys, ("src.h5", "['images']", "fastMRI", "ISMRMRD", "BART", "DeepInPy")),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_refused(tmp_path: Path, case: str) -> None:
    """Every bad file is refused on open with a UserError naming the file and the problem."""
    make, names = BAD_FILES[case]
    source = make(tmp_path)
    with pytest.raises(UserError) as info:
        open_source(str(source), ReadOptions()).close()
    message = str(info.value)
    assert "\n" not in message and all(name in message for name in names), message


@pytest.mark.parametrize("case", ["ismrmrd_non_cartesian", "fastmri_wrong_dims", "cfl_truncated", "h5_unknown_keys"])
def test_bad_files_refused_by_the_cli(tmp_path: Path, case: str) -> None:
    """The CLI contract on one bad file of each kind: one error line, exit 2, nothing written."""
    make, names = BAD_FILES[case]
    source = make(tmp_path)
    before = snapshot(tmp_path)
    res = cli(tmp_path, "preprocess", "data=full", f"data.source={source}", f"data.path={tmp_path / 'out.h5'}")
    assert_refused(res, tmp_path, before, *names)


@pytest.mark.parametrize(
    "override, names",
    [
        ("data.mask=radial", ("data.mask", "radial", "fastmri_random")),
        ("data.undersampling.accel=20", ("data.undersampling.accel", "line mask", "12 central")),
        ("data.mask=poisson", ("data.mask", "readout of 2D data", "data.undersampling.readout=true")),
    ],
)
def test_bad_mask_options_refused(tmp_path: Path, override: str, names: tuple[str, ...]) -> None:
    write_cfl(tmp_path / "src", centred_fftn(phantom_coils(2, (16, 16)), (-2, -1)).transpose(1, 2, 0)[:, :, None])
    before = snapshot(tmp_path)
    res = cli(
        tmp_path,
        "preprocess",
        "data=full",
        f"data.source={tmp_path / 'src'}",
        f"data.path={tmp_path / 'out.h5'}",
        "data.espirit.calib_width=8",
        "data.undersampling.calib=12",
        override,
    )
    assert_refused(res, tmp_path, before, *names)
