"""reconstruct's method: a classical method built from its config, or a learned one rebuilt
from its checkpoint alone by the family that trained it (mrirecon.training.trainables), with
the method keys given on the command line applied or refused, and what the checkpoint was
trained on."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from mrirecon.errors import UserError, configured
from mrirecon.io import provenance
from mrirecon.io.files import load_checkpoint
from mrirecon.methods import REGISTRY, Method, build_method
from mrirecon.tasks.common import plain
from mrirecon.tasks.settings import check_amp, command_line_keys
from mrirecon.training.trainables import TRAINABLES, rebuild


def trained_on(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint was trained on: data_path, source_id and train_subjects (when recorded)."""
    keys = ("data_path", "source_id", "train_subjects")
    return {k: ckpt[k] for k in keys if k in ckpt} if all(k in ckpt for k in keys) else {}


def method_of(cfg: DictConfig, device: torch.device) -> tuple[Method, dict[str, Any], dict[str, Any]]:
    """The method to run, its configuration (for learned methods: the trained family rebuilt from
    the checkpoint alone, via the trainables registry) and what its checkpoint was trained on
    (empty for methods without one)."""
    name = str(cfg.method.name)
    checkpoint = cfg.get("checkpoint")
    kind = REGISTRY[name].checkpoint_kind
    if kind is None:
        if checkpoint:
            raise UserError(f"checkpoint: method={name} is not a learned method and takes no checkpoint")
        check_amp(bool(cfg.hardware.amp), device, (), f"method={name}")
        return configured("method", build_method, plain(cfg.method)), plain(cfg.method), {}
    family = TRAINABLES[kind]
    check_amp(bool(cfg.hardware.amp), device, family.amp_devices, f"method={name}")
    hint = f"'mrirecon train {family.train_hint(name)}'"
    if not checkpoint:
        raise UserError(f"method={name} needs checkpoint=PATH (train one with {hint})")
    trust = bool(cfg.get("trust_checkpoint", False))
    ckpt = load_checkpoint(str(checkpoint), "checkpoint", trust, f"retrain it with {hint}")
    trained = configured("checkpoint", rebuild, ckpt, str(checkpoint), kind, name)
    configured("data", family.check_bits, cfg.data.bits)
    trained.module.to(device).eval()
    method, method_config = configured(
        "method",
        trained.reconstructor,
        plain(cfg.method),
        cfg.data.bits,
        bool(cfg.hardware.amp),
        given=command_line_keys("method"),
    )
    state = ckpt["state"] if isinstance(ckpt.get("state"), dict) else {}
    chosen_by = str(state.get("best_by", trained.select))  # recorded by the Trainer
    record = provenance.checkpoint_record(str(checkpoint), ckpt, chosen_by)
    record["budget"] = provenance.training_budget(ckpt, sum(p.numel() for p in trained.module.parameters()))
    return method, method_config, {**trained_on(ckpt), "record": record}
