"""The flow-prior family: a density model of the model group (a normalizing flow) over the
magnitude images of the train split, trained by `mrirecon train model=flow` (or flow_student)
with a density loss (bits/dim), validated in bits/dim; reconstruct uses it through
method=flow_l1|flow_logprob|flow_combined."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, ClassVar, cast

import numpy as np
import torch

from mrirecon.data.augment import augmentation_label
from mrirecon.data.batch import Batch
from mrirecon.errors import configured
from mrirecon.losses import DensityLoss, build_loss, loss_keys, loss_settings
from mrirecon.losses.bits_per_dim import bits_per_dim, dequantize, magnitude
from mrirecon.methods import Method, build_method
from mrirecon.nets import build_net, is_density
from mrirecon.nets.flow import ImageFlow, from_flow_space
from mrirecon.training.trainables.base import register_trainable

log = logging.getLogger(__name__)
KIND = "flow"


def flipped(batch: Batch, generator: torch.Generator) -> Batch:
    """The batch with each reference image flipped left-right with probability 1/2 (the flow
    prior's augmentation: its images only)."""
    img = batch.reference()
    flips = torch.rand(img.shape[0], generator=generator).to(img.device) < 0.5
    return batch.replace(img=torch.where(flips[:, None, None], img.flip(-1), img))


@register_trainable
class FlowTrainable:
    """A flow over (1, H, W) magnitude images of bit depth `bits`.

    Args:
        flow: the flow.
        model_config: the plain config it was built from (stored in checkpoints).
        bits: bit depth of the training images.
        loss_config: the train keys of its loss ({'loss': name, its parameters}).
        seed: seeds the validation's dequantisation noise and samples.
        flip: random left-right flips in training.
        sample_temperature: temperature of the samples shown in TensorBoard.
    """

    kind: ClassVar[str] = KIND
    amp_devices: ClassVar[tuple[str, ...]] = ()  # the flow trains and samples in float32
    select = "val_bpd"

    def __init__(
        self,
        flow: ImageFlow,
        model_config: dict[str, Any],
        bits: int,
        loss_config: dict[str, Any],
        seed: int = 723,
        flip: bool = False,
        sample_temperature: float = 0.7,
    ) -> None:
        self.module, self.model_config, self.bits = flow, model_config, int(bits)
        self.loss_config = loss_config
        self.objective = build_loss(loss_config, DensityLoss, "density model", bits=self.bits)
        self.seed, self.flip, self.temperature = int(seed), bool(flip), float(sample_temperature)

    # -- the family --------------------------------------------------------------------------
    @classmethod
    def trains(cls, method: str, model: str) -> bool:
        return is_density(model)  # whatever the method: the prior is trained alone

    @classmethod
    def reads(cls, train: dict[str, Any], bits: int | None) -> frozenset[str]:
        keys = {"loss", "flip", "sample_temperature", *loss_keys(str(train.get("loss")), ("bits",))}
        return frozenset({"model", *(f"train.{k}" for k in keys)})

    @classmethod
    def check_bits(cls, bits: int | None) -> None:
        if bits is None:
            raise ValueError(
                "bits: null (complex images): the flow prior models real magnitude images of a "
                "quantised variant (bits 4 or 8, e.g. data=4bit_quarter)"
            )

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
    ) -> FlowTrainable:
        configured("data", cls.check_bits, bits)
        loss_config = configured("train", loss_settings, train)
        configured("train", build_loss, loss_config, DensityLoss, "density model", bits=bits)
        flow = cast(ImageFlow, configured("model", build_net, model, (1, *shape)))
        return cls(
            flow,
            model,
            cast(int, bits),  # check_bits refused None
            loss_config,
            seed,
            flip=bool(train.get("flip", False)),
            sample_temperature=float(train.get("sample_temperature", 0.7)),
        )

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], method: str | None = None) -> FlowTrainable:
        flow = cast(ImageFlow, build_net(ckpt["model_config"], tuple(ckpt["shape"])))
        flow.load_state_dict(ckpt["model"])
        return cls(
            flow,
            ckpt["model_config"],
            ckpt["bits"],
            ckpt["loss"],
            flip=bool(ckpt["augmentations"].get("flip", False)),
            sample_temperature=float(ckpt["sample_temperature"]),
        )

    @classmethod
    def train_hint(cls, method: str) -> str:
        return "model=flow"

    # -- the trainable -----------------------------------------------------------------------
    def describe(self) -> str:
        c = self.model_config
        return f"flow prior ({c.get('levels')} levels x {c.get('steps')} steps, {self.bits}-bit images)"

    def loss(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        return self.objective(self.module, flipped(batch, generator) if self.flip else batch, generator)

    def validate(self, batch: Batch) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.seed)  # fixed dequantisation noise
        v = dequantize(magnitude(batch), self.bits, generator)
        return {"val_bpd": float(bits_per_dim(self.module, v, self.bits).mean())}

    def images(self, batch: Batch) -> dict[str, np.ndarray]:
        samples = from_flow_space(
            self.module.sample(4, self.temperature, torch.Generator().manual_seed(self.seed)), self.bits
        )
        s = samples.clamp(0, 1)[:, 0].cpu().numpy()
        return {"samples": np.block([[s[0], s[1]], [s[2], s[3]]])}

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "bits": self.bits,
            "shape": list(self.module.shape),
            "model_config": self.model_config,
            "loss": self.loss_config,
            "augmentations": {"flip": self.flip},
            "sample_temperature": self.temperature,
        }

    def reconstructor(
        self, method: dict[str, Any], data_bits: int | None, amp: bool, given: Collection[str] = ()
    ) -> tuple[Method, dict[str, Any]]:
        """Every key of `method` applies (the checkpoint holds the flow, not the method)."""
        if data_bits is not None and int(data_bits) != self.bits:
            log.warning(
                "the flow was trained on %d-bit images, the data are %d-bit: the prior does not match the "
                "data (the original project's pitfall); results are not comparable",
                self.bits,
                int(data_bits),
            )
        built = build_method(method, flow=self.module, bits=self.bits)
        return built, {
            **method,
            "flow_bits": self.bits,
            "flow_shape": list(self.module.shape),
            "fixed_shape": list(self.module.shape[1:]),
            **augmentation_label({"flip": self.flip}),
        }
