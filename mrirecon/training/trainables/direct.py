"""The direct family (unet_image, automap: mrirecon.methods.direct): one network of the model
group from the measured data to the image, trained by `mrirecon train method=<name>` (its config
chooses its network: model=fastmri_unet, model=automap); its checkpoint is the whole method."""

from __future__ import annotations

from typing import ClassVar

from mrirecon.methods.direct import Direct
from mrirecon.training.trainables.base import register_trainable
from mrirecon.training.trainables.reconstructors import ReconstructorFamily


@register_trainable
class DirectTrainable(ReconstructorFamily):
    """A direct method and its network (`ReconstructorFamily` has the arguments)."""

    kind: ClassVar[str] = "direct"
    amp_devices: ClassVar[tuple[str, ...]] = ("cuda",)  # Direct.run_network
    component: ClassVar[str] = "net"
    method_class: ClassVar[type] = Direct
    module: Direct
