"""Networks: image-to-image networks on real tensors (complex images as 2 channels), density
models over images (`DensityModel`: the flow prior), noise-conditioned denoisers (`ScoreModel`:
the diffusion prior), and sets of networks that one method composes (`NetworkSet`: E2E-VarNet's).

They know nothing about k-space or physics. A network is one module in this package (or in an
external plug-in, mrirecon/registry.py) with its class decorated by `@register_net("<name>")`,
plus its config `conf/model/<name>.yaml`; `build_net` maps the `model` config group's `name` to
the class, the other keys being its keyword arguments. A network made for one image size (its
constructor takes `shape`: AUTOMAP's dense layers, a flow) gets the size from the code that
builds it (`fixed_size`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from mrirecon.arguments import check_arguments, parameters
from mrirecon.registry import Registry

N = TypeVar("N", bound=type[nn.Module])
NETS: Registry[type[nn.Module]] = Registry("network", "mrirecon.nets")


class DensityModel(nn.Module):
    """Base of the networks that model a density over images (B, C, H, W), not an image-to-image
    map: images -> latents and back, and their log density."""

    dim: int  # C * H * W

    def log_prob(self, v: torch.Tensor) -> torch.Tensor:
        """Log density (nats) of images v (B, C, H, W) -> (B,)."""
        raise NotImplementedError


class NetworkSet(nn.Module):
    """Base of a set of networks that one method composes (E2E-VarNet's cascades and coil-map
    network), not an image-to-image map: only the family built for it trains it."""


class ScoreModel(nn.Module):
    """Base of the noise-conditioned denoisers D(v, sigma) ~ E[v | v + sigma n] (a score model:
    the score of the noised image density is (D(v, sigma) - v) / sigma^2), over complex images as
    2 channels (B, 2, H, W) and noise levels sigma (B,), trained on [sigma_min, sigma_max]."""

    sigma_min: float
    sigma_max: float

    def forward(self, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Denoised images (B, 2, H, W) of noisy images v (B, 2, H, W) at noise levels sigma (B,)."""
        raise NotImplementedError


def register_net(name: str) -> Callable[[N], N]:
    """Class decorator: make a network available as `model=<name>` (its config's `name`)."""
    return NETS.register(name)


def _lookup(name: object) -> type[nn.Module]:
    try:
        return NETS.lookup(name)
    except ValueError as exc:
        raise ValueError(f"name: {exc}") from None


def fixed_size(name: object) -> bool:
    """Whether the network `name` is made for one image size (its constructor takes `shape`)."""
    return "shape" in parameters(_lookup(name))


def is_density(name: object) -> bool:
    """Whether the network `name` is a density model (`DensityModel`), not an image-to-image map."""
    return name in NETS and issubclass(NETS[str(name)], DensityModel)


def is_image_map(name: object) -> bool:
    """Whether the network `name` maps images to images (neither a density model, a score
    model nor a `NetworkSet`): what the unrolled and direct methods take."""
    return name in NETS and not issubclass(NETS[str(name)], (DensityModel, ScoreModel, NetworkSet))


def is_score(name: object) -> bool:
    """Whether the network `name` is a noise-conditioned denoiser (`ScoreModel`)."""
    return name in NETS and issubclass(NETS[str(name)], ScoreModel)


def is_prior(name: object) -> bool:
    """Whether the network `name` models images alone (a density or score model), not a map
    that an unrolled or direct method runs."""
    return is_density(name) or is_score(name)


def build_net(cfg: Mapping[str, Any], shape: tuple[int, ...] | None = None) -> nn.Module:
    """Instantiate the network named by cfg['name'] with the remaining keys as arguments; one made
    for one image size (`fixed_size`) gets `shape` (its own convention: (X, Y) for AUTOMAP,
    (C, H, W) for a flow), which must then be given (ValueError otherwise)."""
    params = dict(cfg)
    name = params.pop("name", None)
    cls = _lookup(name)
    sized = fixed_size(name)
    if sized and shape is None:
        raise ValueError(f"shape: network {name} is made for one image size, and none was given")
    check_arguments(cls, params, f"network {name}", ("shape",) if sized else ())
    return cls(**params, **({"shape": tuple(shape)} if sized and shape is not None else {}))
