"""The unrolled family (dbp, modl with a denoiser of the model group): trained by `mrirecon train
method=<dbp|modl> model=<resnet|unet|...>`; its checkpoint is the whole method (denoiser and
learned weight)."""

from __future__ import annotations

from typing import Any, ClassVar

from mrirecon.methods.unrolled import Unrolled
from mrirecon.training.trainables.base import register_trainable
from mrirecon.training.trainables.reconstructors import ReconstructorFamily


@register_trainable
class UnrolledTrainable(ReconstructorFamily):
    """An unrolled method with its denoiser (`ReconstructorFamily` has the arguments); its own
    train key: checkpoint_unrolls (activation checkpointing per unroll)."""

    kind: ClassVar[str] = "unrolled"
    amp_devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")  # Unrolled.denoise
    component: ClassVar[str] = "denoiser"
    method_class: ClassVar[type] = Unrolled
    own_keys: ClassVar[frozenset[str]] = frozenset({"checkpoint_unrolls"})
    module: Unrolled

    def configure(self, train: dict[str, Any]) -> None:
        self.module.checkpoint_unrolls = bool(train.get("checkpoint_unrolls", False))

    def keep_settings(self, old: Any, new: Any) -> None:
        new.checkpoint_unrolls = old.checkpoint_unrolls
