"""E2E-VarNet (method=varnet): the soft data-consistency step, the image it is compared with,
end-to-end training of the cascades and the coil-map network (the CLI path: tests/test_configs.py,
tests/test_keys.py; its numbers on the sample: docs/results.md)."""

from __future__ import annotations

import pytest
import torch
from registered import trainable
from tiny_training import tiny_batch
from torch import nn

from mrirecon.methods import build_method
from mrirecon.methods.varnet import VarNet
from mrirecon.nets import build_net
from mrirecon.physics.sense import SenseOperator

SMALL_NETS = {"name": "varnet", "num_cascades": 2, "chans": 4, "num_pools": 2, "sens_chans": 4, "sens_pools": 2}


class Zero(nn.Module):
    """A refinement that adds nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def varnet(rss: bool = False, refine: bool = True) -> VarNet:
    torch.manual_seed(0)
    method = build_method({"name": "varnet", "rss": rss}, net=build_net(SMALL_NETS))
    assert isinstance(method, VarNet)
    if not refine:
        method.nets.cascades = nn.ModuleList(Zero() for _ in method.nets.cascades)
    return method.eval()


def test_the_soft_data_consistency_step_pulls_measured_samples_towards_y_by_eta():
    batch = tiny_batch(2, (32, 24))
    method = varnet(refine=False)
    y, mask = batch.y, batch.mask.unsqueeze(1)
    k = torch.randn_like(y)
    maps = batch.maps
    with torch.no_grad():
        method.eta.fill_(1.0)
        step = method.cascade(0, k, y, mask, maps)
        torch.testing.assert_close(step, torch.where(mask > 0, y, k))  # eta 1: measured samples replaced
        method.eta.fill_(0.25)
        step = method.cascade(0, k, y, mask, maps)
    torch.testing.assert_close(step, k - 0.25 * mask * (k - y))


@pytest.mark.parametrize("rss", [False, True])
def test_fully_sampled_data_without_refinement_give_the_reference(rss):
    """sense: S^H F^H k with the data's maps is the reference; rss: its magnitude where
    sum_c |S_c|^2 = 1 (what the metrics compare)."""
    batch = tiny_batch(2, (32, 24))
    full = torch.ones_like(batch.mask)
    op = SenseOperator(batch.maps, full)
    with torch.no_grad():
        x = varnet(rss=rss, refine=False).reconstruct(batch.ksp, op)
    expected = batch.img.abs().to(x.dtype) if rss else batch.img
    torch.testing.assert_close(x, expected, rtol=1e-4, atol=1e-4)


def test_a_cpu_training_step_lowers_the_loss_and_trains_the_coil_map_network():
    torch.manual_seed(0)
    model = trainable("varnet", "varnet_small", (16, 16), keys={})  # the small config as shipped
    batch = tiny_batch(2, (16, 16), seed=1)
    optimizer = torch.optim.Adam(model.module.parameters(), lr=1e-3)
    losses = []
    for step in range(20):
        optimizer.zero_grad()
        loss = model.loss(batch, torch.Generator().manual_seed(step))
        loss.backward()
        if step == 0:
            grads = [p.grad for p in model.module.nets.sensitivity.parameters()]
            assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)  # end to end
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_another_network_is_refused_by_name():
    with pytest.raises(ValueError, match="^net: E2E-VarNet needs its networks"):
        build_method({"name": "varnet"}, net=build_net({"name": "fastmri_unet"}))
