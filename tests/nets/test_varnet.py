"""E2E-VarNet's networks (fastMRI's NormUnet and coil-map network): shapes, fastMRI's
normalisation, maps of unit root sum of squares, the weight count of fastMRI's defaults."""

from __future__ import annotations

import pytest
import torch

from mrirecon.nets import build_net, is_image_map
from mrirecon.nets.varnet import NormUnet, SensitivityNet, VarNetNets


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
