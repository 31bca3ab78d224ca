"""SSDU's split loss: the split of the measured samples, the loss on the held-out rest only, and
DeepInPy's loss on every measured sample at holdout 0."""

from __future__ import annotations

import pytest
import torch
from tiny_training import small, tiny_batch

from mrirecon.losses.ssdu import SplitLoss, split_mask
from mrirecon.physics.sense import SenseOperator


def test_holdout_splits_measured_samples():
    mask = tiny_batch().mask
    inp, held = split_mask(mask, 0.4, torch.Generator().manual_seed(0))
    assert torch.equal(inp + held, mask) and float((inp * held).sum()) == 0
    assert 0.3 < float(held.sum() / mask.sum()) < 0.5
    inp, held = split_mask(mask, 0.9, torch.Generator().manual_seed(0), keep_center=0.25)
    assert torch.equal(inp + held, mask)
    assert float(held[:, 12:20, 9:15].sum()) == 0 and float(held.sum()) > 0  # centre 8x6 of 32x24 kept


def test_the_loss_is_the_error_on_the_held_out_samples_of_the_input_without_them():
    """The method sees the measured samples outside the held-out mask M_h, and the loss is
    mean ||M_h (A x_hat - y)||^2 / s^2: computed here by hand from the same draw."""
    batch = tiny_batch(n=2).replace(img=None)
    seen = []

    def method(y, op, noise_std):
        seen.append(y.clone())
        return op.adjoint(y) * 1.1

    loss = SplitLoss(holdout=0.4, holdout_center=0.1)(method, batch, torch.Generator().manual_seed(5))
    inp, held = split_mask(batch.mask, 0.4, torch.Generator().manual_seed(5), 0.1)
    (y_in,) = seen
    assert torch.equal(y_in, batch.ksp * inp.unsqueeze(1)) and float((held * batch.mask).sum()) > 0
    x_hat = SenseOperator(batch.maps, inp).adjoint(y_in) * 1.1
    scale = SenseOperator(batch.maps, inp).adjoint(y_in).abs().flatten(1).amax(1)
    error = (SenseOperator(batch.maps, held).forward(x_hat) - batch.ksp * held.unsqueeze(1)).abs().pow(2)
    assert float(loss) == pytest.approx(float((error.flatten(1).sum(1) / scale**2).mean()), rel=1e-5)


def test_holdout_zero_is_the_loss_on_every_measured_sample_and_draws_nothing():
    batch = tiny_batch(n=2).replace(img=None)
    method = lambda y, op, noise_std: op.adjoint(y)  # noqa: E731  A^H y: its residual is not 0
    generator = torch.Generator().manual_seed(0)
    loss = SplitLoss(holdout=0.0, holdout_center=0.0)(method, batch, generator)
    op = SenseOperator(batch.maps, batch.mask)
    residual = (op.forward(op.adjoint(batch.y)) - batch.y).abs().pow(2).flatten(1).sum(1)
    scale = op.adjoint(batch.y).abs().flatten(1).amax(1)
    assert float(loss) == pytest.approx(float((residual / scale**2).mean()), rel=1e-5)
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())


@pytest.mark.parametrize("key, value", [("holdout", 1.0), ("holdout", -0.1), ("holdout_center", 1), ("holdout", "a")])
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"^{key}: "):
        SplitLoss(**{key: value})


def test_overfit_one_slice_without_its_reference():
    torch.manual_seed(0)
    method = small("modl", num_unrolls=2)
    batch = tiny_batch(n=1).replace(img=None)
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = SplitLoss(0.3, 0.0)(method, batch, torch.Generator().manual_seed(0))  # a fixed split
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses
