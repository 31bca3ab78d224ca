"""What `mrirecon train` fits and `reconstruct` rebuilds: the `Trainable` protocol (what the
Trainer trains: a module, its loss, validation and checkpoint entries, and the reconstruction
method it serves) and the `Family` protocol (the class that builds trainables from config or
from a checkpoint), with the registry of families keyed by the `kind` their checkpoints record.

A family's module (trainables/<family>.py, or an external plug-in: mrirecon/registry.py) is the
only code that names its kind: decorated by `@register_trainable`, its class is the family and
its instances the trainables. The methods it serves name it by `checkpoint_kind`.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from mrirecon.data.batch import Batch
from mrirecon.methods.base import Method
from mrirecon.registry import Registry
from mrirecon.training.trainables.sizing import LargeOnMeta, size_guard


class Trainable(Protocol):
    """A learned model and how to train it (what the Trainer needs, and reconstruct after it)."""

    @property
    def module(self) -> nn.Module:
        """The weights that are optimised and checkpointed."""

    @property
    def select(self) -> str:
        """The validation metric that picks best.pt (smaller is better; may depend on the loss)."""

    def describe(self) -> str:
        """One phrase for the log, e.g. 'dbp + resnet (loss sse)'."""

    def loss(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """The scalar training loss of a training batch (augmented here); `generator` (the step's
        own stream: seed, rank, step) is the source of its random draws."""

    def validate(self, batch: Batch) -> dict[str, float]:
        """Metrics 'val_*' of one validation batch (means over its slices)."""

    def images(self, batch: Batch) -> dict[str, np.ndarray]:
        """Images (H, W) in [0, 1] for TensorBoard, from the first validation batch."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Entries stored in every checkpoint: kind and this trainable's resolved configs."""

    def reconstructor(
        self, method: dict[str, Any], data_bits: int | None, amp: bool, given: Collection[str] = ()
    ) -> tuple[Method, dict[str, Any]]:
        """The reconstruction method `method` (plain config) using these weights, and the method
        config to record in the run's summary. `given` names the keys of `method` set on the
        command line (dotted): a family whose checkpoint holds the whole method applies those of
        its `inference_keys` and refuses the others that contradict the checkpoint (ValueError
        '<key>: ...'); a family whose checkpoint holds only a component applies every key."""


class Family(Protocol):
    """A trainable family: the class whose instances are its trainables."""

    kind: str  # recorded in checkpoints; the key of TRAINABLES
    amp_devices: tuple[str, ...]  # the devices on which its network runs under bf16 autocast (hardware.amp)

    def trains(self, method: str, model: str) -> bool:
        """Whether `mrirecon train method=<method> model=<model>` (model: a network's name) trains this family."""

    def reads(self, train: dict[str, Any], bits: int | None) -> frozenset[str]:
        """The config keys it reads with the settings `train` on data of bit depth `bits`, besides
        the loop's (tasks/settings.LOOP_KEYS): 'train.<key>', and 'method' / 'model' for the
        sections it reads whole; the task refuses the others set on the command line."""

    def check_bits(self, bits: int | None) -> None:
        """Raise ValueError('bits: ...') when the family cannot model data of this bit depth."""

    def from_config(
        self,
        method: dict[str, Any],
        model: dict[str, Any],
        train: dict[str, Any],
        *,
        shape: tuple[int, int],
        bits: int | None,
        seed: int,
        amp: bool,
    ) -> Trainable:
        """A fresh trainable from plain config sections, for images of `shape` and bit depth `bits`,
        `seed` seeding its validation (raises UserError naming the config key)."""

    def from_checkpoint(self, ckpt: dict[str, Any], method: str | None = None) -> Trainable:
        """The trained family from a checkpoint's own entries (raises ValueError); with `method`,
        a ValueError 'holds ...' unless the checkpoint serves `reconstruct method=<method>`."""

    def train_hint(self, method: str) -> str:
        """The `mrirecon train` arguments that make a checkpoint for `method`."""


T = TypeVar("T", bound=type)
TRAINABLES: Registry[Family] = Registry("trainable family", "mrirecon.training.trainables")


def register_trainable(cls: T) -> T:
    """Class decorator: make a trainable family known under its `kind`."""
    TRAINABLES.add(cls.kind, cls)  # type: ignore[attr-defined, arg-type]
    return cls


def family_for(method: str, model: str) -> Family | None:
    """The family that `mrirecon train method=<method> model=<model>` trains, or None."""
    for family in TRAINABLES.values():
        if family.trains(method, model):
            return family
    return None


def rebuild(ckpt: dict[str, Any], path: str | Path, kind: str, method: str) -> Trainable:
    """The trainable of family `kind` stored in checkpoint `path` (already loaded as `ckpt`, of
    this version's format) for `reconstruct method=<method>`; ValueError messages start with the
    path."""
    family = TRAINABLES[kind]
    if ckpt.get("kind") != kind:
        held = ckpt.get("method") or ckpt.get("kind") or "unknown"
        raise ValueError(f"{path} holds a '{held}' model, {_hint(family, method)}")
    try:
        dry_build(family, ckpt, path)
        with size_guard(_described(path, ckpt)):
            return family.from_checkpoint(ckpt, method)
    except Serves as exc:
        raise ValueError(f"{path} {exc}, {_hint(family, method)}") from None
    except (KeyError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]  # load_state_dict: 2nd says why
        first = " ".join(lines[:2])[:300] if lines else exc.__class__.__name__
        raise ValueError(f"{path} does not match its own config ({first})") from None
    except ValueError as exc:  # the builders' checks of the stored config ('channels: ...')
        raise ValueError(f"{path} holds a config that does not build ({exc})") from None


class Serves(ValueError):
    """A checkpoint that does not serve the method asked for: 'holds a ... model' (from_checkpoint)."""


def _hint(family: Family, method: str) -> str:
    return f"not one for method={method} (train one with 'mrirecon train {family.train_hint(method)}')"


def dry_build(family: Family, ckpt: dict[str, Any], path: str | Path) -> None:
    """Build the checkpoint's network with its large tensors on the meta device (`LargeOnMeta`:
    nothing large allocated) under the size guard: a config that describes a network too large
    for the memory available, or whose weights do not fit it (a shape mismatch), is refused
    before the real build allocates anything. A build that needs real values of a large
    tensor (an operation the meta device cannot run, or `.item()` of a meta tensor) is left to
    the real build, which runs under the same guard."""
    with size_guard(_described(path, ckpt)), warnings.catch_warnings(), LargeOnMeta():
        warnings.simplefilter("ignore")  # load_state_dict into meta tensors: 'a no-op'
        try:
            family.from_checkpoint(ckpt)
        except NotImplementedError:  # an operation without a meta kernel
            return
        except RuntimeError as exc:
            if "meta" not in str(exc):  # e.g. weights that do not fit the config
                raise


def _described(path: str | Path, ckpt: dict[str, Any]) -> str:
    """The checkpoint and the scalar entries of its network's config, for a size refusal."""
    config = ckpt.get("model_config") or ckpt.get("method_config") or {}
    shown = ", ".join(f"{k}={v}" for k, v in config.items() if isinstance(v, (int, float, str)))[:120]
    return f"checkpoint: {path}: its config ({shown})"
