"""Property tests of the centred FFT and the SENSE operator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import centred_dft_matrix, crandn, dft2c, random_operator

from mrirecon.physics.fft import FFT, fft2c, ifft2c
from mrirecon.physics.sense import CoilMaps, Mask, SenseOperator

SHAPES = [(32, 24), (33, 25), (16, 15), (80, 64)]  # even sizes fold the shifts, odd ones do not


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().norm() / b.abs().norm())


def inner(a: torch.Tensor, b: torch.Tensor) -> complex:
    return complex((a.conj() * b).sum())


@pytest.mark.parametrize("shape", SHAPES)
def test_fft2c_matches_the_dft_definition(shape):
    """Against explicit centred DFT matrices (tests/helpers.py: no FFT, no shifts)."""
    x = crandn(3, *shape)
    expected = dft2c(x.numpy())
    assert np.abs(fft2c(x).numpy() - expected).max() < 1e-5 * np.abs(expected).max()
    assert rel(ifft2c(fft2c(x)), x) < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_fft2c_of_a_shifted_point_is_a_phase_ramp(shape):
    """Analytic: a unit point at (X//2 + a, Y//2 + b) transforms to
    exp(-2 pi i (kx a / X + ky b / Y)) / sqrt(X Y), kx, ky counted from the centre sample."""
    (x, y), (a, b) = shape, (3, -2)
    point = torch.zeros(shape, dtype=torch.complex64)
    point[x // 2 + a, y // 2 + b] = 1
    kx = (np.arange(x) - x // 2)[:, None]
    ky = (np.arange(y) - y // 2)[None, :]
    ramp = np.exp(-2j * np.pi * (kx * a / x + ky * b / y)) / np.sqrt(x * y)
    assert np.abs(fft2c(point).numpy() - ramp).max() < 1e-6
    assert np.abs(ifft2c(torch.from_numpy(ramp.astype(np.complex64))).numpy() - point.numpy()).max() < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_fft2c_is_orthonormal_and_centred(shape):
    x = crandn(2, *shape)
    assert abs(float(fft2c(x).abs().norm()) - float(x.abs().norm())) < 1e-4 * float(x.abs().norm())
    ones = torch.ones(shape, dtype=torch.complex64)
    k = fft2c(ones)  # all energy at the centre sample (X//2, Y//2)
    assert torch.argmax(k.abs()).item() == (shape[0] // 2) * shape[1] + shape[1] // 2


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shared_mask", [False, True])
def test_sense_adjointness(shape, shared_mask):
    op, _, _ = random_operator(3, 4, shape, shared_mask)
    x, y = crandn(3, *shape, seed=5), crandn(3, 4, *shape, seed=6)
    lhs, rhs = inner(op.forward(x), y), inner(x, op.adjoint(y))
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


@pytest.mark.parametrize("shape", SHAPES)
def test_sense_matches_explicit_definition(shape):
    """A x = M F (S x) and A^H y = sum_c conj(S_c) F^H (M y_c), with F the explicit centred DFT
    matrices (NumPy, complex128), not the code's FFT."""
    op, maps, mask = random_operator(2, 3, shape)
    x = crandn(2, *shape, seed=3)
    m, s = mask.numpy()[:, None], maps.numpy()
    expected = m * dft2c(s * x.numpy()[:, None])
    assert rel(op.forward(x), torch.from_numpy(expected)) < 1e-5
    y = crandn(2, 3, *shape, seed=4)
    fx, fy = (centred_dft_matrix(n) for n in shape)
    expected_adj = (np.conj(s) * (fx.conj().T @ (m * y.numpy()) @ fy.conj())).sum(1)  # F^H along each axis
    assert rel(op.adjoint(y), torch.from_numpy(expected_adj)) < 1e-5
    assert rel(op.maps, maps) < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("shared_mask", [False, True])
def test_sense_equals_mask_fft_coil_maps(shape, shared_mask):
    """The fused operator (shifts folded into maps and mask for even sizes) is M @ F @ S."""
    op, maps, mask = random_operator(2, 3, shape, shared_mask)
    composed = Mask(mask[0] if shared_mask else mask) @ FFT() @ CoilMaps(maps)
    x, y = crandn(2, *shape, seed=3), crandn(2, 3, *shape, seed=4)
    assert rel(op.forward(x), composed.forward(x)) < 1e-6
    assert rel(op.adjoint(y), composed.adjoint(y)) < 1e-6
    assert rel(op.normal(x), composed.normal(x)) < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
def test_normal_operator_is_hermitian_psd_and_consistent(shape):
    op, _, _ = random_operator(2, 4, shape)
    x, z = crandn(2, *shape, seed=7), crandn(2, *shape, seed=8)
    assert rel(op.normal(x), op.adjoint(op.forward(x))) < 1e-5
    a, b = inner(op.normal(x), z), inner(x, op.normal(z))
    assert abs(a - b) / abs(a) < 1e-5
    for v in (x, z, crandn(2, *shape, seed=9)):
        assert inner(v, op.normal(v)).real >= -1e-5
    # with sum |S|^2 = 1 and a full mask, A^H A is the identity
    full = SenseOperator(op.maps, torch.ones(shape))
    assert rel(full.normal(x), x) < 1e-5


def test_shapes_broadcast_over_batch():
    op, _, _ = random_operator(5, 2, (16, 12), shared_mask=True)
    x = crandn(5, 16, 12)
    assert op.forward(x).shape == (5, 2, 16, 12)
    assert op.adjoint(op.forward(x)).shape == (5, 16, 12)
    assert op.normal(x).dtype == torch.complex64
    # each batch element is independent: operating on one slice alone gives the same result
    single = SenseOperator(op.maps[1:2], torch.ones(16, 12) * op.mask[0, 0])
    assert rel(single.normal(x[1:2]), op.normal(x)[1:2]) < 1e-6


@pytest.mark.parametrize("shape", [(8, 6), (7, 5)])  # shifts folded into maps and mask, and not
def test_gradients_through_the_operator(shape):
    """The gradient of ||A^H A x||^2 is 2 (A^H A)^2 x (torch's convention for complex inputs),
    and gradcheck passes for A and A^H in complex128."""
    op, _, _ = random_operator(2, 3, shape)
    x = crandn(2, *shape).requires_grad_(True)
    op.normal(x).abs().pow(2).sum().backward()
    assert rel(x.grad, 2 * op.normal(op.normal(x.detach()))) < 1e-5
    double = SenseOperator(op.maps.to(torch.complex128), op.mask[:, 0].double())
    x64 = crandn(2, *shape).to(torch.complex128).requires_grad_(True)
    y64 = double.forward(x64.detach()).requires_grad_(True)
    assert torch.autograd.gradcheck(double.forward, (x64,), fast_mode=True)
    assert torch.autograd.gradcheck(double.adjoint, (y64,), fast_mode=True)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        SenseOperator(crandn(2, 16, 12), torch.ones(16, 12))
    with pytest.raises(ValueError):
        SenseOperator(crandn(1, 2, 16, 12), torch.ones(16, 10))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sense_on_cuda_matches_cpu():
    op, maps, mask = random_operator(2, 3, (32, 24))
    x = crandn(2, 32, 24)
    gpu = SenseOperator(maps.cuda(), mask.cuda())
    assert rel(gpu.normal(x.cuda()).cpu(), op.normal(x)) < 1e-5
