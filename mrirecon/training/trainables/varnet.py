"""The E2E-VarNet family (method=varnet with model=varnet or varnet_small: mrirecon.methods.varnet,
mrirecon.nets.varnet): trained by `mrirecon train method=varnet model=<varnet|varnet_small>` as the
direct methods are (`ReconstructorFamily`: the losses of mrirecon.losses, augmentations,
checkpoints of the whole method: its networks and data-consistency weights). Its own family
because its network is a `NetworkSet`, which the direct and unrolled methods cannot take."""

from __future__ import annotations

from typing import ClassVar

from mrirecon.methods import REGISTRY
from mrirecon.methods.varnet import VarNet
from mrirecon.nets import NETS
from mrirecon.nets.varnet import VarNetNets
from mrirecon.training.trainables.base import register_trainable
from mrirecon.training.trainables.reconstructors import ReconstructorFamily


@register_trainable
class VarNetTrainable(ReconstructorFamily):
    """E2E-VarNet and its networks (`ReconstructorFamily` has the arguments)."""

    kind: ClassVar[str] = "varnet"
    amp_devices: ClassVar[tuple[str, ...]] = ("cuda",)  # VarNet._run
    component: ClassVar[str] = "net"
    method_class: ClassVar[type] = VarNet
    module: VarNet

    @classmethod
    def trains(cls, method: str, model: str) -> bool:
        served = method in REGISTRY and REGISTRY[method].checkpoint_kind == cls.kind
        return served and model in NETS and issubclass(NETS[model], VarNetNets)
