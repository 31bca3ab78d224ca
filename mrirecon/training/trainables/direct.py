"""The direct family (unet_image, automap: mrirecon.methods.direct): one network from the
measured data to the image, trained supervised by `mrirecon train method=<name>`; its checkpoint
is the whole method (its network's config inside the method's)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from mrirecon.data.augment import augment, augmentation_label, augmentations_for
from mrirecon.data.dataset import SliceDataset
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError, configured
from mrirecon.methods import REGISTRY, Method, build_method
from mrirecon.methods.base import data_scale
from mrirecon.methods.direct import Direct
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.training.trainables.base import FORMAT, register_trainable
from mrirecon.training.trainables.reconstructors import ReconstructorFamily, at_inference

log = logging.getLogger(__name__)
KIND = "direct"


def _build(method_config: dict[str, Any], shape: tuple[int, int]) -> Direct:
    """The direct method of `method_config`; those made for one image size get `shape`."""
    fixed = getattr(REGISTRY.get(str(method_config.get("name"))), "fixed_shape", False)
    method = build_method(method_config, **({"shape": tuple(shape)} if fixed else {}))
    if not isinstance(method, Direct):
        raise TypeError(f"{type(method).__name__} is not a direct method")
    return method


@register_trainable
class DirectTrainable(ReconstructorFamily):
    """A direct method and its supervised loss (the method's own: `Direct.training_error`).

    Args:
        method: the method (its network inside).
        method_config: the plain config it was built from (stored in checkpoints).
        shape: (X, Y) of the training images.
        step_lr: None or {step_size, gamma} for a StepLR schedule.
        augmentations: keyword arguments of `mrirecon.data.augment.augment`, applied to every
            training batch; validation never augments.
    """

    kind: ClassVar[str] = KIND
    uses_model_group: ClassVar[bool] = False  # the method config holds the network
    uses_method_config: ClassVar[bool] = True
    amp_devices: ClassVar[tuple[str, ...]] = ("cuda",)  # Direct.run_network
    module: Direct

    def __init__(
        self,
        method: Direct,
        method_config: dict[str, Any],
        shape: tuple[int, int],
        step_lr: dict[str, Any] | None = None,
        augmentations: dict[str, bool] | None = None,
    ) -> None:
        self.module, self.method_config = method, method_config
        self.shape, self.step_lr = (int(shape[0]), int(shape[1])), step_lr
        self.augmentations = dict(augmentations or {})

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def trains(cls, method: str, model: str) -> bool:
        return method in REGISTRY and REGISTRY[method].checkpoint_kind == KIND

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
    ) -> DirectTrainable:
        log.info(
            "method=%s brings its own network (method.%s); the model group is not used",
            method.get("name"),
            "net" if "net" in method else "*",
        )
        if not bool(train.get("supervised", True)):
            raise UserError(f"train.supervised: false, but method={method.get('name')} trains supervised only")
        built = configured("method", _build, method, shape)
        built.amp = bool(amp)
        return cls(built, method, shape, train.get("step_lr"), augmentations_for(train, bits))

    @classmethod
    def train_keys(cls, train: dict[str, Any], bits: int | None) -> frozenset[str]:
        keys = {"supervised", "step_lr", "flip", "random_masks"}  # supervised: checked to be true
        return frozenset(keys | ({"random_phase"} if bits is None else set()))

    @classmethod
    def check_bits(cls, bits: int | None) -> None:
        return None  # complex and magnitude variants alike

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> DirectTrainable:
        method = _build(ckpt["method_config"], ckpt["shape"])
        method.load_state_dict(ckpt["model"])
        return cls(method.eval(), ckpt["method_config"], ckpt["shape"], augmentations=ckpt.get("augmentations"))

    def describe(self) -> str:
        net = self.method_config.get("net", {}).get("name", "")
        used = "".join(f", {name}" for name, on in self.augmentations.items() if on)
        return f"{self.method_config['name']}{' + ' + net if net else ''} (supervised, {self.module.loss} loss{used})"

    # -- training --------------------------------------------------------------------------------
    def dataset(self, data: DeepInPyFile, indices: np.ndarray, training: bool) -> Dataset[dict[str, torch.Tensor]]:
        return SliceDataset(data, indices, with_reference=True)

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        batch = augment(batch, generator, **self.augmentations)
        op = SenseOperator(batch["maps"], batch["mask"])
        y = batch["ksp"] * batch["mask"].unsqueeze(1)
        x_hat = self.module(y, op, resolve_noise_std(y, batch["mask"], batch["noise_std"]))
        return self.module.training_error(x_hat, batch["img"], data_scale(y, op)).mean()

    def scalars(self) -> dict[str, float]:
        return {}

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format": FORMAT,
            "method": self.method_config["name"],
            "method_config": self.method_config,
            "shape": list(self.shape),
            "augmentations": self.augmentations,
        }

    # -- reconstruction ------------------------------------------------------------------------
    def reconstructor(
        self, method: dict[str, Any], data_bits: int | None, amp: bool, given: Collection[str] = ()
    ) -> tuple[Method, dict[str, Any]]:
        applied = at_inference(type(self.module), method, self.method_config, given)
        if applied:  # a direct method whose inference_keys name some
            rebuilt = _build({**self.method_config, **applied}, self.shape)
            rebuilt.load_state_dict(self.module.state_dict())
            self.module = rebuilt.to(next(self.module.parameters()).device).train(self.module.training)
        self.module.amp = bool(amp)
        fixed = {"fixed_shape": list(self.shape)} if self.module.fixed_shape else {}  # reconstruct checks it
        return self.module, {
            **self.method_config,
            **applied,
            "trained_shape": list(self.shape),
            **fixed,
            **augmentation_label(self.augmentations),
        }
