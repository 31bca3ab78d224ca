"""Coil maps and virtual coils (physics/coils.py): torch ESPIRiT against sigpy, coil compression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ASSETS

from mrirecon.physics import coils

BRAIN = ASSETS / "brain_8coil_ksp_poisson8x.npy"


def sigpy_gram(kernels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """sigpy's image-domain matrix, the slow way: every kernel zero-padded to `shape` (centred as
    sigpy.resize does), centred inverse FFT, N / k^2 sum_j v_j v_j^H: (X, Y, C, C)."""
    import sigpy as sp

    _, c, k, _ = kernels.shape
    out = np.zeros((*shape, c, c), np.complex128)
    for kern in kernels:
        v = sp.ifft(sp.resize(kern, (c, *shape)), axes=(-2, -1))  # (C, X, Y)
        out += np.einsum("cxy,dxy->xycd", v, v.conj())
    return out * (shape[0] * shape[1]) / k**2


def test_gram_is_sigpys_matrix_exactly():
    rng = np.random.default_rng(0)
    kernels = (rng.standard_normal((5, 3, 6, 6)) + 1j * rng.standard_normal((5, 3, 6, 6))).astype(np.complex64)
    for shape in ((20, 16), (21, 15)):  # even and odd sizes
        coef = coils.gram_coefficients(torch.from_numpy(kernels))
        rows = torch.arange(shape[0]) - shape[0] // 2
        cols = torch.arange(shape[1]) - shape[1] // 2
        ours = coils.gram_on_grid(coef, shape, rows, cols).numpy()
        ref = sigpy_gram(kernels, shape)
        assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()


def test_espirit_matches_sigpy_on_real_brain():
    """Real 8-coil k-space (undersampled 8x, calibration centre fully sampled): the maps agree
    with sigpy's EspiritCalib (100 power iterations) inside the support; same support."""
    import sigpy.mri

    ksp = np.load(BRAIN)
    ref = sigpy.mri.app.EspiritCalib(ksp, show_pbar=False).run()
    ours = coils.espirit_maps(torch.from_numpy(ksp)).numpy()
    support_ref = (np.abs(ref) ** 2).sum(0) > 0.5
    support = (np.abs(ours) ** 2).sum(0) > 0.5
    assert (support == support_ref).mean() > 0.999 and support.mean() > 0.3
    err = np.sqrt((np.abs(ours - ref) ** 2).sum(0))[support & support_ref]
    assert np.sqrt((err**2).mean()) < 0.005 and np.quantile(err, 0.99) < 0.01
    power = (np.abs(ours) ** 2).sum(0)
    assert np.allclose(power[support], 1, atol=1e-4) and not ours[:, ~support].any()
    assert np.abs(ours[0].imag).max() < 1e-6 and ours[0].real.min() >= 0  # phase relative to coil 0


def test_espirit_batched_equals_per_slice_and_eigen_residual():
    ksp = torch.from_numpy(np.load(BRAIN))[:, 40:200, 20:160]
    two = torch.stack([ksp, ksp.roll(1, 0)])
    batched = coils.espirit_maps(two)
    assert torch.allclose(batched[1], coils.espirit_maps(two[1]), atol=1e-6)
    # every kept pixel holds an eigenvector of sigpy's matrix within the stated tolerance
    kernels = coils.espirit_kernels(coils.calibration_region(ksp, 24), 6, 0.02)
    shape = tuple(ksp.shape[-2:])
    gram = coils.gram_on_grid(
        coils.gram_coefficients(kernels),
        shape,
        torch.arange(shape[0]) - shape[0] // 2,
        torch.arange(shape[1]) - shape[1] // 2,
    )
    x = batched[0].permute(1, 2, 0)  # (X, Y, C)
    kept = x.abs().pow(2).sum(-1) > 0.5
    gx = (gram @ x[..., None])[..., 0]
    rho = (x.conj() * gx).sum(-1).real
    residual = (gx - rho[..., None] * x).norm(dim=-1)
    assert residual[kept].max() <= 1.01e-3 * rho[kept].max()
    largest = torch.linalg.eigvalsh(gram[kept])[:, -1]
    assert torch.allclose(rho[kept], largest, atol=2e-3)  # the top eigenvalue, not another one


def test_espirit_rejects_bad_input():
    with pytest.raises(ValueError, match="^ksp"):
        coils.espirit_maps(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="^ksp"):
        coils.espirit_maps(torch.zeros(2, 8, 8, dtype=torch.complex64))


# ---------------------------------------------------------------------------- coil compression


def _slice(seed: int = 0, coils: int = 6, shape: tuple[int, int] = (32, 24)):
    from helpers import tiny_arrays

    from mrirecon.data.h5 import Slice

    a = tiny_arrays(n=1, coils=coils, shape=shape, seed=seed)
    return Slice(a["imgs"][0], a["maps"][0], a["ksp"][0], a["masks"][0], noise_std=0.1)


def test_compression_matrix_is_the_svd_of_the_calibration_data():
    s = _slice()
    calib = s.ksp[:, 16 - 6 : 16 + 6, 12 - 6 : 12 + 6].reshape(6, -1)
    u, sv, _ = np.linalg.svd(calib, full_matrices=False)
    for n in (1, 3, 6):
        matrix, energy = coils.compression_from_gram(coils.coil_gram(torch.from_numpy(calib)), n)
        m = matrix.numpy().astype(np.complex128)
        assert np.allclose(m.conj().T @ m, np.eye(n), atol=1e-5)
        assert np.allclose(m @ m.conj().T, u[:, :n] @ u[:, :n].conj().T, atol=1e-5)  # same subspace
        assert np.isclose(energy[-1].item(), (sv[:n] ** 2).sum() / (sv**2).sum(), atol=1e-6)
    with pytest.raises(ValueError, match="^coils"):
        coils.compression_from_gram(coils.coil_gram(torch.from_numpy(calib)), 7)


def test_coil_compression_of_slices():
    from mrirecon.data.coil_compression import CoilCompression

    s = _slice()
    cc = CoilCompression(3, "slice", 12)
    out = cc.apply(s, 0)
    matrix = coils.compression_from_gram(coils.coil_gram(coils.calibration_region(torch.from_numpy(s.ksp), 12)), 3)[0]
    m = matrix.numpy()
    assert out.ksp.shape == (3, 32, 24) and np.allclose(out.ksp, np.einsum("cn,cxy->nxy", m.conj(), s.ksp), atol=1e-5)
    assert np.allclose(out.maps, np.einsum("cn,cxy->nxy", m.conj(), s.maps), atol=1e-6)
    assert out.img is s.img and out.noise_std == 0.1
    # the SENSE model holds for the virtual coils, and white noise stays white
    from mrirecon.data.transforms import fft2c_numpy

    assert np.allclose(out.ksp, fft2c_numpy(out.maps * s.img), atol=1e-4 * np.abs(out.ksp).max())
    z = np.random.default_rng(0).standard_normal((6, 20000)) + 1j * np.random.default_rng(1).standard_normal((6, 20000))
    w = m.conj().T @ z
    assert np.allclose(w @ w.conj().T / 20000, 2 * np.eye(3), atol=0.1)
    full = CoilCompression(6, "slice", 12).apply(s, 0)
    assert np.isclose(np.linalg.norm(full.ksp), np.linalg.norm(s.ksp), rtol=1e-5)  # N = C: unitary
    assert 0.5 < cc.energy[0] <= 1


def test_coil_compression_per_volume_shares_the_matrix():
    from mrirecon.data.coil_compression import CoilCompression

    slices = [_slice(seed) for seed in range(4)]
    subjects = np.array([0, 0, 1, 1])
    cc = CoilCompression(2, "volume", 12)
    cc.fit_volumes(lambda i: slices[i].ksp, subjects)
    grams = [coils.coil_gram(coils.calibration_region(torch.from_numpy(s.ksp), 12)) for s in slices]
    expected = coils.compression_from_gram(grams[0] + grams[1], 2)[0].numpy()
    out = cc.apply(slices[1], 0)
    assert np.allclose(out.ksp, np.einsum("cn,cxy->nxy", expected.conj(), slices[1].ksp), atol=1e-5)
    assert not np.allclose(cc.apply(slices[2], 1).ksp, np.einsum("cn,cxy->nxy", expected.conj(), slices[2].ksp))
    with pytest.raises(ValueError, match="^mode"):
        CoilCompression(2, "file", 12)


@pytest.mark.slow
def test_preprocess_with_coil_compression(tmp_path):
    from helpers import run_cli

    from mrirecon.data.h5 import DeepInPyFile

    res = run_cli("preprocess", "data=quarter", "data.coils=3", "data.path=cc.h5", "hydra.run.dir=pre", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    f = DeepInPyFile(tmp_path / "cc.h5")
    assert f.num_coils == 3 and f.attrs["coils_acquired"] == 8 and "8 -> 3" in f.attrs["coil_compression"]
    assert 0.8 < f.attrs["coil_compression_energy_mean"] <= 1
    bad = run_cli("preprocess", "data=quarter", "data.coils=9", "data.path=bad.h5", cwd=tmp_path)
    assert bad.returncode == 2 and "data.coils" in bad.stderr and not (tmp_path / "bad.h5").exists()
