"""The diffusion prior's denoiser: shapes at any size, identity as the noise vanishes, checks."""

from __future__ import annotations

import pytest
import torch

from mrirecon.nets import build_net, is_prior, is_score
from mrirecon.training.trainables import TRAINABLES, family_for

TINY = {"name": "diffusion", "base_channels": 4, "depth": 2}


@pytest.mark.parametrize("shape", [(16, 16), (15, 22)])
def test_the_denoiser_keeps_the_shape_and_tends_to_the_identity(shape):
    torch.manual_seed(0)
    net = build_net(TINY)
    v = torch.randn(3, 2, *shape)
    out = net(v, torch.tensor([1e-6, 0.1, 1.0]))
    assert out.shape == v.shape
    assert torch.allclose(out[0], v[0], atol=1e-5)  # c_skip -> 1, c_out -> 0
    assert not torch.allclose(out[2], v[2], atol=1e-2)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="^sigma_min, sigma_max"):
        build_net({**TINY, "sigma_min": 1.0, "sigma_max": 0.1})
    with pytest.raises(ValueError, match="^depth"):
        build_net({**TINY, "depth": 0})


def test_the_diffusion_family_trains_it_and_no_unrolled_method_takes_it_as_denoiser():
    assert is_score("diffusion") and is_prior("diffusion") and not is_score("unet")
    assert family_for("dbp", "diffusion") is TRAINABLES["diffusion"]
    assert not TRAINABLES["unrolled"].trains("dbp", "diffusion")
