"""The loss interface, its registry (`train.loss=<name>`), and what the reconstruction losses
share: running the method on the measured samples of a mask.

A loss is called as loss(model, batch, generator) -> the scalar to minimise (a mean over the
batch's slices); `generator` (the step's own stream) is the source of its random draws. A
`ReconstructionLoss` trains a reconstruction method, model(y, op, noise_std) -> x (B, X, Y); a
`DensityLoss` a density model over images (a normalizing flow); a `ScoreLoss` a noise-conditioned
denoiser (the diffusion prior). `reference` says whether it
reads the batch's reference image (false: measured k-space only, self-supervised).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from mrirecon.arguments import check_arguments, parameters
from mrirecon.data.batch import Batch
from mrirecon.methods.base import data_scale
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.registry import Registry


class Loss:
    """A training objective (see the module docstring); subclasses implement `__call__`."""

    name: ClassVar[str] = ""
    reference: ClassVar[bool] = True  # reads batch.img

    def __call__(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


class ReconstructionLoss(Loss):
    """A loss of a reconstruction method model(y, op, noise_std) -> x_hat (B, X, Y)."""


class DensityLoss(Loss):
    """A loss of a density model over images (log_prob of (B, C, H, W))."""


class ScoreLoss(Loss):
    """A loss of a noise-conditioned denoiser model(v, sigma) (nets.ScoreModel)."""


def reconstruct(model: nn.Module, batch: Batch, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, SenseOperator]:
    """The method's reconstruction from the samples of `mask` (B, X, Y) of the batch's k-space:
    (x_hat (B, X, Y), y = ksp * mask, the SENSE operator of `mask`); the noise std is the
    batch's where known, else estimated from y (`resolve_noise_std`)."""
    y, op = batch.ksp * mask.unsqueeze(1), SenseOperator(batch.maps, mask)
    return model(y, op, resolve_noise_std(y, mask, batch.noise_std)), y, op


def scale_weight(y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
    """1 / s^2 per slice (B,), s = max |A^H y| of the network's input: slices of any intensity
    units weigh alike."""
    return data_scale(y, op).pow(-2)


L = TypeVar("L", bound=type[Loss])
K = TypeVar("K", bound=Loss)
LOSSES: Registry[type[Loss]] = Registry("loss", "mrirecon.losses")


def register_loss(name: str) -> Callable[[L], L]:
    """Class decorator: make a loss available as `train.loss=<name>`."""
    return LOSSES.register(name, set_name=True)


def loss_keys(name: str, components: tuple[str, ...] = ()) -> frozenset[str]:
    """The `train.*` keys the loss `name` reads: its constructor's parameters but `components`
    (ValueError 'loss: unknown ...' for a name no loss has)."""
    return frozenset(parameters(lookup(name))) - set(components)


def lookup(name: object) -> type[Loss]:
    """The loss class registered as `name` (ValueError 'loss: ...' listing them)."""
    try:
        return LOSSES.lookup(name)
    except ValueError as exc:
        raise ValueError(f"loss: {exc}") from None


def loss_settings(train: Mapping[str, Any]) -> dict[str, Any]:
    """The train keys of the loss train['loss']: {'loss': its name, its parameters found in
    `train`} (what a checkpoint records to rebuild it)."""
    name = train.get("loss")
    return {"loss": name, **{k: train[k] for k in sorted(loss_keys(str(name))) if k in train}}


def build_loss(settings: Mapping[str, Any], kind: type[K], model: str, **components: Any) -> K:
    """The loss named by settings['loss'], of the class `kind` (ValueError 'loss: ... is no loss
    of a <model>' otherwise), its parameters from `settings`, `components` (e.g. a flow's bit
    depth) given by code (ValueError naming the key)."""
    name = settings.get("loss")
    cls = lookup(name)
    if not issubclass(cls, kind):
        takes = ", ".join(n for n, c in LOSSES.items() if issubclass(c, kind))
        raise ValueError(f"loss: {name} is no loss of a {model} (its losses: {takes})")
    params = {k: v for k, v in settings.items() if k != "loss"}
    check_arguments(cls, params, f"loss {name}", components)
    return cls(**params, **components)
