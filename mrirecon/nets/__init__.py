"""Networks: image-to-image networks on real tensors (complex images as 2 channels).

They know nothing about k-space or physics. A network is one module in this package (or in an
external plug-in, mrirecon/registry.py) with its class decorated by `@register_net("<name>")`,
plus its config `conf/model/<name>.yaml`; `build_net` maps the `model` config group's `name` to
the class, the other keys being its keyword arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import nn

from mrirecon.arguments import check_arguments
from mrirecon.registry import Registry

N = TypeVar("N", bound=type[nn.Module])
NETS: Registry[type[nn.Module]] = Registry("denoiser", "mrirecon.nets")


def register_net(name: str) -> Callable[[N], N]:
    """Class decorator: make a network available as `model=<name>` (its config's `name`)."""

    def add(cls: N) -> N:
        NETS.add(name, cls)
        return cls

    return add


def build_net(cfg: Mapping[str, Any]) -> nn.Module:
    """Instantiate the network named by cfg['name'] with the remaining keys as arguments."""
    params = dict(cfg)
    name = params.pop("name", None)
    try:
        cls = NETS.lookup(name)
    except ValueError as exc:
        raise ValueError(f"name: {exc}") from None
    check_arguments(cls, params, f"network {name}")
    return cls(**params)
