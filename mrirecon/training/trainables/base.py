"""The `Trainable` protocol (what `mrirecon train` fits and `reconstruct` rebuilds) and the
registry of trainable families, keyed by the `kind` their checkpoints record.

A family's module (trainables/<family>.py, or an external plug-in: mrirecon/registry.py) is the
only code that names its kind: decorated by `@register_trainable`, it builds the trainable from
the `method`, `model` and `train` config sections, defines its loss, validation and checkpoint
entries, and rebuilds itself, and the reconstruction method it serves, from a checkpoint alone.
The methods it serves name it by `checkpoint_kind`.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.methods.base import Method
from mrirecon.registry import Registry
from mrirecon.training.trainables.sizing import LargeOnMeta, size_guard

# checkpoints record this format; those without it predate the Trainable path
FORMAT = 2


class Trainable(Protocol):
    """A learned family: its module (weights, optimised and checkpointed) and how to train it."""

    kind: ClassVar[str]  # recorded in checkpoints; the key of TRAINABLES
    # `mrirecon train method=<name>` names that are no reconstruction method (the family's own
    # training, e.g. flow_prior), each with its conf/method/<name>.yaml
    train_only: ClassVar[tuple[str, ...]]
    # model names (conf/model/*.yaml `name`) the family builds itself, not from mrirecon.nets
    own_models: ClassVar[tuple[str, ...]]
    # whether its network comes from the model group (false: the method config holds it)
    uses_model_group: ClassVar[bool]
    # whether its training reads the method config (false: the method configs serve reconstruct only)
    uses_method_config: ClassVar[bool]
    # the devices on which its network runs under bf16 autocast with hardware.amp=true
    amp_devices: ClassVar[tuple[str, ...]]

    @property
    def select(self) -> str:
        """The validation metric that picks best.pt (smaller is better; may depend on the settings)."""

    @property
    def module(self) -> nn.Module:
        """The weights that are optimised and checkpointed."""

    @classmethod
    def trains(cls, method: str, model: str) -> bool:
        """Whether `mrirecon train method=<method> model=<model>` trains this family."""

    @classmethod
    def from_config(
        cls,
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

    @classmethod
    def train_keys(cls, train: dict[str, Any], bits: int | None) -> frozenset[str]:
        """The `train.*` keys (besides the loop's: tasks/settings.LOOP_KEYS) this family reads
        with the settings `train` on data of bit depth `bits`; the task refuses the others
        when they are set on the command line."""

    @classmethod
    def check_bits(cls, bits: int | None) -> None:
        """Raise ValueError('bits: ...') when the family cannot model data of this bit depth."""

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> Trainable:
        """The trained family from a checkpoint's own entries (raises ValueError)."""

    @classmethod
    def accepts(cls, ckpt: dict[str, Any], method: str) -> bool:
        """Whether a checkpoint of this family serves `reconstruct method=<method>`."""

    @classmethod
    def train_hint(cls, method: str) -> str:
        """The `mrirecon train` arguments that make a checkpoint for `method`."""

    def describe(self) -> str:
        """One phrase for the log, e.g. 'dbp + resnet (supervised)'."""

    def dataset(self, data: DeepInPyFile, indices: np.ndarray, training: bool) -> Dataset[dict[str, torch.Tensor]]:
        """Items (dicts of tensors) of the slices `indices` for training or validation."""

    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
        """An epoch-wise LR scheduler, or None."""

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """The scalar training loss (mean over the batch); `generator` (the step's own stream:
        seed, rank, step) is the source of its random draws."""

    def after_step(self, step: int) -> None:
        """Called on every rank after optimizer step `step` (e.g. sync a data-dependent init)."""

    def scalars(self) -> dict[str, float]:
        """Extra per-step scalars for TensorBoard."""

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Metrics 'val_*' of one validation batch (means over its items)."""

    def images(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Images (H, W) in [0, 1] for TensorBoard, from the first validation batch."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Entries stored in every checkpoint: kind, format and this trainable's resolved config."""

    def reconstructor(
        self, method: dict[str, Any], data_bits: int | None, amp: bool, given: Collection[str] = ()
    ) -> tuple[Method, dict[str, Any]]:
        """The reconstruction method `method` (plain config) using these weights, and the method
        config to record in the run's summary. `given` names the keys of `method` set on the
        command line (dotted): a family whose checkpoint holds the whole method applies those of
        its `inference_keys` and refuses the others that contradict the checkpoint (ValueError
        '<key>: ...'); a family whose checkpoint holds only a component applies every key."""


T = TypeVar("T", bound="type[Trainable]")
TRAINABLES: Registry[type[Trainable]] = Registry("trainable family", "mrirecon.training.trainables")


def register_trainable(cls: T) -> T:
    """Class decorator: make a trainable family known under its `kind`."""
    TRAINABLES.add(cls.kind, cls)
    return cls


def family_for(method: str, model: str) -> type[Trainable] | None:
    """The family that `mrirecon train method=<method> model=<model>` trains, or None."""
    for family in TRAINABLES.values():
        if family.trains(method, model):
            return family
    return None


def upgrade(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A format-1 checkpoint (written before the Trainable path) as format 2: its trainable's
    entries come from the run config that every checkpoint stored. Trained runs stay usable."""
    config = ckpt["config"]
    new = {**ckpt, "format": FORMAT, "model_config": config.get("model")}
    if isinstance(config.get("method"), dict):
        new["method_config"] = config["method"]
    new["supervised"] = bool(config.get("train", {}).get("supervised", True))
    return new


def rebuild(ckpt: dict[str, Any], path: str | Path, kind: str, method: str) -> Trainable:
    """The trainable of family `kind` stored in checkpoint `path` (already loaded as `ckpt`) for
    `reconstruct method=<method>`; ValueError messages start with the path."""
    family = TRAINABLES[kind]
    if ckpt.get("kind") != kind or not family.accepts(ckpt, method):
        held = ckpt.get("method") or ckpt.get("kind") or "unknown"
        raise ValueError(
            f"{path} holds a '{held}' model, not one for method={method} "
            f"(train one with 'mrirecon train {family.train_hint(method)}')"
        )
    if ckpt.get("format") is None and isinstance(ckpt.get("config"), dict):
        ckpt = upgrade(ckpt)
    if ckpt.get("format") != FORMAT:
        raise ValueError(
            f"{path} was written by an older mrirecon (checkpoint format {ckpt.get('format', 1)}, "
            f"this version reads {FORMAT}): retrain it with 'mrirecon train {family.train_hint(method)}'"
        )
    try:
        dry_build(family, ckpt, path)
        with size_guard(_described(path, ckpt)):
            return family.from_checkpoint(ckpt)
    except (KeyError, RuntimeError, TypeError, AttributeError, IndexError) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]  # load_state_dict: 2nd says why
        first = " ".join(lines[:2])[:300] if lines else exc.__class__.__name__
        raise ValueError(f"{path} does not match its own config ({first})") from None
    except ValueError as exc:  # the builders' checks of the stored config ('channels: ...')
        raise ValueError(f"{path} holds a config that does not build ({exc})") from None


def dry_build(family: type[Trainable], ckpt: dict[str, Any], path: str | Path) -> None:
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
