"""The flow-prior family: a normalizing flow over the magnitude images of the train split,
trained by `mrirecon train method=flow_prior model=flow` (alias: `model=flow`), loss and
validation in bits/dim; reconstruct uses it through method=flow_l1|flow_logprob|flow_combined."""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from mrirecon.data.augment import augmentation_label
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError, configured
from mrirecon.methods import Method, build_method
from mrirecon.nets.flow import ImageFlow, bits_per_dim, build_flow, dequantize, from_flow_space
from mrirecon.training.schedules import cosine_schedule
from mrirecon.training.trainables.base import FORMAT, register_trainable

log = logging.getLogger(__name__)
KIND = "flow"
TRAIN_METHOD = "flow_prior"  # `mrirecon train method=flow_prior`: this family


class MagnitudeDataset(Dataset[dict[str, torch.Tensor]]):
    """Items: 'img' (1, X, Y) float32, the magnitude of the reference image, and 'index' ()."""

    def __init__(self, data: DeepInPyFile, indices: np.ndarray) -> None:
        self.data, self.indices = data, np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = int(self.indices[k])
        img = np.abs(self.data.read_image(i)).astype(np.float32)
        return {"img": torch.from_numpy(img)[None], "index": torch.tensor(i)}


@register_trainable
class FlowTrainable:
    """A flow over (1, H, W) images of bit depth `bits`.

    Args:
        flow: the flow.
        model_config: the plain config it was built from (stored in checkpoints).
        bits: bit depth of the training images.
        seed: seeds the validation's dequantisation noise and samples.
        flip: random left-right flips in training.
        sample_temperature: temperature of the samples shown in TensorBoard.
    """

    kind: ClassVar[str] = KIND
    select = "val_bpd"
    train_only: ClassVar[tuple[str, ...]] = (TRAIN_METHOD,)
    own_models: ClassVar[tuple[str, ...]] = ("flow",)  # nets.flow.build_flow
    uses_model_group: ClassVar[bool] = True
    uses_method_config: ClassVar[bool] = False  # it trains the prior; method.* apply at reconstruct
    amp_devices: ClassVar[tuple[str, ...]] = ()  # the flow trains and samples in float32

    def __init__(
        self,
        flow: ImageFlow,
        model_config: dict[str, Any],
        bits: int,
        seed: int = 723,
        flip: bool = False,
        sample_temperature: float = 0.7,
    ) -> None:
        self.module, self.model_config, self.bits = flow, model_config, int(bits)
        self.seed, self.flip, self.temperature = int(seed), bool(flip), float(sample_temperature)

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def trains(cls, method: str, model: str) -> bool:
        if model in cls.own_models and method not in cls.train_only:
            log.info("model=flow trains the flow prior (method=%s; method=%s does not apply)", TRAIN_METHOD, method)
        return method in cls.train_only or model in cls.own_models

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
        if model.get("name") != "flow":
            raise UserError(
                f"model={model.get('name')}: method={TRAIN_METHOD} trains a flow (model=flow or model=flow_student)"
            )
        flow = configured("model", build_flow, model, (1, *shape))
        return cls(
            flow,
            model,
            cast(int, bits),  # check_bits refused None
            seed,
            flip=bool(train.get("flip", False)),
            sample_temperature=float(train.get("sample_temperature", 0.7)),
        )

    @classmethod
    def train_keys(cls, train: dict[str, Any], bits: int | None) -> frozenset[str]:
        return frozenset({"flip", "sample_temperature"})  # its schedule: cosine over train.epochs

    @classmethod
    def check_bits(cls, bits: int | None) -> None:
        if bits is None:
            raise ValueError(
                "bits: null (complex images): the flow prior models real magnitude images of a "
                "quantised variant (bits 4 or 8, e.g. data=4bit_quarter)"
            )

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> FlowTrainable:
        flow = build_flow(ckpt["model_config"], tuple(ckpt["shape"]))
        flow.load_state_dict(ckpt["model"])
        used = ckpt.get("training")  # what trained it (checkpoints before it recorded none)
        used = used if isinstance(used, dict) else {}
        return cls(
            flow,
            ckpt["model_config"],
            ckpt["bits"],
            flip=bool(used.get("flip", False)),
            sample_temperature=float(used.get("sample_temperature", 0.7)),
        )

    @classmethod
    def accepts(cls, ckpt: dict[str, Any], method: str) -> bool:
        return True

    @classmethod
    def train_hint(cls, method: str) -> str:
        return f"method={TRAIN_METHOD} model=flow"

    def describe(self) -> str:
        c = self.model_config
        return f"flow prior ({c.get('levels')} levels x {c.get('steps')} steps, {self.bits}-bit images)"

    # -- training --------------------------------------------------------------------------------
    def dataset(self, data: DeepInPyFile, indices: np.ndarray, training: bool) -> Dataset[dict[str, torch.Tensor]]:
        return MagnitudeDataset(data, indices)

    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
        return cosine_schedule(optimizer, epochs)  # closed form: a resume with other epochs follows them

    def loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        x = batch["img"]
        if self.flip:  # random left-right flips
            flips = torch.rand(x.shape[0], generator=generator).to(x.device) < 0.5
            x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        return bits_per_dim(self.module, dequantize(x, self.bits, generator), self.bits).mean()

    def after_step(self, step: int) -> None:
        return None  # ActNorm initialises on the global batch (nets.flow.GlobalActNorm): nothing to sync

    def scalars(self) -> dict[str, float]:
        return {}

    def validate(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.seed)  # fixed dequantisation noise
        return {
            "val_bpd": float(
                bits_per_dim(self.module, dequantize(batch["img"], self.bits, generator), self.bits).mean()
            )
        }

    def images(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        samples = from_flow_space(
            self.module.sample(4, self.temperature, torch.Generator().manual_seed(self.seed)), self.bits
        )
        s = samples.clamp(0, 1)[:, 0].cpu().numpy()
        return {"samples": np.block([[s[0], s[1]], [s[2], s[3]]])}

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format": FORMAT,
            "bits": self.bits,
            "shape": list(self.module.shape),
            "model_config": self.model_config,
            "training": {"flip": self.flip, "sample_temperature": self.temperature},
        }

    # -- reconstruction ------------------------------------------------------------------------
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
