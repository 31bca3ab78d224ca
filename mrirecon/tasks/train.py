"""`mrirecon train`: fit any trainable family (mrirecon.training.trainables) on the train split of
`data.path`, validating on the val split: `method=<dbp|modl> model=<resnet|unet|...>` (an
unrolled method), `method=<unet_image|automap>` (a direct method, its network chosen by its
config), `model=<flow|flow_student>` (the flow prior), each with the loss of `train.loss`
(mrirecon.losses). One path for all: the family is chosen by the registry from the method and
the network, trained by the one Trainer."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mrirecon.data.dataset import SliceDataset
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError, configured
from mrirecon.losses.base import lookup
from mrirecon.methods import REGISTRY
from mrirecon.tasks.common import open_processed, plain, training_setup, variant_of
from mrirecon.tasks.settings import (
    check_amp,
    check_file_variant,
    check_section_keys,
    check_train_keys,
    command_line_groups,
    command_line_keys,
)
from mrirecon.tasks.train_common import (
    check_run_dir,
    clear_run_dir,
    positive,
    resume_path,
    settings_of,
    training_data,
)
from mrirecon.training import distributed as ddp
from mrirecon.training.callbacks import RecordOutputs, RunInfo, standard_callbacks
from mrirecon.training.schedules import schedule
from mrirecon.training.trainables import TRAINABLES, Family, Trainable, family_for
from mrirecon.training.trainer import Trainer

log = logging.getLogger(__name__)
OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def _family(cfg: DictConfig) -> Family:
    """The trainable family of `method` and `model`, or a UserError naming what can be trained."""
    name, model = str(cfg.method.name), str(cfg.model.name)
    family = family_for(name, model)
    if family is None:
        served = sorted(k for k, v in REGISTRY.items() if v.checkpoint_kind is not None)
        hints = sorted({TRAINABLES[str(REGISTRY[k].checkpoint_kind)].train_hint(k) for k in served})
        raise UserError(f"method={name} model={model}: nothing to train (trainable: {'; '.join(hints)})")
    return family


def _model_choice(cfg: DictConfig) -> str:
    """The model config chosen on the command line (conf/model/<name>.yaml), else model.name."""
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return str(choices.get("model") or cfg.model.name)


def check_settings(
    cfg: DictConfig,
    family: Family,
    bits: int | None,
    given: Callable[[str], set[str]] = command_line_keys,
    groups: Callable[[], set[str]] = command_line_groups,
) -> None:
    """Refuse `train.*`, `model.*` and `method.*` keys set on the command line (`given(section)`:
    the keys of a section given there), and a `method=` choice (`groups()`: the groups chosen
    there), that this family does not read."""
    name = str(cfg.method.name)
    reads = configured("train", family.reads, plain(cfg.train), bits)
    what = f"method={name} (the {family.kind} family)" if "method" in reads else f"the {family.kind} family"
    check_train_keys({k[len("train.") :] for k in reads if k.startswith("train.")}, given("train"), what)
    check_section_keys("model", "model" in reads, given("model"), f"the {family.kind} family builds no network")
    alone = f"the {family.kind} family trains its network alone (method.* keys apply when reconstructing with it)"
    check_section_keys("method", "method" in reads, given("method"), alone)
    if "method" not in reads and "method" in groups():
        served = " | ".join(sorted(m for m, c in REGISTRY.items() if c.checkpoint_kind == family.kind))
        raise UserError(
            f"method={name}: not read: model={cfg.model.name} trains the {family.kind} prior alone "
            f"(train it with 'mrirecon train {family.train_hint(name)}', reconstruct with method={served} checkpoint=...)"
        )


def optimizer_of(cfg: DictConfig) -> tuple[Callable[..., torch.optim.Optimizer], float]:
    """The optimizer class of train.optimizer and the learning rate train.lr, checked."""
    lr = positive("train.lr", cfg.train.lr)
    optimizer_name = str(cfg.train.optimizer)
    if optimizer_name not in OPTIMIZERS:
        raise UserError(f"train.optimizer: '{optimizer_name}' is not one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[optimizer_name], lr


def stored_splits(data: DeepInPyFile) -> dict[str, Any]:
    """The file's split indices, refused when absent or when train or val is empty."""
    splits = data.splits()
    if splits is None:
        raise UserError(
            f"{data.path}: no split indices stored; training uses the train split only (run 'mrirecon preprocess')"
        )
    if len(splits["train"]) == 0 or len(splits["val"]) == 0:
        raise UserError(
            f"{data.path}: the train and val splits must not be empty "
            f"({len(splits['train'])} / {len(splits['val'])} slices)"
        )
    return splits


def trainable_of(
    cfg: DictConfig, family: Family, data: DeepInPyFile, bits: int | None, seed: int, device: torch.device
) -> Any:
    """The family's trainable built from method, model and train (initial weights from `seed`), on `device`."""
    torch.manual_seed(seed)  # the same initial weights for the same seed
    method, model = plain(cfg.method), plain(cfg.model)
    for section in (method, model):
        section.pop("train_defaults", None)  # read by the train.* keys (conf/train.yaml), not an argument
    trainable = family.from_config(
        method,
        model,
        plain(cfg.train),
        shape=(int(data.shape[0]), int(data.shape[1])),
        bits=bits,
        seed=seed,
        amp=bool(cfg.hardware.amp),
    )
    trainable.module.to(device)
    return trainable


def callbacks_of(
    out: Path, trainable: Trainable, family: Family, max_minutes: float | None, parameters: int
) -> list[Any]:
    """The standard callbacks and, on the main process, training.json (what this run trains,
    for evaluate's training curves) and the record of the files the run writes."""
    hooks = standard_callbacks(ddp.is_main(), max_minutes)
    if ddp.is_main():
        info = {"trains": trainable.describe(), "kind": family.kind, "parameters": parameters}
        hooks += [RunInfo(out / "training.json", info), RecordOutputs(out)]  # last: records what the others wrote
    return hooks


def datasets(cfg: DictConfig, data: DeepInPyFile, train_idx: Any, val_idx: Any) -> tuple[SliceDataset, SliceDataset]:
    """The training and validation slices: a loss that reads no reference (self-supervised)
    gets measured k-space only and no reference image; validation reads everything."""
    reference = configured("train", lookup, cfg.train.loss).reference
    return SliceDataset(data, train_idx, reference=reference, measured_only=not reference), SliceDataset(data, val_idx)


def scheduler_of(cfg: DictConfig, optimizer: torch.optim.Optimizer, epochs: int) -> Any:
    """The learning-rate schedule of train.cosine_lr and train.step_lr (None: constant; both
    checked by settings_of)."""
    return configured("train", schedule, optimizer, epochs, plain(cfg.train.step_lr), bool(cfg.train.cosine_lr))


def log_outcome(state: dict[str, Any], select: str, out: Path) -> None:
    """The last epoch's validation and the best value; a warning when no epoch finished."""
    if state["history"]:
        last = state["history"][-1]
        val = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k.startswith("val_"))
        log.info(
            "done: epoch %d, %s (best %s %.4f); checkpoints in %s",
            last["epoch"],
            val,
            select,
            state["best"],
            out / "checkpoints",
        )
    if not math.isfinite(state["best"]):
        log.warning("no epoch finished: best.pt was not written (raise train.max_minutes)")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train the family of `method` and `model` on `data.path`; write checkpoints/ (the family's
    own config and entries, split indices, training subjects), tensorboard/ and metrics.csv
    (validation per epoch) into the run dir. Returns the final loop state."""
    family = _family(cfg)
    bits, scale = variant_of(cfg)
    configured("data", family.check_bits, bits)
    check_settings(cfg, family, bits)
    out, device = training_setup(cfg)
    check_amp(bool(cfg.hardware.amp), device, family.amp_devices, f"method={cfg.method.name}")
    settings = settings_of(cfg)
    optimizer_class, lr = optimizer_of(cfg)
    resume = resume_path(cfg, out)
    check_run_dir(cfg, out, resume)
    data = open_processed(cfg)
    check_file_variant(data, bits, scale)
    splits = stored_splits(data)
    train_idx, val_idx = splits["train"], splits["val"]
    trainable = trainable_of(cfg, family, data, bits, settings.seed, device)
    optimizer = optimizer_class(trainable.module.parameters(), lr=lr)
    parameters = sum(p.numel() for p in trainable.module.parameters())
    train_set, val_set = datasets(cfg, data, train_idx, val_idx)
    trainer = Trainer(
        trainable=trainable,
        optimizer=optimizer,
        scheduler=scheduler_of(cfg, optimizer, settings.epochs),
        train_set=train_set,
        val_set=val_set,
        out_dir=out,
        config=plain(cfg),
        settings=settings,
        device=device,
        callbacks=callbacks_of(out, trainable, family, settings.max_minutes, parameters),
        extra={
            "splits": {s: v.tolist() for s, v in splits.items()},
            **training_data(data, train_idx),
            "model_config_name": _model_choice(cfg),  # flow and flow_student both build a 'flow' net
        },
    )
    log.info(
        "training %s on %s: %d train / %d val slices, %d parameters -> %s",
        trainable.describe(),
        cfg.data.path,
        len(train_idx),
        len(val_idx),
        parameters,
        out,
    )
    if ddp.is_main():
        clear_run_dir(cfg, out, resume)
    state = trainer.fit(resume)
    log_outcome(state, trainable.select, out)
    return state
