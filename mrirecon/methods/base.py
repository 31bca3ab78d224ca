"""The method interface and the registry that maps a config's `method.name` to a class."""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

import torch

from mrirecon.errors import UserError
from mrirecon.physics.sense import SenseOperator


class Method:
    """A reconstruction method: measured k-space and its operator -> image.

    Subclasses are built from the `method` config group (keyword arguments = its keys,
    except `name`) and implement `reconstruct`.
    """

    name: str = ""
    # the checkpoint a method needs: 'unrolled' (trained by `mrirecon train method=<name>`),
    # 'flow' (a prior from `mrirecon train model=flow`), or None (no checkpoint)
    checkpoint_kind: str | None = None

    def reconstruct(self, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        """y (B, C, X, Y) masked centred k-space -> x_hat (B, X, Y) complex."""
        raise NotImplementedError


M = TypeVar("M", bound=type[Method])
REGISTRY: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make a method available as `method=<name>`."""

    def add(cls: M) -> M:
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


def build_method(cfg: Mapping[str, Any], **components: Any) -> Method:
    """Instantiate the method named by cfg['name'] with the remaining keys and the keyword
    `components` (e.g. an unrolled method's `denoiser`, a flow prior's `flow` and `bits`) as
    arguments."""
    params = dict(cfg)
    name = params.pop("name", None)
    if name not in REGISTRY:
        raise UserError(f"method.name: unknown method '{name}' (expected one of {', '.join(sorted(REGISTRY))})")
    params.update(components)
    try:
        return REGISTRY[name](**params)
    except TypeError as exc:
        raise UserError(f"method={name}: {exc}") from None


def check_positive_int(key: str, value: Any) -> int:
    """An integer >= 1 or a UserError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{key}: {value!r} must be an integer >= 1")
    return value


def check_nonnegative(key: str, value: Any) -> float:
    """A finite float >= 0 or a UserError naming `key`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{key}: {value!r} must be a number >= 0") from None
    if not v >= 0 or v == float("inf"):
        raise UserError(f"{key}: {value!r} must be a finite number >= 0")
    return v
