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
from formats_helpers import centred_fftn, centred_ifftn, phantom_coils, write_fastmri, write_ismrmrd
from helpers import run_cli, tiny_arrays, write_h5
from test_errors import assert_refused, cli, snapshot

from mrirecon.data import masks
from mrirecon.data.cfl import read_cfl, write_cfl
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.source import FORMATS, ReadOptions, detect, open_source
from mrirecon.errors import UserError

pytestmark = pytest.mark.slow  # readers run through preprocess and reconstruct

# Small ESPIRiT calibration and Poisson calibration square for the small test images.
SMALL = ("data.espirit.calib_width=12", "data.undersampling.calib=12")


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


def reconstruct(cwd: Path, data: str, *extra: str) -> dict:
    res = run_cli(
        "reconstruct",
        "method=cg_sense",
        "data=full",
        f"data.path={data}",
        "data.split=all",
        "figures=1",
        *extra,
        f"hydra.run.dir=rec_{data}",
        cwd=cwd,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((cwd / f"rec_{data}" / "summary.json").read_text())
    assert np.isfinite(summary["mean"]["nrmse"]) and summary["mean"]["nrmse"] < 0.5
    return summary


# ---------------------------------------------------------------------------- fastMRI masks


@pytest.mark.parametrize("num_cols, accel, fraction", [(368, 4, 0.08), (320, 8, 0.04), (40, 4, 0.1)])
def test_fastmri_random_mask(num_cols, accel, fraction):
    num_low = round(num_cols * fraction)
    pad = (num_cols - num_low + 1) // 2
    cols = masks.fastmri_random_columns(num_cols, accel, fraction, seed=5)
    assert cols[pad : pad + num_low].all()
    # fastMRI's RandomMaskFunc, independently: uniform draws below prob, centre set
    prob = (num_cols / accel - num_low) / (num_cols - num_low)
    expected = np.random.RandomState(5).uniform(size=num_cols) < prob
    expected[pad : pad + num_low] = True
    assert np.array_equal(cols, expected)
    many = [masks.fastmri_random_columns(num_cols, accel, fraction, seed).sum() for seed in range(200)]
    assert abs(np.mean(many) - num_cols / accel) < 0.05 * num_cols / accel
    assert np.array_equal(cols, masks.fastmri_random_columns(num_cols, accel, fraction, seed=5))


@pytest.mark.parametrize("num_cols, accel, fraction", [(368, 4, 0.08), (320, 8, 0.04), (40, 4, 0.1)])
def test_fastmri_equispaced_mask(num_cols, accel, fraction):
    num_low = round(num_cols * fraction)
    pad = (num_cols - num_low + 1) // 2
    for seed in range(5):
        cols = masks.fastmri_equispaced_columns(num_cols, accel, fraction, seed)
        assert cols[pad : pad + num_low].all()
        adjusted = accel * (num_low - num_cols) / (num_low * accel - num_cols)
        offset = np.random.RandomState(seed).randint(0, round(adjusted))
        expected = np.zeros(num_cols, bool)
        expected[pad : pad + num_low] = True
        expected[np.around(np.arange(offset, num_cols - 1, adjusted)).astype(int)] = True
        assert np.array_equal(cols, expected)
        assert abs(cols.sum() - num_cols / accel) <= 2  # adjusted spacing: N / accel in all
    m = masks.make_mask("fastmri_equispaced", (16, num_cols), accel, 0, fraction, 3)
    assert m.shape == (16, num_cols) and (m == m[:1]).all()  # whole columns


def test_make_mask_errors_name_the_parameter():
    with pytest.raises(ValueError, match="^kind: "):
        masks.make_mask("radial", (8, 8), 4, 2, 0.1, 0)
    with pytest.raises(ValueError, match="^accel: "):
        masks.make_mask("fastmri_random", (8, 8), 1, 2, 0.1, 0)
    with pytest.raises(ValueError, match="^center_fraction: "):
        masks.make_mask("fastmri_random", (8, 8), 4, 2, 1.5, 0)
    with pytest.raises(ValueError, match="^accel: no Poisson"):
        masks.make_mask("poisson", (16, 16), 6, 16, 0.1, 0)


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
    names = {f.name.split(" ")[0] for f in FORMATS}
    assert names == {"ISMRMRD", "fastMRI", "raw", "DeepInPy", "BART"}
    found = {
        p.name: detect(p).name.split(" ")[0]
        for p in (deepinpy, raw, fast, tmp_path / "k.cfl", tmp_path / "k", tmp_path / "npy_without_suffix", ism)
    }
    assert found == {
        "deepinpy.dat": "DeepInPy",
        "raw.bin": "raw",
        "fast.xyz": "fastMRI",
        "k.cfl": "BART",
        "k": "BART",
        "npy_without_suffix": "raw",
        "ism.raw": "ISMRMRD",
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
    """4 slices, 8 coils, 64 x 40 (readout 2x oversampled), recon size 32 x 32."""
    cwd = tmp_path_factory.mktemp("fastmri")
    coils = np.stack([phantom_coils(8, (64, 40), seed=20 + i) for i in range(4)])
    kspace = write_fastmri(cwd / "file_knee_001.h5", coils, (32, 32))
    f = preprocess(cwd, "file_knee_001.h5", "out.h5", "data.mask=fastmri_random", "data.undersampling.accel=4")
    return cwd, kspace, f


def test_fastmri_slices_match_numpy(fastmri_run):
    _cwd, kspace, f = fastmri_run
    assert len(f) == 4 and f.num_coils == 8 and f.shape == (32, 32) and f.has_rss
    for i in range(4):
        s = f.read(i)
        coil = centred_ifftn(kspace[i], (-2, -1))[:, 16:48, 4:36]  # centre crop 64x40 -> 32x32
        assert close(s.ksp, centred_fftn(coil, (-2, -1)))
        assert close(s.img, np.sum(np.conj(s.maps) * coil, axis=0))
        assert close(s.rss, np.sqrt((np.abs(coil) ** 2).sum(0)))
        assert (s.mask == s.mask[:1]).all() and s.mask[:, 15:17].all()  # fastMRI columns, centre kept
        expected = masks.fastmri_random_columns(32, 4.0, 0.08, 723 + i)
        assert np.array_equal(s.mask[0].astype(bool), expected)
    assert f.attrs["source_subject_id"] == "abc123"


def test_fastmri_reconstruct_and_cfl_output(fastmri_run):
    cwd, _, _ = fastmri_run
    reconstruct(cwd, "out.h5", "output.cfl=true")
    run = cwd / "rec_out.h5"
    with h5py.File(run / "recon.h5") as h5:
        recon = h5["recon"][()]
    back = read_cfl(run / "recon")
    assert back.shape[:3] == (32, 32, 1) and back.shape[13] == 4
    assert np.array_equal(np.moveaxis(np.asarray(back).reshape(32, 32, 4, order="F"), -1, 0), recon)


def test_fastmri_undersampled_file_keeps_its_mask(tmp_path):
    """A test-set file (key 'mask'): the readout is cropped, measured columns stay as measured."""
    coils = np.stack([phantom_coils(4, (32, 24), seed=30 + i) for i in range(2)])
    kspace = write_fastmri(tmp_path / "test_file.h5", coils, (16, 16), rss=False)
    cols = np.zeros(24, np.float32)
    cols[::3] = 1
    cols[10:14] = 1
    with h5py.File(tmp_path / "test_file.h5", "a") as f:
        f["kspace"][...] = kspace * cols
        f["mask"] = cols
    f = open_source(str(tmp_path / "test_file.h5"), ReadOptions(calib_width=12))  # in-process: no CLI start-up
    assert f.shape == (16, 24) and not f.has_reference and not f.has_rss
    s = f.read(1)
    hybrid = centred_ifftn(kspace[1] * cols, (-2,))[:, 8:24]
    assert close(s.ksp, centred_fftn(hybrid, (-2,)) * cols) and np.array_equal(s.mask[0], cols)
    assert not s.img.any()  # no reference for undersampled data


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
    s = open_source(str(tmp_path / "k"), ReadOptions(calib_width=12, calib=8)).read(0)
    assert close(s.img, sense(s.ksp, s.maps)) and close(s.ksp, centred_fftn(coils, (-2, -1)))
    power = (np.abs(s.maps) ** 2).sum(0)
    assert power.max() < 1.01 and (power > 0.9).mean() > 0.3


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
    "cfl_3d": (lambda t: _cfl(t, (8, 6, 4, 2)), ("src", "z = 4")),
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
        ("data.undersampling.accel=20", ("data.undersampling.accel", "Poisson", "16x16")),
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
