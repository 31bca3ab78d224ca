"""Every key a run accepts takes effect or is refused: the keys set on the command line, the
`train.*`, `model.*` and `method.*` keys a trainable family reads, and `hardware.amp` where bf16
autocast runs fast (mrirecon/training/hardware.py). The checks run before anything is written."""

from __future__ import annotations

import logging
from collections.abc import Collection

import torch
from hydra.core.hydra_config import HydraConfig

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError
from mrirecon.training.hardware import cpu_name, native_bf16

log = logging.getLogger(__name__)

# train.* keys of the training loop (mrirecon.training.settings.Settings, the optimizer and its
# schedule, resume): every family reads them; the others are read by the families that name them
# (Family.reads)
LOOP_KEYS = frozenset(
    {
        "epochs",
        "batch_size",
        "lr",
        "optimizer",
        "step_lr",
        "cosine_lr",
        "grad_clip",
        "max_minutes",
        "resume",
        "val_batch_size",
    }
)
# hardware.amp on a CPU without native bf16: a DBP training step in bf16 against float32 on the
# same CPU with oneDNN limited to AVX-512 without BF16, and to AVX2 (scripts/bench_same_arch.py,
# docs/benchmarks.md; with native bf16 the step was 1.45x faster)
AMP_SLOWDOWN = "2.3x (AVX-512 without BF16) to 31x (AVX2) slower"


def _command_line() -> set[str]:
    """The keys and groups of this run's command line (Hydra's task overrides, checked by the CLI
    before the run); none outside a Hydra run."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():
        return set()
    return {o.key_or_group for o in OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))}


def command_line_keys(section: str) -> set[str]:
    """The keys under `section` set on this run's command line, dotted and relative to it
    ('train.step_lr.gamma=0.5' -> 'step_lr.gamma')."""
    prefix = f"{section}."
    return {k[len(prefix) :] for k in _command_line() if k.startswith(prefix)}


def command_line_groups() -> set[str]:
    """The config groups (and top-level keys) given on this run's command line ('method=modl' -> 'method')."""
    return {k for k in _command_line() if "." not in k}


def check_train_keys(train_keys: Collection[str], given: Collection[str], what: str) -> None:
    """Refuse (UserError) a `train.*` key set on the command line (`given`, relative to train)
    that neither the loop nor the family (`train_keys`: what it reads with these settings) reads."""
    for key in sorted(given):
        top = key.split(".")[0]
        if top not in LOOP_KEYS and top not in train_keys:
            reads = ", ".join(sorted(train_keys)) or "none"
            raise UserError(f"train.{key}: not read by {what} (its own train.* keys here: {reads})")


def check_section_keys(section: str, used: bool, given: Collection[str], why: str) -> None:
    """Refuse a `<section>.*` key set on the command line (`given`) when the run does not use that
    config section (`used` false); `why` says so in the message."""
    if given and not used:
        raise UserError(f"{section}.{sorted(given)[0]}: not read: {why}")


def check_amp(amp: bool, device: torch.device, devices: Collection[str], what: str) -> None:
    """Refuse hardware.amp=true where it would do nothing (`devices`: where the run's network has
    a bf16 autocast path) or slow the run down: a CPU without native bf16 instructions (oneDNN
    emulates them), a GPU without bf16. A CPU whose features cannot be read gets a warning."""
    if not amp:
        return
    if device.type not in devices:
        where = f"on {' and '.join(devices)} only" if devices else "nowhere: it has no bf16 path"
        raise UserError(f"hardware.amp: true does nothing for {what} on {device.type} (bf16 autocast {where})")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(
            f"hardware.amp: {torch.cuda.get_device_name(device)} has no bf16 support; set hardware.amp=false"
        )
    if device.type != "cpu":
        return
    native = native_bf16()
    if native is None:
        log.warning("hardware.amp: cannot tell whether this CPU has native bf16; without it a step is %s", AMP_SLOWDOWN)
    elif not native:
        raise UserError(
            f"hardware.amp: this CPU ({cpu_name()}) has no native bf16 instructions (AVX512-BF16 or AMX-BF16), "
            f"so bf16 is emulated and a training step is {AMP_SLOWDOWN} than in float32 (docs/benchmarks.md); "
            "set hardware.amp=false"
        )


def check_file_variant(data: DeepInPyFile, bits: int | None, scale: float) -> None:
    """Refuse a processed file whose recorded variant is not data.bits and data.scale; a file
    that records none is not checked."""
    variant = data.header.variant
    if variant is None:
        return
    if variant.bits != bits:
        held = "complex images (bits null)" if variant.bits is None else f"{variant.bits}-bit images"
        raise UserError(f"data.bits: {bits}, but {data.path} holds {held} (data.path and data=<variant> disagree)")
    if abs(variant.scale - float(scale)) > 1e-9:
        raise UserError(
            f"data.scale: {scale}, but {data.path} holds images of scale {variant.scale} "
            "(data.path and data=<variant> disagree)"
        )
