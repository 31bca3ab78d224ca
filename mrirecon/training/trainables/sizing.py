"""Building a network without allocating it, and stopping a build that outgrows the memory.

A checkpoint's config says which network to build; its weights are loaded afterwards. A config
that describes a huge network (a 60 KB file with `channels=6000`) would allocate gigabytes
before the weights are found not to fit. `LargeOnMeta` makes every large tensor of a build on
PyTorch's meta device (shapes only), and `size_guard` counts the bytes of every parameter and
buffer registered, stopping the build with one error line once they pass the memory allowance
(mrirecon/io/memory.py).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from mrirecon.errors import UserError
from mrirecon.io import memory

LARGE = 2**16  # elements: a factory-made tensor at least this large goes to the meta device
_FACTORIES = (torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn)


class LargeOnMeta(TorchFunctionMode):
    """Tensors of at least LARGE elements made by a factory function (torch.empty, zeros, ...)
    without a device are made on PyTorch's meta device: nothing allocated. Small ones stay
    real, so that code computing with them while it builds (index vectors, masks: nflows'
    couplings) runs as usual."""

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _FACTORIES and kwargs.get("device") is None and _elements(args, kwargs) >= LARGE:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _elements(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """The number of elements a factory call asks for (its size: one sequence or several ints)."""
    size = kwargs.get("size", args[0] if args and isinstance(args[0], (tuple, list, torch.Size)) else args)
    dims = [d for d in size if isinstance(d, int)] if isinstance(size, (tuple, list, torch.Size)) else []
    return math.prod(dims) if dims else 0


class _TooLarge(Exception):
    """Raised inside a build: the registered tensors passed the allowance."""


@contextlib.contextmanager
def size_guard(what: str) -> Iterator[None]:
    """Count the bytes of every parameter and buffer registered inside the block (real or meta)
    and stop the block with a UserError ('{what} describes a network of more than N weights
    ...') once they pass MARGIN of the available memory."""
    allowance = memory.MARGIN * memory.available_bytes()
    registered = [0, 0]  # elements, bytes

    def count(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        if tensor is not None:
            registered[0] += tensor.numel()
            registered[1] += tensor.numel() * tensor.element_size()
            if registered[1] > allowance:
                raise _TooLarge

    hooks = [
        torch.nn.modules.module.register_module_parameter_registration_hook(count),
        torch.nn.modules.module.register_module_buffer_registration_hook(count),
    ]
    try:
        yield
    except _TooLarge:
        raise UserError(
            f"{what} describes a network of more than {registered[0]:,} weights ({memory.size_text(registered[1])}), "
            f"more than half of the {memory.size_text(allowance / memory.MARGIN)} of memory available "
            "(mrirecon/io/memory.py)"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
