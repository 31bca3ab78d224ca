"""What the families whose module is itself a reconstruction method (unrolled, direct) share:
validation metrics against the reference, the reference-free validation of self-supervised
runs (held-out measured k-space), TensorBoard images of the first slice, the keys set at
reconstruct time, and `ReconstructorFamily`: a method with a network of the `model` group,
trained with a reconstruction loss of mrirecon.losses (`train.loss`) on augmented batches."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mrirecon.data.augment import augment, augmentation_label, augmentations_for
from mrirecon.data.batch import Batch
from mrirecon.data.transforms import center_crop
from mrirecon.errors import UserError, configured
from mrirecon.evaluation import metrics
from mrirecon.losses import ReconstructionLoss, build_loss, loss_keys, loss_settings
from mrirecon.losses.ssdu import SplitLoss, split_mask
from mrirecon.methods import REGISTRY, Method, build_method
from mrirecon.nets import build_net, fixed_size, is_image_map
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.training.streams import VALIDATION, generator
from mrirecon.training.trainables.base import Serves

KSPACE_METRIC = "val_kspace_nmse"  # what chooses best.pt in self-supervised training
VAL_HOLDOUT = 0.4  # held-out fraction of the self-supervised validation when training holds out none


def reconstruct_batch(module: nn.Module, batch: Batch) -> tuple[np.ndarray, SenseOperator]:
    """module(y, op, noise_std) on a batch's masked k-space -> (x (B, X, Y) complex, op); the
    noise std is the batch's where stored, else estimated from y (`resolve_noise_std`)."""
    op = SenseOperator(batch.maps, batch.mask)
    y = batch.y
    return module(y, op, resolve_noise_std(y, batch.mask, batch.noise_std)).cpu().numpy(), op


def validation_metrics(module: nn.Module, batch: Batch) -> dict[str, float]:
    """{'val_nrmse', 'val_psnr', 'val_ssim'}: means over the batch's slices (images cropped to
    the batch's `crop`, the file's recon size, when it has one, as reconstruct does)."""
    x, _ = reconstruct_batch(module, batch)
    ref = batch.reference().cpu().numpy()
    if batch.crop is not None:
        crop = tuple(int(v) for v in batch.crop[0])
        x, ref = center_crop(x, crop), center_crop(ref, crop)
    rows = [metrics.slice_metrics(x[k], ref[k]) for k in range(len(x))]
    return {f"val_{k}": float(np.mean([r[k] for r in rows])) for k in metrics.NAMES}


def kspace_validation(
    module: nn.Module, batch: Batch, holdout: float, keep_center: float, seed: int
) -> dict[str, float]:
    """{KSPACE_METRIC: mean over the batch's slices of ||M_h (A x_hat - y)||^2 / ||M_h y||^2}, x_hat
    reconstructed from the measured samples outside M_h: a validation error of measured k-space
    only (the reference is not read). M_h holds out `holdout` of each slice's measured samples
    (outside the central `keep_center`), drawn from (seed, slice index): the same samples every
    epoch, whatever the batch size."""
    mask, ksp = batch.mask, batch.ksp
    held = torch.cat(
        [
            split_mask(mask[k : k + 1], holdout, generator(seed, VALIDATION, int(i)), keep_center)[1]
            for k, i in enumerate(batch.index.tolist())
        ]
    )
    inputs = mask - held
    y_in = ksp * inputs.unsqueeze(1)
    x_hat = module(y_in, SenseOperator(batch.maps, inputs), resolve_noise_std(y_in, inputs, batch.noise_std))
    target = ksp * held.unsqueeze(1)
    error = (SenseOperator(batch.maps, held).forward(x_hat) - target).abs().pow(2).flatten(1).sum(1)
    ratio = error / target.abs().pow(2).flatten(1).sum(1).clamp_min(torch.finfo(error.dtype).tiny)
    return {KSPACE_METRIC: float(ratio.mean())}


def validation_images(module: nn.Module, batch: Batch) -> dict[str, np.ndarray]:
    """Reference, reconstruction and zero-filled magnitudes of the batch's first slice in [0, 1]."""
    first = batch.part(0, 1)
    x, op = reconstruct_batch(module, first)
    ref = first.reference().cpu().numpy()
    scale = float(np.abs(ref[0]).max()) or 1.0
    zero_filled = op.adjoint(first.y)[0].cpu().numpy()
    return {
        "val/reference": np.abs(ref[0]) / scale,
        "val/reconstruction": np.abs(x[0]) / scale,
        "val/zero_filled": np.abs(zero_filled) / scale,
    }


def _select(config: Mapping[str, Any], key: str) -> Any:
    """The value at dotted `key` of a nested config (None where absent)."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def at_inference(
    method_class: type[Method], requested: Mapping[str, Any], stored: Mapping[str, Any], given: Collection[str]
) -> dict[str, Any]:
    """The method keys set on the command line (`given`: dotted keys of the method config) that a
    method rebuilt from a checkpoint takes anew: {key: its `requested` value} for the keys of
    `method_class.inference_keys`. Any other given key is fixed by the weights or their training:
    ValueError('<key>: ...', naming the checkpoint's value) when its requested value differs from
    the `stored` one (the checkpoint's method config)."""
    applied: dict[str, Any] = {}
    for key in sorted(given):
        top = key.split(".")[0]
        if top == "train_defaults":
            raise ValueError(f"{key}: read by mrirecon train only (the train.* defaults of this method)")
        if top in method_class.inference_keys:
            applied[top] = requested[top]
        elif top != "name" and _select(requested, key) != _select(stored, key):
            takes = ", ".join(method_class.inference_keys) or "none of its keys"
            raise ValueError(
                f"{key}: {_select(requested, key)!r}, but the checkpoint's weights were trained with "
                f"{key}={_select(stored, key)!r} (a trained {method_class.name} takes at reconstruct time: {takes})"
            )
    return applied


class ReconstructorFamily:
    """A family whose trainable `module` is the reconstruction method `method_config['name']`,
    with the network of `model_config` as its `component` argument; its checkpoints serve that
    method only. Trained with `objective` (train.loss) on batches augmented by `augmentations`
    (mrirecon.data.augment: random_masks, flip, random_phase) and extra noise `stdev`; a loss
    that reads no reference sees measured samples only and chooses best.pt by KSPACE_METRIC,
    the others by the validation NRMSE.

    Args:
        module: the method (its network inside).
        method_config, model_config: the plain configs it was built from (stored in checkpoints).
        loss_config: the train keys of its loss ({'loss': name, its parameters}).
        shape: (X, Y) of the training images.
        augmentations: flags of `augment`; stdev: its extra k-space noise.
        seed: seeds the self-supervised validation's held-out samples.
    """

    kind: ClassVar[str]
    amp_devices: ClassVar[tuple[str, ...]]
    component: ClassVar[str]  # the method's keyword argument for its network
    method_class: ClassVar[type]  # what its methods are
    own_keys: ClassVar[frozenset[str]] = frozenset()  # its train.* keys besides the shared ones

    def __init__(
        self,
        module: Any,
        method_config: dict[str, Any],
        model_config: dict[str, Any],
        loss_config: dict[str, Any],
        shape: tuple[int, int],
        augmentations: Mapping[str, bool] | None = None,
        stdev: float = 0.0,
        seed: int = 723,
    ) -> None:
        self.module, self.method_config, self.model_config = module, method_config, model_config
        self.loss_config = loss_config
        self.objective = build_loss(loss_config, ReconstructionLoss, "reconstruction method")
        self.shape = (int(shape[0]), int(shape[1]))
        self.augmentations = {k: bool(v) for k, v in (augmentations or {}).items()}
        self.stdev, self.seed = float(stdev), int(seed)
        self.select = "val_nrmse" if self.objective.reference else KSPACE_METRIC

    # -- the family --------------------------------------------------------------------------
    @classmethod
    def trains(cls, method: str, model: str) -> bool:
        served = method in REGISTRY and REGISTRY[method].checkpoint_kind == cls.kind
        return served and is_image_map(model)

    @classmethod
    def reads(cls, train: dict[str, Any], bits: int | None) -> frozenset[str]:
        keys = {"loss", "stdev", "flip", "random_masks", *cls.own_keys, *loss_keys(str(train.get("loss")))}
        if bits is None:
            keys.add("random_phase")  # complex images only (augmentations_for)
        return frozenset({"method", "model", *(f"train.{k}" for k in keys)})

    @classmethod
    def check_bits(cls, bits: int | None) -> None:
        return None  # complex and magnitude variants alike

    @classmethod
    def train_hint(cls, method: str) -> str:
        return f"method={method}"

    @classmethod
    def build(cls, method: dict[str, Any], model: dict[str, Any], shape: tuple[int, int], net: Any = None) -> Any:
        """The method of `method` around `net`, by default the network of `model` (made for
        `shape` when it is of a fixed size); ValueError naming the key."""
        net = build_net(model, tuple(shape)) if net is None else net
        built = build_method(method, **{cls.component: net})
        if not isinstance(built, cls.method_class):
            raise TypeError(f"{type(built).__name__} is not a {cls.kind} method")
        return built

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
    ) -> Any:
        if float(train["stdev"]) < 0:
            raise UserError(f"train.stdev: {train['stdev']} must be >= 0")
        loss_config = configured("train", loss_settings, train)
        objective = configured("train", build_loss, loss_config, ReconstructionLoss, "reconstruction method")
        augmentations = augmentations_for(train, bits)
        configured("train", _check_measured_only, objective, augmentations["random_masks"])
        net = configured("model", build_net, model, tuple(shape))
        built = configured("method", cls.build, method, model, shape, net)
        built.amp = bool(amp)
        trainable = cls(built, method, model, loss_config, shape, augmentations, float(train["stdev"]), seed)
        trainable.configure(train)
        return trainable

    def configure(self, train: dict[str, Any]) -> None:
        """Apply the family's own train keys (`own_keys`) to the module."""

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], method: str | None = None) -> Any:
        if method is not None and ckpt.get("method") != method:
            raise Serves(f"holds a '{ckpt.get('method')}' model")
        shape = (int(ckpt["shape"][0]), int(ckpt["shape"][1]))
        built = cls.build(ckpt["method_config"], ckpt["model_config"], shape)
        built.load_state_dict(ckpt["model"])
        augmentations = {k: bool(v) for k, v in ckpt["augmentations"].items()}
        return cls(built.eval(), ckpt["method_config"], ckpt["model_config"], ckpt["loss"], shape, augmentations)

    # -- the trainable -----------------------------------------------------------------------
    def describe(self) -> str:
        loss = ", ".join(f"{k} {v}" for k, v in self.loss_config.items() if k != "loss")
        how = f"loss {self.loss_config['loss']}" + (f": {loss}" if loss else "")
        used = [name for name, on in self.augmentations.items() if on] + [f"stdev {self.stdev}"] * (self.stdev > 0)
        if used:
            how += "; augmented: " + ", ".join(used)
        return f"{self.method_config['name']} + {self.model_config['name']} ({how})"

    def loss(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """The loss of the augmented batch; a loss without reference sees measured samples only
        (unmeasured k-space is zeroed before anything reads it)."""
        measured_only = not self.objective.reference
        batch = augment(batch, generator, **self.augmentations, stdev=self.stdev, measured_only=measured_only)
        return self.objective(self.module, batch, generator)

    def validate(self, batch: Batch) -> dict[str, float]:
        found = validation_metrics(self.module, batch)
        if self.objective.reference:
            return found
        split = self.objective if isinstance(self.objective, SplitLoss) else SplitLoss(0.0, 0.0)
        holdout = split.holdout if split.holdout > 0 else VAL_HOLDOUT
        return {**found, **kspace_validation(self.module, batch, holdout, split.holdout_center, self.seed)}

    def images(self, batch: Batch) -> dict[str, np.ndarray]:
        return validation_images(self.module, batch)

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method_config["name"],
            "method_config": self.method_config,
            "model_config": self.model_config,
            "loss": self.loss_config,
            "shape": list(self.shape),
            "augmentations": self.augmentations,
        }

    def reconstructor(
        self, method: dict[str, Any], data_bits: int | None, amp: bool, given: Collection[str] = ()
    ) -> tuple[Method, dict[str, Any]]:
        applied = at_inference(type(self.module), method, self.method_config, given)
        if applied:  # rebuilt with the inference keys around the same weights
            old = self.module
            rebuilt = self.build({**self.method_config, **applied}, self.model_config, self.shape)
            rebuilt.load_state_dict(old.state_dict())
            self.keep_settings(old, rebuilt)
            self.module = rebuilt.to(next(old.parameters()).device).train(old.training)
        self.module.amp = bool(amp)
        fixed = (
            {"fixed_shape": list(self.shape)} if fixed_size(self.model_config["name"]) else {}
        )  # reconstruct checks it
        return self.module, {
            **self.method_config,
            **applied,
            "model": self.model_config["name"],
            "loss": self.loss_config["loss"],
            "trained_shape": list(self.shape),
            **fixed,
            **augmentation_label(self.augmentations),
        }

    def keep_settings(self, old: Any, new: Any) -> None:
        """Carry the module's run settings (not in its state) from `old` to its rebuilt `new`."""


def _check_measured_only(objective: ReconstructionLoss, random_masks: bool) -> None:
    """Refuse augmentations that need unmeasured k-space with a loss that reads no reference
    (ValueError naming random_masks)."""
    if not objective.reference and random_masks:
        raise ValueError(
            f"random_masks: loss {objective.name} reads measured samples only (no reference), and a new mask "
            "with the slice's number of samples needs k-space that was not measured (the holdout already gives "
            "the network a new random subset of the measured samples at every step)"
        )
