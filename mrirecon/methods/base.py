"""The method interface and the registry that maps a config's `method.name` to a class.

A method is one module in this package (or in an external plug-in, mrirecon/registry.py) with
a class decorated by `@register("<name>")`, plus its config `conf/method/<name>.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch

from mrirecon.arguments import check_arguments
from mrirecon.physics.sense import SenseOperator
from mrirecon.registry import Registry

AUTO = "auto"


class Method:
    """A reconstruction method: measured k-space, its operator and its noise level -> image.

    Subclasses are built from the `method` config group (keyword arguments = its keys,
    except `name`) and implement `reconstruct`. Every method is equivariant to the data's
    units: reconstructing c * y (with noise c * sigma) gives c * x_hat for any c > 0. Each
    slice's result depends on that slice only, not on the others in its batch.
    """

    name: str = ""
    # the trainable family (mrirecon.training.trainables, by its kind) whose checkpoint the method needs,
    # or None (no checkpoint); set by the family's methods
    checkpoint_kind: str | None = None
    # the unit of a parameter whose quantity differs between methods of the same name (lam
    # weighs A^H A in cg_sense, max|A^H y| in compressed sensing): recorded in summary.json so
    # that evaluate never puts two units on one sweep axis or table column
    units: ClassVar[dict[str, str]] = {}
    # the config keys that a trained method (rebuilt from a checkpoint) takes anew at reconstruct
    # time (e.g. iteration counts); the others are fixed by its weights and their training
    inference_keys: ClassVar[tuple[str, ...]] = ()

    @property
    def chosen(self) -> dict[str, torch.Tensor | list[str]]:
        """Per-slice values of the settings this method chose from the data in its last
        `reconstruct` (e.g. lam: auto), for the run's summary: tensors (B,), or lists of B
        strings such as the rule that chose an auto weight; empty before the first call and for
        methods that choose nothing. Each instance has its own."""
        return self.__dict__.setdefault("_chosen", {})

    @chosen.setter
    def chosen(self, values: dict[str, torch.Tensor | list[str]]) -> None:
        self.__dict__["_chosen"] = values

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        """y (B, C, X, Y) masked centred k-space -> x_hat (B, X, Y) complex.

        noise_std (B,) is the noise standard deviation per k-space sample of each slice, already
        resolved (finite, in y's units, on y's device): methods use it and never estimate it.
        A caller that has only y resolves it with `physics.noise.resolve_noise_std(y, op.mask)`
        (the stored value where known, else the estimate), as reconstruct and training do.
        None: unknown, for settings that do not use it; a setting that does (e.g. lam: auto)
        refuses None (`known_noise_std`).
        """
        raise NotImplementedError

    def reconstruct_with_std(
        self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x_hat, std): the reconstruction (B, X, Y) complex as `reconstruct` gives it, and for a
        method that draws several images from a posterior the per-pixel standard deviation of its
        samples about x_hat (their mean), (B, X, Y) real, sqrt(mean_k |x_k - x_hat|^2); None for a
        method that gives one image. Sampling methods override this (and `reconstruct` returns
        its first element); reconstruct writes the std beside the image."""
        return self.reconstruct(y, op, noise_std), None


def known_noise_std(noise_std: torch.Tensor | None, needed_by: str) -> torch.Tensor:
    """noise_std (B,) itself; a ValueError naming `needed_by` (the setting that uses it) when None."""
    if noise_std is None:
        raise ValueError(
            f"noise_std: {needed_by} needs the noise std (B,) of the data; "
            "resolve it with mrirecon.physics.noise.resolve_noise_std(y, op.mask)"
        )
    return noise_std


def data_scale(y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
    """max |A^H y| of each slice (B,), floored to stay positive: the intensity scale of the
    measured data, used to make weights and learned methods independent of the data's units."""
    return op.adjoint(y).abs().flatten(1).amax(1).clamp_min(1e-30)


def to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex (B, X, Y) -> real (B, 2, X, Y) with real and imaginary parts as channels."""
    return torch.view_as_real(x).permute(0, 3, 1, 2)


def from_channels(t: torch.Tensor) -> torch.Tensor:
    """Real (B, 2, X, Y) -> complex (B, X, Y)."""
    return torch.view_as_complex(t.permute(0, 2, 3, 1).contiguous())


def auto_or_nonnegative(key: str, value: Any) -> str | float:
    """'auto' or a finite float >= 0 (ValueError naming `key` otherwise)."""
    if value == AUTO:
        return AUTO
    try:
        return check_nonnegative(key, value)
    except ValueError:
        raise ValueError(f"{key}: {value!r} must be 'auto' or a finite number >= 0") from None


M = TypeVar("M", bound=type[Method])
REGISTRY: Registry[type[Method]] = Registry("method", "mrirecon.methods")


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make a method available as `method=<name>`."""
    return REGISTRY.register(name, set_name=True)


def build_method(cfg: Mapping[str, Any], **components: Any) -> Method:
    """Instantiate the method named by cfg['name'] with the remaining keys and the keyword
    `components` (e.g. an unrolled method's `denoiser`, a flow prior's `flow` and `bits`) as
    arguments."""
    params = dict(cfg)
    name = params.pop("name", None)
    try:
        cls = REGISTRY.lookup(name)
    except ValueError as exc:
        raise ValueError(f"name: {exc}") from None
    check_arguments(cls, params, f"method {name}", components)
    return cls(**params, **components)


def check_positive_int(key: str, value: Any) -> int:
    """An integer >= 1 or a ValueError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}: {value!r} must be an integer >= 1")
    return value


def check_bool(key: str, value: Any) -> bool:
    """A bool or a ValueError naming `key`."""
    if not isinstance(value, bool):
        raise ValueError(f"{key}: {value!r} must be true or false")
    return value


def check_nonnegative(key: str, value: Any) -> float:
    """A finite float >= 0 or a ValueError naming `key`."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: {value!r} must be a number >= 0") from None
    if not v >= 0 or v == float("inf"):
        raise ValueError(f"{key}: {value!r} must be a finite number >= 0")
    return v
