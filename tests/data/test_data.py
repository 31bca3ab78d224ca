"""DeepInPy file reading/writing, transforms, splits and the embedded sample."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import dft2c, tiny_arrays, write_h5

from mrirecon.data.formats.sample import SampleSource
from mrirecon.data.h5 import DeepInPyFile, Slice
from mrirecon.data.h5_writer import DeepInPyWriter
from mrirecon.data.header import Header, Variant
from mrirecon.data.splits import check_splits, make_splits, subjects_of
from mrirecon.data.transforms import make_variant, quantize, resize_maps, resized_shape, with_noise
from mrirecon.errors import UserError


def test_read_converts_dtypes_and_copies(tmp_path):
    arrays = tiny_arrays()
    arrays = {k: v.astype(np.complex128) if v.dtype.kind == "c" else v.astype(np.float64) for k, v in arrays.items()}
    f = DeepInPyFile(write_h5(tmp_path / "a.h5", arrays))
    s = f.read(2)
    assert (s.img.dtype, s.maps.dtype, s.ksp.dtype, s.mask.dtype) == (np.complex64,) * 3 + (np.float32,)
    assert np.allclose(s.ksp, arrays["ksp"][2], atol=1e-6)
    assert f.num_slices == 6 and f.num_coils == 4 and f.shape == (32, 24)
    f.close()
    s.img[:] = 0  # a copy: the file is closed and the array is still writable


def test_transpose_on_read(tmp_path):
    arrays = tiny_arrays(shape=(24, 32))
    f = DeepInPyFile(write_h5(tmp_path / "t.h5", arrays), transpose=True)
    assert f.shape == (32, 24)
    s = f.read(0)
    assert s.maps.shape == (4, 32, 24) and np.array_equal(s.mask, arrays["masks"][0].T)
    # transposing both image and maps keeps the forward model consistent
    assert np.allclose(dft2c(s.maps * s.img), s.ksp, atol=1e-4)


def test_writer_round_trip_and_attributes(tmp_path):
    arrays = tiny_arrays(n=3)
    out = tmp_path / "w.h5"
    subjects = np.array([7, 7, 9])
    header = Header(variant=Variant(None, 1.0, name="x"), splits={"train": (0, 1), "val": (), "test": (2,)})
    with DeepInPyWriter(out, 3, 4, (32, 24), header, subjects=subjects) as w:
        for i in range(3):
            w.write(i, Slice(arrays["imgs"][i], arrays["maps"][i], arrays["ksp"][i], arrays["masks"][i], 0.5 * i))
    f = DeepInPyFile(out)
    assert f.header == header and np.array_equal(f.read(1).ksp, arrays["ksp"][1])
    assert f.attrs["variant"] == "x" and f.attrs["bits"] == -1 and f.split_indices("test").tolist() == [2]
    assert f.read(2).noise_std == 1.0 and f.subjects().tolist() == [7, 7, 9]
    assert list(tmp_path.iterdir()) == [out]


def test_writer_needs_the_noise_std(tmp_path):
    arrays = tiny_arrays(n=1)
    with pytest.raises(ValueError, match="noise_std"):
        with DeepInPyWriter(tmp_path / "w.h5", 1, 4, (32, 24)) as w:
            w.write(0, Slice(arrays["imgs"][0], arrays["maps"][0], arrays["ksp"][0], arrays["masks"][0]))
    assert list(tmp_path.iterdir()) == []


def test_files_without_noise_or_subjects_read_as_none(tmp_path):
    f = DeepInPyFile(write_h5(tmp_path / "a.h5", tiny_arrays()))
    assert f.read(0).noise_std is None and f.subjects() is None


def test_writer_failure_leaves_previous_file(tmp_path):
    out = tmp_path / "w.h5"
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with DeepInPyWriter(out, 2, 1, (4, 4)):
            raise RuntimeError("killed")
    assert out.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [out]


def test_imgs_may_be_real_magnitude(tmp_path):
    arrays = tiny_arrays()
    arrays["imgs"] = np.abs(arrays["imgs"]).astype(np.float32)
    assert DeepInPyFile(write_h5(tmp_path / "r.h5", arrays)).read(0).img.dtype == np.complex64


def test_split_indices(tmp_path):
    path = write_h5(
        tmp_path / "s.h5", tiny_arrays(), {"split_train": [0, 1, 2], "split_val": [3], "split_test": [4, 5]}
    )
    f = DeepInPyFile(path)
    assert f.split_indices("test").tolist() == [4, 5] and f.split_indices("all").tolist() == list(range(6))
    with pytest.raises(UserError, match="data.split"):
        f.split_indices("bogus")
    with pytest.raises(UserError, match="no split"):
        DeepInPyFile(write_h5(tmp_path / "n.h5", tiny_arrays())).split_indices("test")


@pytest.mark.parametrize("n,per_subject", [(3, None), (15, None), (4480, None), (4480, 320), (60, 4)])
def test_make_splits_disjoint_complete_and_never_cut_a_subject(n, per_subject):
    subjects = subjects_of(n, per_subject)
    s = make_splits(subjects, 0.15, 0.2)
    joined = np.concatenate([s["train"], s["val"], s["test"]])
    assert sorted(joined.tolist()) == list(range(n))
    assert len(s["val"]) >= 1 and len(s["test"]) >= 1 and len(s["train"]) >= 1
    assert s["train"].max() < s["val"].min() < s["test"].min()
    sets = [set(subjects[s[name]].tolist()) for name in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    check_splits(s, subjects)  # no error
    if per_subject == 320:  # 14 whole knee volumes: 9 / 2 / 3 subjects
        assert [len(x) for x in sets] == [9, 2, 3] and len(s["test"]) == 3 * 320


def test_contiguous_block_splits_would_cut_a_volume():
    subjects = subjects_of(4480, 320)
    cut = {"train": np.arange(3584), "val": np.arange(3584, 4000), "test": np.arange(4000, 4480)}  # 80 % / ...
    with pytest.raises(ValueError, match="subject 11"):
        check_splits(cut, subjects)
    with pytest.raises(ValueError, match="shares slices"):
        check_splits({"train": np.arange(5), "val": np.arange(4, 6), "test": np.arange(6, 8)}, np.arange(8))


def test_subjects_of_and_bad_fractions():
    assert subjects_of(6, 2).tolist() == [0, 0, 1, 1, 2, 2] and subjects_of(3, None).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="whole number"):
        subjects_of(10, 3)
    with pytest.raises(ValueError, match="test_fraction"):
        make_splits(np.arange(10), 0.1, 1.5)
    with pytest.raises(ValueError):
        make_splits(np.arange(10), 0.5, 0.5)


@pytest.mark.parametrize("bits", [4, 8])
def test_quantize_levels(bits):
    rng = np.random.default_rng(0)
    q = quantize(rng.random((40, 30)).astype(np.float32) * 7 + 3, bits)
    levels = np.unique(q)
    assert q.min() == 0 and q.max() == 1 and len(levels) <= 2**bits
    assert np.allclose(levels * (2**bits - 1), np.rint(levels * (2**bits - 1)), atol=1e-5)
    assert np.all(quantize(np.ones((4, 4)), bits) == 0)


def test_quantize_rounds_to_the_nearest_level():
    """0.4 and 0.6 of a level step go to levels 0 and 1 (floor would give 0 and 0; ceil 1 and 1)."""
    levels = 15
    magnitude = np.array([0.0, 0.4, 0.6, 1.4, 1.6, 7.49, 7.51, 15.0]) / levels * 2 + 3  # any offset and scale
    assert quantize(magnitude, 4).tolist() == pytest.approx(np.array([0, 0, 1, 1, 2, 7, 8, 15]) / levels)


def test_quantize_in_given_units_clips():
    q = quantize(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]), 8, lo=0.0, hi=1.0)
    assert q.tolist() == pytest.approx([0, 0, 128 / 255, 1, 1])


def test_resized_shape():
    assert resized_shape((320, 256), 0.25) == (80, 64)
    assert resized_shape((230, 180), 0.25) == (58, 45)


def _slice(shape=(32, 24)) -> Slice:
    a = tiny_arrays(n=1, shape=shape)
    return Slice(a["imgs"][0], a["maps"][0], a["ksp"][0] + 0.01, a["masks"][0])  # ksp "acquired": not model-exact


def test_full_variant_keeps_acquired_kspace():
    s = _slice()
    assert make_variant(s, None, 1.0) is s


@pytest.mark.parametrize("bits,scale", [(4, 1.0), (8, 0.25), (None, 0.25), (8, 1.0)])
def test_variants_are_consistent_with_forward_model(bits, scale):
    s = _slice()
    v = make_variant(s, bits, scale)
    shape = resized_shape((32, 24), scale)
    assert v.img.shape == shape and v.maps.shape == (4, *shape) and v.ksp.shape == (4, *shape)
    assert set(np.unique(v.mask)) <= {0.0, 1.0}
    assert np.allclose(v.ksp, dft2c(v.maps * v.img), atol=1e-5)  # explicit DFT matrices
    assert v.noise_std is None  # noiseless: preprocess adds the noise
    if bits is not None:
        assert np.all(v.img.imag == 0) and v.img.real.min() == 0 and v.img.real.max() == 1
    else:
        assert np.abs(v.img.imag).max() > 0  # phase kept


@pytest.mark.parametrize("coils", [1, 5, 8, 12])
def test_resized_maps_are_renormalised_for_any_coil_count(coils):
    rng = np.random.default_rng(coils)
    x, y = 230, 180  # a non-integer scale: 230 -> 58, 180 -> 45
    u, v = np.meshgrid(np.linspace(-1, 1, x), np.linspace(-1, 1, y), indexing="ij")
    support = u**2 + v**2 < 0.8
    phase = np.exp(1j * (40 * u + 25 * v))  # fast phase: area averaging loses most of |S|
    maps = np.stack([rng.random() * phase * np.exp(1j * rng.random() * (u + 2 * v)) for _ in range(coils)])
    maps = np.where(support, maps / np.sqrt((np.abs(maps) ** 2).sum(0)), 0)
    small, inside = resize_maps(maps, (58, 45))
    power = (np.abs(small) ** 2).sum(0)
    assert small.shape == (coils, 58, 45) and 0.6 < inside.mean() < 0.75
    assert np.allclose(power[inside], 1, atol=1e-5) and np.all(power[~inside] == 0)


def test_resized_variant_is_zero_outside_the_maps_support():
    s = _slice((40, 32))
    s.maps[:, :8] = 0  # no coil sees the top rows
    v = make_variant(s, 8, 0.5)
    assert np.all(v.img[:4] == 0) and np.all(v.maps[:, :4] == 0) and np.abs(v.img[8:]).max() > 0


@pytest.mark.parametrize("bits,scale", [(8, 1.0), (4, 1.0), (None, 0.5), (8, 0.5), (4, 0.25)])
def test_support_handling_is_the_same_at_every_scale(bits, scale):
    """DESIGN.md: maps renormalised (sum_c |S_c|^2 = 1 inside the support, 0 outside), image zero
    outside the support, whatever the scale (at scale 1 too)."""
    s = _slice((40, 32))
    s.maps[:, :8] = 0  # no coil sees the top rows
    s.maps[:, 20:] *= 0.6  # maps not normalised there (e.g. ESPIRiT maps at their edge)
    v = make_variant(s, bits, scale)
    power = (np.abs(v.maps) ** 2).sum(0)
    inside = power > 0
    rows = round(8 * scale)
    assert not inside[:rows].any() and inside[rows + 1 :].all()
    assert np.allclose(power[inside], 1, atol=1e-5)
    assert np.all(v.img[~inside] == 0) and np.abs(v.img[inside]).max() > 0


def test_rss_reference_is_in_the_variant_units():
    """The second reference (fastMRI's rss, in source units) follows the image's min-max
    normalisation and levels in bit variants, so both references are comparable."""
    s = _slice((40, 32))
    s.img *= 250.0  # source units: a scanner's
    s.rss = np.abs(s.img).astype(np.float32)  # here equal to the image's magnitude
    for bits, scale in ((8, 1.0), (4, 0.5)):
        v = make_variant(s, bits, scale)
        assert v.rss.max() == pytest.approx(1.0) and np.abs(v.rss - v.img.real).max() <= 1 / (2**bits - 1) + 1e-6
    full = make_variant(s, None, 0.5)
    assert full.rss.max() > 100  # no bits: units unchanged (a resized image)


def test_with_noise_has_the_requested_level():
    s = _slice((64, 64))
    n = with_noise(s, 0.3, np.random.default_rng(0))
    diff = n.ksp - s.ksp
    assert n.noise_std == 0.3 and np.sqrt(np.mean(np.abs(diff) ** 2)) == pytest.approx(0.3, rel=0.03)
    assert np.abs(diff.real.std() - diff.imag.std()) < 0.01


def test_sample_is_deterministic_and_physical():
    a, b = SampleSource(), SampleSource()
    s, t = a.read(3), b.read(3)
    assert np.array_equal(s.ksp, t.ksp) and np.array_equal(s.mask, t.mask)
    assert len(a) == 15 and s.img.shape == (320, 256) and s.maps.shape == (8, 320, 256)
    assert np.allclose((np.abs(s.maps) ** 2).sum(0), 1, atol=1e-5)
    noise = s.ksp[:2] - dft2c(s.maps[:2] * s.img)  # k-space = forward model (explicit DFT) + noise of the stated level
    assert s.noise_std == pytest.approx(0.018) and np.sqrt(np.mean(np.abs(noise) ** 2)) == pytest.approx(
        0.018, rel=0.01
    )
    clean = SampleSource(noise=0).read(3)
    assert clean.noise_std == 0 and np.allclose(dft2c(clean.maps[:2] * clean.img), clean.ksp[:2], atol=1e-4)
    assert a.subjects().tolist() == list(range(15))
    assert np.abs(s.img).max() == pytest.approx(1.0)
    accel = s.mask.size / s.mask.sum()
    assert 4.5 < accel < 7.5
    assert s.mask[160 - 12 : 160 + 12, 128 - 12 : 128 + 12].all()  # calibration region
    assert not np.array_equal(s.mask, a.read(4).mask)  # each slice its own mask
    other = SampleSource(accel=3.0).read(3).mask
    assert other.mean() > 1.5 * s.mask.mean()


def test_sample_rejects_bad_acceleration():
    with pytest.raises(UserError, match="accel"):
        SampleSource(accel=0.5)
