"""The unrolled family (dbp, modl with a denoiser): trained by `mrirecon train method=<dbp|modl>
model=<resnet|unet>`; its checkpoint is the whole method (denoiser and learned weight)."""

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
from mrirecon.methods.unrolled import Unrolled, training_loss
from mrirecon.nets import NETS, build_net
from mrirecon.training.trainables.base import FORMAT, register_trainable
from mrirecon.training.trainables.reconstructors import (
    KSPACE_METRIC,
    VAL_HOLDOUT,
    ReconstructorFamily,
    at_inference,
    kspace_validation,
    validation_metrics,
)

KIND = "unrolled"
log = logging.getLogger(__name__)


@register_trainable
class UnrolledTrainable(ReconstructorFamily):
    """An unrolled method with its denoiser, and its training objective (`training_loss`).

    Args:
        method: the method (its denoiser inside).
        method_config, model_config: the plain configs it was built from (stored in checkpoints).
        supervised, stdev, holdout, holdout_center: the loss's settings (`training_loss`).
        step_lr: None or {step_size, gamma} for a StepLR schedule.
        random_masks, flip, random_phase: training augmentations (`mrirecon.data.augment`),
            applied to every training batch before the loss; validation never augments.
            Unsupervised, they see measured samples only (random_masks is refused).
        seed: seeds the unsupervised validation's held-out samples.

    Supervised runs choose best.pt by the validation NRMSE; unsupervised runs by
    `val_kspace_nmse`, the error on held-out measured k-space of the validation slices (no
    reference needed; the reference metrics are still logged).
    """

    kind: ClassVar[str] = KIND
    uses_model_group: ClassVar[bool] = True
    uses_method_config: ClassVar[bool] = True
    amp_devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")  # Unrolled.denoise
    module: Unrolled

    def __init__(
        self,
        method: Unrolled,
        method_config: dict[str, Any],
        model_config: dict[str, Any],
        supervised: bool = True,
        stdev: float = 0.0,
        holdout: float = 0.0,
        holdout_center: float = 0.0,
        step_lr: dict[str, Any] | None = None,
        random_masks: bool = False,
        flip: bool = False,
        random_phase: bool = False,
        seed: int = 723,
    ) -> None:
        self.module = method
        self.method_config, self.model_config = method_config, model_config
        self.supervised, self.stdev = bool(supervised), float(stdev)
        self.holdout, self.holdout_center = float(holdout), float(holdout_center)
        self.step_lr = step_lr
        self.augmentations = {
            "random_masks": bool(random_masks),
            "flip": bool(flip),
            "random_phase": bool(random_phase),
        }
        self.seed = int(seed)
        self.select = "val_nrmse" if self.supervised else KSPACE_METRIC

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def trains(cls, method: str, model: str) -> bool:
        return method in REGISTRY and REGISTRY[method].checkpoint_kind == KIND and model in NETS

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
    ) -> UnrolledTrainable:
        for key in ("holdout", "holdout_center"):
            if not 0 <= float(train[key]) < 1:
                raise UserError(f"train.{key}: {train[key]} is not in [0, 1)")
        if float(train["stdev"]) < 0:
            raise UserError(f"train.stdev: {train['stdev']} must be >= 0")
        augmentations = augmentations_for(train, bits)
        configured("train", _check_measured_only, bool(train["supervised"]), augmentations["random_masks"])
        built = _unrolled(configured("method", build_method, method, denoiser=configured("model", build_net, model)))
        built.amp = bool(amp)
        built.checkpoint_unrolls = bool(train.get("checkpoint_unrolls", False))
        return cls(
            built,
            method,
            model,
            train["supervised"],
            train["stdev"],
            train["holdout"],
            train["holdout_center"],
            train.get("step_lr"),
            **augmentations,
            seed=seed,
        )

    @classmethod
    def train_keys(cls, train: dict[str, Any], bits: int | None) -> frozenset[str]:
        keys = {"supervised", "stdev", "step_lr", "checkpoint_unrolls", "flip", "random_masks"}
        if not bool(train.get("supervised", True)):
            keys |= {"holdout", "holdout_center"}  # the unsupervised loss's
        if bits is None:
            keys.add("random_phase")  # complex images only (augmentations_for)
        return frozenset(keys)

    @classmethod
    def check_bits(cls, bits: int | None) -> None:
        return None  # complex and magnitude variants alike

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> UnrolledTrainable:
        method_config, model_config = ckpt["method_config"], ckpt["model_config"]
        method = _unrolled(build_method(method_config, denoiser=build_net(model_config)))
        method.load_state_dict(ckpt["model"])
        method.eval()
        augmentations = _trained_augmentations(ckpt)
        return cls(
            method,
            method_config,
            model_config,
            ckpt["supervised"],
            random_masks=augmentations.get("random_masks", False),
            flip=augmentations.get("flip", False),
            random_phase=augmentations.get("random_phase", False),
        )

    def describe(self) -> str:
        how = "supervised" if self.supervised else f"unsupervised, holdout {self.holdout}"
        extra = [name for name, on in self.augmentations.items() if on]
        if extra:
            how += ", augmented: " + ", ".join(extra)
        return f"{self.method_config['name']} + {self.model_config['name']} ({how})"

    # -- training --------------------------------------------------------------------------------
    def dataset(self, data: DeepInPyFile, indices: np.ndarray, training: bool) -> Dataset[dict[str, torch.Tensor]]:
        unsupervised = training and not self.supervised
        return SliceDataset(data, indices, with_reference=not unsupervised, measured_only=unsupervised)

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """The training loss; unsupervised, of the measured samples only (unmeasured k-space is
        zeroed before anything reads it)."""
        batch = augment(batch, generator, **self.augmentations, measured_only=not self.supervised)
        return training_loss(
            self.module, batch, self.supervised, generator, self.stdev, self.holdout, self.holdout_center
        )

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        metrics = validation_metrics(self.module, batch)
        if self.supervised:
            return metrics
        holdout = self.holdout if self.holdout > 0 else VAL_HOLDOUT
        return {**metrics, **kspace_validation(self.module, batch, holdout, self.holdout_center, self.seed)}

    def scalars(self) -> dict[str, float]:
        return {"train/l2lam": float(self.module.l2lam.detach())}

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format": FORMAT,
            "method": self.method_config["name"],
            "method_config": self.method_config,
            "model_config": self.model_config,
            "supervised": self.supervised,
            "augmentations": self.augmentations,
        }

    # -- reconstruction ------------------------------------------------------------------------
    def reconstructor(
        self, method: dict[str, Any], data_bits: int | None, amp: bool, given: Collection[str] = ()
    ) -> tuple[Method, dict[str, Any]]:
        applied = at_inference(type(self.module), method, self.method_config, given)
        if applied:
            self.module = self._rebuilt(applied)
        self.module.amp = bool(amp)
        return self.module, {
            **self.method_config,
            **applied,
            "model": self.model_config["name"],
            "supervised": self.supervised,
            **augmentation_label(self.augmentations),
        }

    def _rebuilt(self, settings: dict[str, Any]) -> Unrolled:
        """The method rebuilt with `settings` (inference keys) around the same denoiser and
        weights, on the same device and in the same mode."""
        old = self.module
        method = _unrolled(build_method({**self.method_config, **settings}, denoiser=old.denoiser))
        method.load_state_dict(old.state_dict())
        method.checkpoint_unrolls = old.checkpoint_unrolls
        return method.to(old.l2lam_raw.device).train(old.training)


def _check_measured_only(supervised: bool, random_masks: bool) -> None:
    """Refuse augmentations that need unmeasured k-space in unsupervised training (ValueError)."""
    if not supervised and random_masks:
        raise ValueError(
            "random_masks: unsupervised training (supervised false) has only the measured samples, and a "
            "new mask with the slice's number of samples needs k-space that was not measured (the holdout "
            "already gives the network a new random subset of the measured samples at every step)"
        )


def _unrolled(method: Method) -> Unrolled:
    """`method`, checked to be an unrolled method (the family trains only those: `trains`)."""
    if not isinstance(method, Unrolled):
        raise TypeError(f"{type(method).__name__} is not an unrolled method")
    return method


def _trained_augmentations(ckpt: dict[str, Any]) -> dict[str, bool]:
    """The training augmentations of a checkpoint: its own record, else (checkpoints written
    before it) the stored run config's train.* keys; none in configs older than them (there
    train.flip was the flow prior's alone)."""
    if "augmentations" in ckpt:
        return {k: bool(v) for k, v in ckpt["augmentations"].items()}
    config = ckpt.get("config") or {}
    train, bits = config.get("train") or {}, (config.get("data") or {}).get("bits")
    if "random_masks" not in train:
        return {}
    return {
        "random_masks": bool(train.get("random_masks", False)),
        "flip": bool(train.get("flip", False)),
        "random_phase": bool(train.get("random_phase", False)) and bits is None,
    }
