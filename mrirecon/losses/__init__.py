"""Training losses, apart from the methods and networks they train, and their registry.

Every module of this package is imported when the registry is first read (mrirecon/registry.py),
so a loss is one module with `@register_loss("<name>")`; `train.loss=<name>` chooses it and its
constructor's parameters are `train.*` keys of the same names (mrirecon/losses/base.py).
"""

from mrirecon.losses.base import (
    LOSSES,
    DensityLoss,
    Loss,
    ReconstructionLoss,
    ScoreLoss,
    build_loss,
    loss_keys,
    loss_settings,
    register_loss,
)

__all__ = [
    "LOSSES",
    "DensityLoss",
    "Loss",
    "ReconstructionLoss",
    "ScoreLoss",
    "build_loss",
    "loss_keys",
    "loss_settings",
    "register_loss",
]
