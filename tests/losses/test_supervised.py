"""The supervised image loss of the unrolled methods: sum |x_hat - x|^2 / s^2 per slice, its
mean over the batch; the reference is what it reads, and it trains."""

from __future__ import annotations

import pytest
import torch
from tiny_training import small, tiny_batch

from mrirecon.losses.supervised import SquaredErrorLoss
from mrirecon.physics.sense import SenseOperator


def test_the_loss_is_the_scaled_squared_error_against_the_reference():
    batch = tiny_batch(n=3)
    method = lambda y, op, noise_std: op.adjoint(y)  # noqa: E731
    loss = SquaredErrorLoss()(method, batch, torch.Generator())
    x0 = SenseOperator(batch.maps, batch.mask).adjoint(batch.y)
    expected = ((x0 - batch.img).abs().pow(2).flatten(1).sum(1) / x0.abs().flatten(1).amax(1) ** 2).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert float(SquaredErrorLoss()(lambda y, op, s: batch.img, batch, torch.Generator())) == 0.0
    with pytest.raises(ValueError, match="^img: this batch holds no reference"):
        SquaredErrorLoss()(method, batch.replace(img=None), torch.Generator())


def test_the_loss_does_not_depend_on_the_units_of_the_data():
    """Each slice's error divided by s^2: c * ksp and c * img give the same loss."""
    batch = tiny_batch(n=2)
    method = lambda y, op, noise_std: 0.9 * op.adjoint(y)  # noqa: E731  equivariant, as every method
    scaled = batch.replace(ksp=batch.ksp * 40, img=batch.img * 40)
    a, b = (float(SquaredErrorLoss()(method, x, torch.Generator())) for x in (batch, scaled))
    assert a == pytest.approx(b, rel=1e-5) and a > 0


def test_overfit_one_slice():
    torch.manual_seed(0)
    method = small("modl", num_unrolls=2)
    batch = tiny_batch(n=1)
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = SquaredErrorLoss()(method, batch, torch.Generator())
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses
