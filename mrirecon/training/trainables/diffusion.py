"""The diffusion-prior family: a noise-conditioned denoiser of the model group (nets.ScoreModel)
over the train split's reference images (complex, as 2 channels, divided by s = max |A^H y|),
trained by `mrirecon train model=diffusion` with a score loss (denoising_score), validated by the
same loss at fixed draws; reconstruct uses it through method=diffusion (posterior sampling)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, ClassVar, cast

import numpy as np
import torch

from mrirecon.data.augment import augmentation_label
from mrirecon.data.batch import Batch
from mrirecon.errors import configured
from mrirecon.losses import ScoreLoss, build_loss, loss_keys, loss_settings
from mrirecon.losses.denoising_score import normalised_images, score_matching
from mrirecon.methods import Method, build_method
from mrirecon.methods.base import from_channels
from mrirecon.nets import ScoreModel, build_net, is_score
from mrirecon.training.trainables.base import register_trainable
from mrirecon.training.trainables.flow import flipped

KIND = "diffusion"
SHOWN_SIGMA = 0.2  # the noise level of the TensorBoard example


@register_trainable
class DiffusionTrainable:
    """A noise-conditioned denoiser over the normalised reference images.

    Args:
        net: the denoiser.
        model_config: the plain config it was built from (stored in checkpoints).
        loss_config: the train keys of its loss ({'loss': name, its parameters}).
        seed: seeds the validation's noise draws.
        flip: random left-right flips of the reference images in training.
    """

    kind: ClassVar[str] = KIND
    amp_devices: ClassVar[tuple[str, ...]] = ()  # trains and samples in float32
    select = "val_dsm"

    def __init__(
        self,
        net: ScoreModel,
        model_config: dict[str, Any],
        loss_config: dict[str, Any],
        seed: int = 723,
        flip: bool = False,
    ) -> None:
        self.module, self.model_config, self.loss_config = net, model_config, loss_config
        self.objective = build_loss(loss_config, ScoreLoss, "score model")
        self.seed, self.flip = int(seed), bool(flip)

    # -- the family --------------------------------------------------------------------------
    @classmethod
    def trains(cls, method: str, model: str) -> bool:
        return is_score(model)  # whatever the method: the prior is trained alone

    @classmethod
    def reads(cls, train: dict[str, Any], bits: int | None) -> frozenset[str]:
        keys = {"loss", "flip", *loss_keys(str(train.get("loss")))}
        return frozenset({"model", *(f"train.{k}" for k in keys)})

    @classmethod
    def check_bits(cls, bits: int | None) -> None:
        """Any variant: complex images, or the quantised variants' real magnitudes."""

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
    ) -> DiffusionTrainable:
        loss_config = configured("train", loss_settings, train)
        configured("train", build_loss, loss_config, ScoreLoss, "score model")
        net = cast(ScoreModel, configured("model", build_net, model))
        return cls(net, model, loss_config, seed, flip=bool(train.get("flip", False)))

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], method: str | None = None) -> DiffusionTrainable:
        net = cast(ScoreModel, build_net(ckpt["model_config"]))
        net.load_state_dict(ckpt["model"])
        return cls(net, ckpt["model_config"], ckpt["loss"], flip=bool(ckpt["augmentations"].get("flip", False)))

    @classmethod
    def train_hint(cls, method: str) -> str:
        return "model=diffusion"

    # -- the trainable -----------------------------------------------------------------------
    def describe(self) -> str:
        c = self.model_config
        return f"diffusion prior (U-Net {c.get('base_channels')} channels x {c.get('depth')} levels, loss {self.loss_config['loss']})"

    def loss(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        return self.objective(self.module, flipped(batch, generator) if self.flip else batch, generator)

    def validate(self, batch: Batch) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.seed)  # the same draws every epoch
        return {"val_dsm": float(score_matching(self.module, normalised_images(batch), generator).mean())}

    def images(self, batch: Batch) -> dict[str, np.ndarray]:
        x = normalised_images(batch)[:1]
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(self.seed)).to(x.device)
        noisy = x + SHOWN_SIGMA / np.sqrt(2) * noise
        denoised = self.module(noisy, torch.full((1,), SHOWN_SIGMA, device=x.device))
        shown = [from_channels(v)[0].abs() for v in (x, noisy, denoised)]
        top = float(shown[0].max().clamp_min(1e-12))
        return {"denoised": np.concatenate([(v / top).clamp(0, 1).detach().cpu().numpy() for v in shown], axis=1)}

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "model_config": self.model_config,
            "loss": self.loss_config,
            "augmentations": {"flip": self.flip},
        }

    def reconstructor(
        self, method: dict[str, Any], data_bits: int | None, amp: bool, given: Collection[str] = ()
    ) -> tuple[Method, dict[str, Any]]:
        """Every key of `method` applies (the checkpoint holds the denoiser, not the method)."""
        built = build_method(method, net=self.module)
        return built, {**method, **augmentation_label({"flip": self.flip})}
