"""E2E-VarNet (method=varnet) and its networks: fastMRI's NormUnet and coil-map network
(shapes, normalisation, maps of unit root sum of squares, the weight count of fastMRI's defaults),
the soft data-consistency step, the image it is compared with, end-to-end training of the
cascades and the coil-map network (the CLI path: tests/test_configs.py, tests/test_keys.py; its
numbers on the sample: docs/results.md)."""

from __future__ import annotations

import pytest
import torch
from registered import trainable
from tiny_training import tiny_batch
from torch import nn

from mrirecon.methods import build_method
from mrirecon.methods.varnet import VarNet
from mrirecon.nets import build_net, is_image_map
from mrirecon.nets.varnet import NormUnet, SensitivityNet, VarNetNets
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


def unet_weights(chans: int, pools: int) -> int:
    """fastMRI's U-Net weight count, 2 channels in and out (tests/methods/test_direct.py's formula)."""
    widths = [chans * 2**i for i in range(pools + 1)]
    count = 9 * (2 * widths[0] + widths[0] ** 2)
    count += sum(9 * (widths[i] * widths[i + 1] + widths[i + 1] ** 2) for i in range(pools))
    count += sum(4 * widths[i + 1] * widths[i] + 9 * (2 * widths[i] * widths[i] + widths[i] ** 2) for i in range(pools))
    return count + widths[0] * 2 + 2


@pytest.mark.parametrize("shape", [(32, 24), (21, 13), (80, 64)])
def test_norm_unet_keeps_any_size_and_follows_an_affine_change_of_its_input(shape):
    """fastMRI's per-image normalisation of each channel: N(a x + b) = a N(x) + b for a > 0 and a
    constant b per channel (what makes the cascades independent of the data's units)."""
    torch.manual_seed(0)
    net = NormUnet(4, 2).eval()
    x = torch.randn(2, 2, *shape)
    out = net(x)
    assert out.shape == x.shape
    b = torch.tensor([0.3, -2.0]).view(1, 2, 1, 1)
    torch.testing.assert_close(net(7.0 * x + b), 7.0 * out + b, rtol=1e-4, atol=1e-4)


def test_coil_maps_have_unit_root_sum_of_squares_and_coils_are_mapped_alone():
    torch.manual_seed(0)
    net = SensitivityNet(4, 2).eval()
    coils = torch.randn(2, 5, 2, 24, 20)
    maps = net(coils)
    assert maps.shape == coils.shape
    torch.testing.assert_close(maps.pow(2).sum(dim=(1, 2)), torch.ones(2, 24, 20))
    other = coils.clone()
    other[:, 1:] = torch.randn_like(other[:, 1:])  # coil 0 the same: its map changes by its RSS only
    raw, raw_other = net.norm_unet(coils[:, 0]), net.norm_unet(other[:, 0])
    torch.testing.assert_close(raw, raw_other)


def test_fastmri_defaults_have_fastmri_varnets_weights():
    nets = build_net({"name": "varnet"})
    assert isinstance(nets, VarNetNets) and len(nets.cascades) == 12
    count = sum(p.numel() for p in nets.parameters())
    assert count == 12 * unet_weights(18, 4) + unet_weights(8, 4)  # 29,936,942 (the method adds 12 DC weights)
    assert not is_image_map("varnet") and is_image_map("fastmri_unet")  # dbp / unet_image cannot take it


@pytest.mark.parametrize("key", ["num_cascades", "sens_chans", "sens_pools"])
def test_bad_sizes_are_refused_by_name(key):
    with pytest.raises(ValueError, match=f"^{key}: 0 must be an integer >= 1"):
        VarNetNets(**{key: 0})
