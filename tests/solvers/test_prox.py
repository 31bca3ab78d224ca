"""Proximal maps and projections (solvers/prox.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import crandn

from mrirecon.physics.wavelet import Wavelet
from mrirecon.solvers.prox import project_ball, project_isotropic, soft_threshold, wavelet_shrinkage


def test_soft_threshold():
    c = torch.tensor([3 + 4j, 0.1 + 0j, 0j], dtype=torch.complex64)
    out = soft_threshold(c, 1.0)
    assert torch.allclose(out, torch.tensor([2.4 + 3.2j, 0, 0], dtype=torch.complex64))


@pytest.mark.parametrize("shape", [(32, 24), (33, 25)])
def test_wavelet_shrinkage_is_the_prox(shape):
    """W^H soft(W x) minimises t ||W v||_1 (detail bands) + 0.5 ||v - x||^2: no random nearby
    point does better (exact for sides divisible by 2^levels); threshold 0 gives x back."""
    w = Wavelet(shape, "db4", 2)
    x = crandn(2, *shape)
    assert torch.allclose(wavelet_shrinkage(w, x, 0.0), x, atol=1e-5)
    if shape[0] % 4 or shape[1] % 4:
        return  # odd bands are zero-padded: an isometry, the prox is then approximate
    t = 0.3
    v = wavelet_shrinkage(w, x, t)
    norm = lambda u: w(u)[:, w.approximation_size :].abs().sum(1)  # noqa: E731
    obj = lambda u: t * norm(u) + 0.5 * (u - x).abs().pow(2).flatten(1).sum(1)  # noqa: E731
    for seed in range(5):
        assert torch.all(obj(v) <= obj(v + 0.01 * crandn(2, *shape, seed=seed)) + 1e-5)
    assert float(norm(v).sum()) < float(norm(x).sum())


def test_wavelet_shrinkage_per_slice_threshold_and_approximation_band():
    """A (B, 1, 1) threshold shrinks each slice by its own; the approximation band is kept."""
    w = Wavelet((16, 16), "haar", 2)
    x = crandn(2, 16, 16)
    out = wavelet_shrinkage(w, x, torch.tensor([0.0, 1e6]).reshape(-1, 1, 1))
    assert torch.allclose(out[0], x[0], atol=1e-5)
    coeffs = w(out[1:])
    assert torch.allclose(coeffs[:, : w.approximation_size], w(x[1:])[:, : w.approximation_size], atol=1e-5)
    assert float(coeffs[:, w.approximation_size :].abs().max()) < 1e-5


def test_project_isotropic():
    g = crandn(2, 2, 9, 7, seed=1)
    q = project_isotropic(g, 0.5)
    assert float(q.abs().pow(2).sum(1).sqrt().max()) <= 0.5 + 1e-6
    small = 0.01 * g
    assert torch.equal(project_isotropic(small, 10.0), small)


def test_project_ball():
    v = crandn(2, 3, 4)
    norms = v.abs().pow(2).flatten(1).sum(1).sqrt()
    radius = torch.stack([norms[0] / 2, norms[1] * 2])
    out = project_ball(v, radius)
    assert float(out[0].abs().pow(2).sum().sqrt()) == pytest.approx(float(radius[0]), rel=1e-5)
    assert torch.equal(out[1], v[1])
