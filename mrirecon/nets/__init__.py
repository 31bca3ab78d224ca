"""Networks: image-to-image networks on real tensors (complex images as 2 channels).

They know nothing about k-space or physics. `build_net` maps the `model` config group's
`name` to a class, the other keys being its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from mrirecon.nets.fastmri_unet import FastMRIUNet
from mrirecon.nets.resnet import DeepInPyResNet, ResNet
from mrirecon.nets.unet import UNet

NETS: dict[str, type[nn.Module]] = {
    "resnet": ResNet,
    "resnet_deepinpy": DeepInPyResNet,
    "unet": UNet,
    "fastmri_unet": FastMRIUNet,
}


def build_net(cfg: Mapping[str, Any]) -> nn.Module:
    """Instantiate the network named by cfg['name'] with the remaining keys as arguments."""
    params = dict(cfg)
    name = params.pop("name", None)
    if name not in NETS:
        raise ValueError(f"name: unknown denoiser '{name}' (expected one of {', '.join(sorted(NETS))})")
    try:
        return NETS[name](**params)
    except TypeError as exc:
        raise TypeError(f"unknown or missing parameter of network '{name}' ({exc})") from None
