"""The direct methods' supervised losses: l1 and mse per pixel of the image divided by s."""

from __future__ import annotations

import pytest
import torch
from tiny_training import tiny_batch

from mrirecon.losses.pixelwise import L1Loss, MSELoss
from mrirecon.physics.sense import SenseOperator


@pytest.mark.parametrize("loss, power", [(L1Loss(), 1), (MSELoss(), 2)])
def test_the_losses_are_per_pixel_means_of_the_scaled_error(loss, power):
    batch = tiny_batch(n=3)
    method = lambda y, op, noise_std: op.adjoint(y)  # noqa: E731
    x0 = SenseOperator(batch.maps, batch.mask).adjoint(batch.y)
    scale = x0.abs().flatten(1).amax(1).reshape(-1, 1, 1)
    expected = ((x0 - batch.img).abs() / scale).pow(power).mean()
    assert float(loss(method, batch, torch.Generator())) == pytest.approx(float(expected), rel=1e-5)
    scaled = batch.replace(ksp=batch.ksp * 7, img=batch.img * 7)
    assert float(loss(method, scaled, torch.Generator())) == pytest.approx(float(expected), rel=1e-5)


def test_l1_and_mse_differ_and_vanish_at_the_reference():
    batch = tiny_batch(n=2)
    method = lambda y, op, noise_std: op.adjoint(y)  # noqa: E731
    assert float(L1Loss()(method, batch, torch.Generator())) != float(MSELoss()(method, batch, torch.Generator()))
    for loss in (L1Loss(), MSELoss()):
        assert float(loss(lambda y, op, s: batch.img, batch, torch.Generator())) == 0.0
