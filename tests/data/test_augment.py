"""Training augmentations (mrirecon.data.augment): random masks, exact flips, smooth phase, noise."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers import ROOT, gradients_match_finite_differences, tiny_arrays
from omegaconf import OmegaConf

from mrirecon.data.augment import (
    add_noise,
    augment,
    calibration_size,
    central_columns,
    flip_kspace,
    is_column_mask,
    reverse_frequencies,
)
from mrirecon.data.batch import Batch
from mrirecon.data.h5 import whole_grid
from mrirecon.data.masks import make_mask, poisson_mask
from mrirecon.physics.fft import fft2c, ifft2c
from mrirecon.training.trainables.unrolled import UnrolledTrainable

CONF = ROOT / "conf"
ALL = {"random_masks": True, "flip": True, "random_phase": True}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def noiseless_batch(n: int = 3, shape: tuple[int, int] = (40, 32), masks: np.ndarray | None = None) -> Batch:
    """ksp = fft2c(maps * img) exactly (float64 precision kept in complex128)."""
    a = tiny_arrays(n=n, coils=3, shape=shape, seed=1)
    img = torch.from_numpy(a["imgs"]).to(torch.complex128)
    maps = torch.from_numpy(a["maps"]).to(torch.complex128)
    mask = torch.from_numpy(a["masks"] if masks is None else masks)
    return Batch(
        ksp=fft2c(maps * img[:, None]),
        maps=maps,
        mask=mask,
        noise_std=torch.full((n,), 0.01),
        index=torch.arange(n),
        acquired=torch.tensor([whole_grid(shape)] * n),
        img=img,
    )


def zero_batch(masks: np.ndarray, coils: int) -> Batch:
    """A batch of zero k-space and maps with the sampling masks `masks` (N, X, Y)."""
    n, x, y = masks.shape
    zeros = torch.zeros(n, coils, x, y, dtype=torch.complex64)
    return Batch(zeros, zeros.clone(), torch.from_numpy(masks), torch.zeros(n), torch.arange(n),
                 torch.tensor([whole_grid((x, y))] * n))  # fmt: skip


def test_poisson_masks_keep_density_and_calibration():
    shape = (80, 64)
    own = np.stack([poisson_mask(shape, 6.0, 10, seed) for seed in range(3)])
    batch = zero_batch(own, 2)
    out = augment(batch, gen(), random_masks=True)
    new = out.mask.numpy()
    assert out.mask.dtype == batch.mask.dtype and new.shape == own.shape
    assert set(np.unique(new)) <= {0.0, 1.0}
    for k in range(3):
        assert not np.array_equal(new[k], own[k])
        assert abs(new[k].sum() / own[k].sum() - 1) < 0.04
        assert calibration_size(own[k]) == 10 and calibration_size(new[k]) == 10
        assert not is_column_mask(new[k])
    assert not np.array_equal(new[0], new[1])  # each slice its own draw
    assert out.ksp is batch.ksp and out.maps is batch.maps  # fully sampled: nothing else changes


def test_column_masks_stay_column_masks_with_the_same_count_and_centre():
    shape = (40, 64)
    own = np.stack([make_mask("fastmri_random", shape, 4.0, 0, 0.125, seed) for seed in range(4)])
    new = augment(zero_batch(own, 1), gen(3), random_masks=True).mask.numpy()
    for k in range(4):
        assert is_column_mask(new[k]) and new[k].sum() == own[k].sum()
        assert central_columns(own[k][0] > 0) == central_columns(new[k][0] > 0) >= 8
        assert not np.array_equal(new[k], own[k])


def test_calibration_size_of_known_masks():
    mask = np.zeros((20, 16), dtype=np.float32)
    assert calibration_size(mask) == 0
    mask[10 - 3 : 10 + 3, 8 - 3 : 8 + 3] = 1  # sigpy's placement of a 6x6 square
    assert calibration_size(mask) == 6
    mask[7, 5:11] = 1
    assert calibration_size(mask) == 6  # one extra row is not a bigger square


@pytest.mark.parametrize("shape", [(6, 4), (7, 5), (6, 5)])
def test_flip_kspace_is_the_kspace_of_the_flipped_image(shape):
    """Even sizes: the image flip p -> -p - 1 is k(f) -> exp(2 pi i f / N) k(-f), a flip rolled by
    one sample with a linear phase; odd sizes: a plain flip of k-space."""
    img = torch.randn(2, *shape, dtype=torch.complex128, generator=gen(0))
    for dim in (-1, -2):
        exact = fft2c(torch.flip(img, [dim]))
        assert torch.allclose(flip_kspace(fft2c(img), dim), exact, atol=1e-13)
        assert torch.allclose(ifft2c(flip_kspace(fft2c(img), dim)), torch.flip(img, [dim]), atol=1e-13)
    k = torch.arange(6.0)  # frequencies -3 .. 2: -3 stays, f -> -f for the rest
    assert reverse_frequencies(k, 0).tolist() == [0.0, 5.0, 4.0, 3.0, 2.0, 1.0]
    assert reverse_frequencies(torch.arange(5.0), 0).tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]


@pytest.mark.parametrize("shape", [(40, 32), (15, 12)])
def test_flip_is_exact(shape):
    batch = noiseless_batch(shape=shape)
    out = augment(batch, gen(5), flip=True)
    flipped_any = False
    for k in range(3):
        assert torch.allclose(out.ksp[k], fft2c(out.maps[k] * out.img[k]), atol=1e-10)
        choices = ([], [-1], [-2], [-2, -1])
        same = [torch.equal(out.img[k], torch.flip(batch.img[k], d)) for d in choices]
        assert sum(same) == 1
        dims = choices[same.index(True)]
        flipped_any |= bool(dims)
        mask = batch.mask[k]
        for d in dims:  # the mask moves with its samples
            mask = reverse_frequencies(mask, d)
        assert torch.equal(out.mask[k], mask)
        # the measured data of the flip are the flipped measured data
        measured = batch.ksp[k] * batch.mask[k]
        for d in dims:
            measured = flip_kspace(measured, d)
        assert torch.allclose(out.ksp[k] * out.mask[k], measured, atol=1e-12)
    assert flipped_any
    # the noise in k-space stays white: the transform is unitary
    noise = torch.randn(3, 3, *shape, dtype=torch.complex128, generator=gen(1))
    moved = augment(batch.replace(ksp=noise), gen(5), flip=True).ksp
    assert torch.allclose(moved.abs().pow(2).sum(), noise.abs().pow(2).sum())


def _unmeasured_changed(batch: Batch) -> Batch:
    """The batch with random values, 100 times larger, wherever the mask is 0."""
    junk = 100 * torch.randn(batch.ksp.shape, dtype=batch.ksp.dtype, generator=gen(9))
    return batch.replace(ksp=torch.where(batch.mask.unsqueeze(1) != 0, batch.ksp, junk))


FIELDS = ("ksp", "maps", "mask", "noise_std", "index", "acquired", "img")


def equal(x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
    """Equal tensors (NaN equal to NaN), or both absent."""
    if x is None or y is None:
        return x is None and y is None
    return x.shape == y.shape and bool(((x == y) | (x.isnan() & y.isnan())).all())


def same(a: Batch, b: Batch) -> bool:
    """Whether two batches hold equal tensors (absent fields absent in both)."""
    return all(equal(getattr(a, k), getattr(b, k)) for k in FIELDS)


def test_measured_only_augmentations_never_read_unmeasured_kspace():
    batch = noiseless_batch().replace(img=None)
    a = augment(batch, gen(3), flip=True, random_phase=True, stdev=0.01, measured_only=True)
    b = augment(_unmeasured_changed(batch), gen(3), flip=True, random_phase=True, stdev=0.01, measured_only=True)
    assert same(a, b)
    nothing = augment(batch, gen(3), flip=True, random_phase=True, measured_only=True)
    assert torch.equal(nothing.ksp * nothing.mask.unsqueeze(1), nothing.ksp)  # nothing outside the (moved) mask
    # without measured_only the smooth phase mixes unmeasured samples into measured ones
    c = augment(batch, gen(3), random_phase=True)
    d = augment(_unmeasured_changed(batch), gen(3), random_phase=True)
    assert not torch.equal(c.ksp * c.mask.unsqueeze(1), d.ksp * d.mask.unsqueeze(1))
    with pytest.raises(ValueError, match="^random_masks: .*not measured"):
        augment(batch, gen(3), random_masks=True, measured_only=True)


def test_measured_only_phase_is_one_constant_per_slice():
    batch = noiseless_batch()
    out = augment(batch, gen(4), random_phase=True, measured_only=True)
    measured = batch.ksp * batch.mask.unsqueeze(1)
    angles = []
    for k in range(3):
        on = measured[k] != 0
        ratio = out.ksp[k][on] / measured[k][on]
        assert torch.allclose(ratio.abs(), torch.ones_like(ratio.abs()), atol=1e-12)
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-12)
        assert torch.allclose(out.img[k], batch.img[k] * ratio[0], atol=1e-12)
        angles.append(float(torch.angle(ratio[0])))
    assert len({round(a, 6) for a in angles}) == 3  # each slice its own draw


def test_random_phase_keeps_magnitude_and_forward_model_and_is_smooth():
    batch = noiseless_batch(shape=(64, 48))
    out = augment(batch, gen(2), random_phase=True)
    assert torch.allclose(out.img.abs(), batch.img.abs(), atol=1e-12)
    assert torch.equal(out.maps, batch.maps)
    for k in range(3):
        assert torch.allclose(out.ksp[k], fft2c(out.maps[k] * out.img[k]), atol=1e-10)
        phase = torch.angle(out.img[k] * batch.img[k].conj())
        rot = torch.exp(1j * phase)
        # smooth: neighbouring pixels differ by a small angle (wrapping handled by the product)
        dx = torch.angle(rot[1:] * rot[:-1].conj()).abs().max()
        dy = torch.angle(rot[:, 1:] * rot[:, :-1].conj()).abs().max()
        assert dx < 0.35 and dy < 0.35
        assert phase.std() > 1e-3 or phase.abs().max() > 1e-3  # not the identity
    phases = [torch.angle(out.img[k] * batch.img[k].conj()) for k in range(3)]
    assert not torch.allclose(phases[0], phases[1])


def test_same_seed_same_batch_and_no_option_is_identity():
    batch = noiseless_batch()
    a, b = augment(batch, gen(7), **ALL), augment(batch, gen(7), **ALL)
    assert same(a, b)
    c = augment(batch, gen(8), **ALL)
    assert not torch.equal(a.ksp, c.ksp)
    assert augment(batch, gen(7)) is batch and augment(batch, gen(7), stdev=0.0) is batch
    assert same(batch, noiseless_batch())  # input untouched


def test_unsupervised_batch_without_img():
    batch = noiseless_batch().replace(img=None)
    out = augment(batch, gen(4), **ALL)
    assert out.img is None and out.ksp.shape == batch.ksp.shape and torch.equal(out.index, batch.index)


def test_noise_is_the_last_draw_and_the_noise_std_its_total():
    """stdev: complex noise of E|n|^2 = stdev^2 on every k-space sample, the noise std becomes
    sqrt(sigma^2 + stdev^2) (NaN stays NaN: estimated later), drawn after the other augmentations."""
    batch = noiseless_batch(n=2, shape=(64, 48)).replace(noise_std=torch.tensor([0.03, float("nan")]))
    noisy = add_noise(batch, 0.04, gen(1))
    added = noisy.ksp - batch.ksp
    assert float(added.abs().pow(2).mean()) == pytest.approx(0.04**2, rel=0.05)
    assert noisy.noise_std[0] == pytest.approx(0.05) and torch.isnan(noisy.noise_std[1])
    flipped = augment(batch, gen(1), flip=True, stdev=0.04)
    g = gen(1)
    torch.rand(2, 2, generator=g)  # the flips' draw
    again = add_noise(augment(batch, gen(1), flip=True), 0.04, g)
    assert same(flipped, again)


def _trainable(bits, **train) -> UnrolledTrainable:
    method = OmegaConf.to_container(OmegaConf.load(CONF / "method" / "dbp.yaml"))
    model = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "resnet.yaml"))
    method.update(num_unrolls=1, cg_max_iter=3)
    model.update(channels=4, num_blocks=1)
    settings = {"loss": "sse", "stdev": 0.0, "holdout": 0.4, "holdout_center": 0.1, **train}
    return UnrolledTrainable.from_config(method, model, settings, shape=(40, 32), bits=bits, seed=0, amp=False)


def complex64(batch: Batch) -> Batch:
    return batch.replace(ksp=batch.ksp.to(torch.complex64), maps=batch.maps.to(torch.complex64),
                         img=batch.img.to(torch.complex64))  # fmt: skip


def test_a_dbp_training_step_with_all_three(caplog):
    trainable = _trainable(None, **ALL)
    assert trainable.augmentations == ALL and "random_phase" in trainable.describe()
    batch = complex64(noiseless_batch(n=2))
    assert torch.isfinite(trainable.loss(batch, gen(0)))
    # the gradient through flips, phase, DBP and CG is the loss's: finite differences in float64
    # (new masks change no gradient path and cost a sigpy call per slice and evaluation)
    exact = _trainable(None, flip=True, random_phase=True)
    exact.module.double()
    exact.module.cg_eps = 0.0  # a fixed number of CG iterations: a smooth function of the weights
    small = noiseless_batch(n=2, shape=(16, 12))
    assert gradients_match_finite_differences(exact.module, lambda: exact.loss(small, gen(0)))
    # magnitude variants skip the phase with one info line
    with caplog.at_level(logging.INFO, logger="mrirecon.data.augment"):
        magnitude = _trainable(8, **ALL)
    assert magnitude.augmentations == {**ALL, "random_phase": False}
    assert sum("random_phase" in r.getMessage() for r in caplog.records) == 1
    assert _trainable(None).augmentations == dict.fromkeys(ALL, False)


def test_checkpoints_record_the_augmentations_and_reconstruct_reports_them():
    trainable = _trainable(None, random_masks=True, flip=True)
    ckpt = {**trainable.checkpoint_state(), "model": trainable.module.state_dict()}
    back = UnrolledTrainable.from_checkpoint(ckpt)
    assert back.augmentations == {**ALL, "random_phase": False}
    assert back.reconstructor({}, None, False)[1]["augment"] == "random_masks+flip"
    plain = UnrolledTrainable.from_checkpoint({**ckpt, "augmentations": dict.fromkeys(ALL, False)})
    assert "augment" not in plain.reconstructor({}, None, False)[1]
    # checkpoints written before the record (format 2) are refused when loaded, not read from their run config
    with pytest.raises(KeyError):
        UnrolledTrainable.from_checkpoint({k: v for k, v in ckpt.items() if k != "augmentations"})


@pytest.mark.parametrize("flag", sorted(ALL))
def test_train_yaml_has_the_keys(flag):
    train = OmegaConf.load(CONF / "train.yaml").train
    assert flag in train


def test_the_direct_family_augments_too():
    from mrirecon.training.trainables.direct import DirectTrainable

    method, model = {"name": "unet_image"}, {"name": "fastmri_unet", "chans": 4, "num_pools": 2}
    train = {**ALL, "loss": "l1", "stdev": 0.0}
    trainable = DirectTrainable.from_config(method, model, train, shape=(32, 24), bits=None, seed=0, amp=False)
    assert trainable.augmentations == ALL and "random_masks" in trainable.describe()
    batch = complex64(noiseless_batch(n=2))
    assert torch.isfinite(trainable.loss(batch, gen(0)))
    ckpt = {**trainable.checkpoint_state(), "model": trainable.module.state_dict()}
    back = DirectTrainable.from_checkpoint(ckpt)
    assert (
        back.augmentations == ALL
        and back.reconstructor({}, None, False)[1]["augment"] == "random_masks+flip+random_phase"
    )
