"""Coil maps and virtual coils (physics/coils.py): torch ESPIRiT against sigpy, coil compression."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mrirecon.physics import coils

BRAIN = Path(__file__).parent / "data" / "brain_8coil_ksp_poisson8x.npy"


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
