"""The wavelet operator (physics/wavelet.py): its coefficient layout and orthogonality (the
adjoint and normal are checked with every operator in test_operators.py)."""

from __future__ import annotations

import warnings

import ptwt
import pytest
import torch
from helpers import crandn

from mrirecon.physics.wavelet import Wavelet, check_wavelet


@pytest.mark.parametrize("shape", [(32, 24), (33, 25)])
def test_coefficients_are_ptwts_bands_in_order(shape):
    """W x is ptwt's decomposition of the real and imaginary parts, the approximation band first
    and the details from coarse to fine, flattened."""
    w = Wavelet(shape, "db4", 2)
    x = crandn(2, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        re, im = (ptwt.MatrixWavedec2("db4", 2, orthogonalization="qr")(part) for part in (x.real, x.imag))
    bands = [torch.complex(a, b).flatten(1) for a, b in zip([re[0], *sum(re[1:], ())], [im[0], *sum(im[1:], ())])]
    assert torch.allclose(w(x), torch.cat(bands, dim=1), atol=1e-6)
    assert w.approximation_size == re[0][0].numel()


@pytest.mark.parametrize("shape", [(32, 24), (33, 25)])
def test_orthogonal_or_an_isometry(shape):
    """||W x|| = ||x|| and W^H W = I; W W^H = I too when the sides divide by 2^levels (no padding)."""
    w = Wavelet(shape, "db4", 2)
    x = crandn(2, *shape)
    c = w(x)
    assert float(c.abs().norm()) == pytest.approx(float(x.abs().norm()), rel=1e-5)
    assert torch.allclose(w.adjoint(c), x, atol=1e-5)
    padded = shape[0] % 4 or shape[1] % 4
    assert (c.shape[1] > shape[0] * shape[1]) == bool(padded)
    if not padded:
        u = crandn(*c.shape, seed=1)
        assert torch.allclose(w(w.adjoint(u)), u, atol=1e-5)


def test_rejects_a_wrong_size_and_an_unknown_wavelet():
    with pytest.raises(ValueError, match="image size"):
        Wavelet((16, 16), "haar", 2)(crandn(1, 16, 12))
    with pytest.raises(ValueError):
        check_wavelet("nonsense")
