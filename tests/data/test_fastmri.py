"""fastMRI geometry (in-process, no CLI): the padding stated by the header's encodingLimits is
not measured, the phase-encode width is kept, the recon size is recorded for the image crop,
one mask per volume equal to fastMRI's, and the noise estimate ignores the padding.

The files are written in fastMRI's layout (tests/formats_helpers.py) with an oversampled
readout (the object in the central half, as on a scanner) and white k-space noise of a known
level in the acquired columns; one file is made from the real phantom scan's k-space.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from formats_helpers import centred_fftn, centred_ifftn, oversampled_coils, write_fastmri
from helpers import ASSETS
from test_masks import fastmri_columns

from mrirecon.data import masks
from mrirecon.data.source import ReadOptions, open_source
from mrirecon.data.transforms import make_variant
from mrirecon.errors import UserError
from mrirecon.tasks.preprocess_slices import noise_estimate

PAD = (4, 44)  # acquired columns of 48 (fastMRI knees: [16, 350) of 368 in the same proportion)
RECON = (32, 32)
COIL_NOISE = 0.01 * np.sqrt(2)  # the white image noise phantom_coils adds (E|n|^2 per pixel)
ADDED = 0.02  # the k-space noise write_fastmri adds
SIGMA = float(np.sqrt(COIL_NOISE**2 + ADDED**2))  # the true noise per k-space sample after the readout crop


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("fastmri") / "file1000001.h5"
    kspace = write_fastmri(path, oversampled_coils(3), RECON, padding=PAD, noise=ADDED)
    return path, kspace


def options(**kw) -> ReadOptions:
    return ReadOptions(**{"calib_width": 12, "mask": "fastmri_random", "accel": 4.0, "center_fraction": 0.08, **kw})


def test_padding_is_not_measured_and_the_width_is_kept(padded):
    path, kspace = padded
    source = open_source(str(path), options())
    assert source.shape == (32, 48) and source.recon_size == RECON and source.acquired == (0, 32, *PAD)
    expected_mask = fastmri_columns("random", 48, 4, 0.08, (723, *map(ord, path.name)), padding=PAD)
    with h5py.File(path) as f:
        rss = f["reconstruction_rss"][()]
    for i in range(3):
        s = source.read(i)
        hybrid = centred_ifftn(kspace[i], (-2,))[:, 16:48]  # readout oversampling removed, exactly
        assert np.allclose(s.ksp, centred_fftn(hybrid, (-2,)), atol=1e-5)
        assert not s.ksp[:, :, : PAD[0]].any() and not s.ksp[:, :, PAD[1] :].any()  # padding stays exact zeros
        assert (s.mask == s.mask[:1]).all() and np.array_equal(s.mask[0].astype(bool), expected_mask)
        assert s.acquired == (0, 32, *PAD)
        img = np.sum(np.conj(s.maps) * centred_ifftn(s.ksp, (-2, -1)), axis=0)
        assert np.allclose(s.img, img, atol=1e-5 * np.abs(img).max())
        assert np.array_equal(s.rss[:, 8:40], rss[i]) and not s.rss[:, :8].any() and not s.rss[:, 40:].any()


def test_one_mask_per_volume_and_fastmris_own_seed(padded):
    path, _ = padded
    ours = open_source(str(path), options(seed=None))  # seed null: fastMRI's file-name seed
    a, b = ours.read(0).mask, ours.read(2).mask
    expected = fastmri_columns("random", 48, 4, 0.08, tuple(map(ord, path.name)), padding=PAD)
    assert np.array_equal(a, b) and np.array_equal(a[0].astype(bool), expected)
    equispaced = open_source(str(path), options(mask="fastmri_equispaced")).read(1).mask[0].astype(bool)
    assert np.array_equal(
        equispaced, fastmri_columns("equispaced_fraction", 48, 4, 0.08, masks.volume_seed(723, path.name), PAD)
    )


def test_noise_estimate_ignores_the_padding(padded):
    """Within 10 % of the true noise on every slice (the reader of before, which cropped the
    phase-encode axis in image space, smeared the zero padding over the periphery)."""
    path, _ = padded
    source = open_source(str(path), options())
    for i in range(3):
        assert noise_estimate(source.read(i)) == pytest.approx(SIGMA, rel=0.10)


def test_real_phantom_in_fastmri_layout(tmp_path):
    """The real 4-coil phantom's k-space (real scanner noise), its outer 24 columns a side made
    padding: the estimate matches the noise of the original k-space corners (independent truth)."""
    phantom = np.load(ASSETS / "phantom_4coil_gre_256.npy")
    corners = np.concatenate(
        [phantom[:, a, b].ravel() for a in (slice(0, 24), slice(-24, None)) for b in (slice(0, 24), slice(-24, None))]
    )
    truth = float(np.sqrt(np.mean(np.abs(corners) ** 2)))
    write_fastmri(tmp_path / "phantom.h5", centred_ifftn(phantom, (-2, -1))[None], (256, 192), padding=(24, 232))
    s = open_source(str(tmp_path / "phantom.h5"), options()).read(0)
    assert s.mask[:, :24].sum() == 0 and s.mask[:, 232:].sum() == 0
    assert noise_estimate(s) == pytest.approx(truth, rel=0.10)


def test_variants_keep_the_padding_unmeasured(padded):
    path, _ = padded
    s = open_source(str(path), options()).read(0)
    v = make_variant(s, 8, 0.5)
    assert v.acquired == (0, 16, 2, 22) and v.img.shape == (16, 24)
    assert not v.mask[:, :2].any() and not v.mask[:, 22:].any() and v.mask[:, 2:22].any()


def test_undersampled_file_keeps_its_mask_inside_the_acquired_columns(tmp_path):
    cols = np.zeros(48, np.float32)
    cols[::3] = 1
    cols[20:28] = 1
    kspace = write_fastmri(tmp_path / "test_file.h5", oversampled_coils(2, seed=30), RECON, rss=False, padding=PAD)
    with h5py.File(tmp_path / "test_file.h5", "a") as f:
        f["kspace"][...] = kspace * cols
        f["mask"] = cols  # as in fastMRI's test set: it covers the padding columns too
    source = open_source(str(tmp_path / "test_file.h5"), options())
    assert source.shape == (32, 48) and not source.has_reference and source.recon_size == RECON
    s = source.read(1)
    inside = cols.copy()
    inside[: PAD[0]] = inside[PAD[1] :] = 0
    assert np.array_equal(s.mask[0], inside) and not s.img.any()
    hybrid = centred_ifftn(kspace[1] * cols, (-2,))[:, 16:48]
    assert np.allclose(s.ksp, centred_fftn(hybrid, (-2,)), atol=1e-5)


def test_encoding_limits_outside_the_kspace_are_refused(tmp_path):
    path = tmp_path / "bad.h5"
    write_fastmri(path, oversampled_coils(1), RECON, padding=(4, 44))
    with h5py.File(path, "a") as f:
        header = f["ismrmrd_header"][()].replace(b"<maximum>39</maximum>", b"<maximum>60</maximum>")
        del f["ismrmrd_header"]
        f["ismrmrd_header"] = header
    with pytest.raises(UserError, match="ismrmrd_header.*encodingLimits.*outside the 48 columns"):
        open_source(str(path), options())


def test_training_validation_metrics_use_the_recon_size(padded, tmp_path):
    """A processed fastMRI file's SliceDataset items carry its recon size, and the validation
    metrics of training crop to it, as reconstruct does (here: zero-filled against the reference)."""
    from helpers import preprocess_in_process as run

    from mrirecon.data.batch import collate
    from mrirecon.data.dataset import SliceDataset
    from mrirecon.evaluation import metrics
    from mrirecon.training.trainables.reconstructors import validation_metrics

    path, _ = padded
    options = ("data.espirit.calib_width=12", "data.mask=fastmri_random", "data.undersampling.accel=4")
    data = run(tmp_path, f"data.source={path}", *options)  # preprocess in-process
    batch = collate([SliceDataset(data, [0, 1])[k] for k in range(2)])
    assert batch.crop.tolist() == [[32, 32], [32, 32]]
    scores = validation_metrics(lambda y, op, noise: op.adjoint(y), batch)
    expected = []
    for i in (0, 1):
        s = data.read(i)
        x = np.sum(np.conj(s.maps) * centred_ifftn(s.mask * s.ksp, (-2, -1)), axis=0)
        expected.append(metrics.slice_metrics(x[:, 8:40], s.img[:, 8:40]))
    assert scores["val_psnr"] == pytest.approx(np.mean([e["psnr"] for e in expected]), abs=1e-3)


def test_random_masks_stay_in_the_acquired_columns(padded, tmp_path):
    """Training's random masks (train.random_masks) of a padded fastMRI file keep the padding
    unmeasured and the slice's column count; without the acquired region they would not."""
    import torch
    from helpers import preprocess_in_process as run

    from mrirecon.data.augment import augment
    from mrirecon.data.batch import collate
    from mrirecon.data.dataset import SliceDataset
    from mrirecon.data.h5 import whole_grid

    path, _ = padded
    options = ("data.espirit.calib_width=12", "data.mask=fastmri_random", "data.undersampling.accel=4")
    data = run(tmp_path, f"data.source={path}", *options)
    batch = collate([SliceDataset(data, [0, 1, 2])[k] for k in range(3)])
    _, _, y0, y1 = data.acquired(0)
    assert (y0, y1) != (0, data.shape[1])  # the file has padding columns
    padding = np.ones(data.shape[1], dtype=bool)
    padding[y0:y1] = False
    for seed in range(5):
        new = augment(batch, torch.Generator().manual_seed(seed), random_masks=True).mask.numpy()
        assert not new[:, :, padding].any()
        assert (new[:, 0].sum(-1) == batch.mask[:, 0].sum(-1).numpy()).all()
    blind = batch.replace(acquired=torch.tensor([whole_grid(data.shape)] * 3))
    drawn = [augment(blind, torch.Generator().manual_seed(s), random_masks=True).mask.numpy() for s in range(5)]
    assert any(d[:, :, padding].any() for d in drawn)  # the whole grid: padding gets sampled


def test_default_mask_is_whole_lines_inside_the_acquired_columns(padded):
    """fastMRI scans are 2D: the default mask (auto) samples whole phase-encode lines, the
    central calib ones, round(acquired / accel) in all, none in the padding."""
    path, _ = padded
    source = open_source(str(path), ReadOptions(calib_width=12, accel=4.0, calib=6))
    mask = source.read(0).mask
    assert source.attrs["mask"] == "lines" and (mask == mask[:1]).all()
    left, right = PAD
    assert not mask[:, :left].any() and not mask[:, right:].any() and mask[0, 21:27].all()
    assert mask[0].sum() == round((right - left) / 4)
