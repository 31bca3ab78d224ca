"""Helpers shared by the tasks: config checks, devices, data opening, run-dir access."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from mrirecon.data import source as sources
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.masks import KINDS
from mrirecon.data.source import ReadOptions, Source
from mrirecon.errors import UserError, configured
from mrirecon.training import distributed as ddp

log = logging.getLogger(__name__)


def run_dir() -> Path:
    """The Hydra output folder of the current job."""
    return Path(HydraConfig.get().runtime.output_dir)


def device_of(cfg: DictConfig) -> torch.device:
    """The torch device named by `hardware.device` (auto: cuda when available, else cpu),
    checked to exist."""
    name = str(cfg.hardware.device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"hardware.device: unknown device '{name}' (expected auto, cpu or cuda[:N])") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"hardware.device={name}: CUDA is not available on this machine (use hardware=cpu, or "
            "hardware.device=cpu or auto)"
        )
    return device


def training_setup(cfg: DictConfig) -> tuple[Path, torch.device]:
    """The run dir and device of a training job. With hardware=ddp under torchrun it joins the
    process group first: every rank then uses rank 0's run dir (to resume from and write to)
    and its own device, and ranks other than 0 log warnings only."""
    device = device_of(cfg)
    if bool(cfg.hardware.get("distributed", False)):
        if not ddp.launched():
            log.info(
                "hardware=ddp without torchrun: training in one process "
                "(start N with: torchrun --nproc_per_node=N -m mrirecon train hardware=ddp ...)"
            )
        device = ddp.init(device, str(cfg.hardware.get("backend", "auto")))
        if not ddp.is_main():
            logging.getLogger().setLevel(logging.WARNING)
    return Path(ddp.broadcast_object(str(run_dir()))), device


def variant_of(cfg: DictConfig) -> tuple[int | None, float]:
    """(bits, scale) of `data`, validated: bits in {4, 8, null}, 0 < scale <= 1."""
    bits, scale = cfg.data.bits, cfg.data.scale
    if bits is not None and (isinstance(bits, bool) or bits not in (4, 8)):
        raise UserError(f"data.bits: {bits!r} is not one of 4, 8 or null")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise UserError(f"data.scale: {scale!r} is not a number in (0, 1]") from None
    if not 0 < scale <= 1:
        raise UserError(f"data.scale: {scale} is not in (0, 1]")
    return bits, scale


def source_spec(cfg: DictConfig) -> str | list[str]:
    """data.source as a path string, a list of path strings, or a named source ('sample')."""
    value = cfg.data.source
    if isinstance(value, ListConfig):
        return [str(v) for v in value]
    return str(value)


def read_options(cfg: DictConfig) -> ReadOptions:
    """The `data.*` keys that readers use, checked here so that errors name the config key."""
    e, u = cfg.data.espirit, cfg.data.undersampling
    if str(cfg.data.mask) not in KINDS:
        raise UserError(f"data.mask: unknown mask '{cfg.data.mask}' (expected {', '.join(KINDS)})")
    for key in ("accel", "calib", "center_fraction"):
        value = u[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"data.undersampling.{key}: {value!r} is not a number")
    if not u.accel > 1:
        raise UserError(f"data.undersampling.accel: {u.accel} must be > 1")
    if not isinstance(u.calib, int) or u.calib < 0:
        raise UserError(f"data.undersampling.calib: {u.calib} must be an integer >= 0")
    readout = u.get("readout", False)
    if not isinstance(readout, bool):
        raise UserError(f"data.undersampling.readout: {readout!r} must be true or false")
    if u.seed is not None and (isinstance(u.seed, bool) or not isinstance(u.seed, int)):
        raise UserError(f"data.undersampling.seed: {u.seed!r} must be an integer or null (fastMRI's file-name seeds)")
    if not 0 < u.center_fraction < 1:
        raise UserError(f"data.undersampling.center_fraction: {u.center_fraction} must be in (0, 1)")
    return ReadOptions(
        prewhiten=prewhiten_option(cfg),
        transpose=bool(cfg.data.transpose),
        calib_width=int(e.calib_width),
        thresh=float(e.thresh),
        crop=float(e.crop),
        mask=str(cfg.data.mask),
        readout=readout,
        accel=float(u.accel),
        calib=int(u.calib),
        center_fraction=float(u.center_fraction),
        seed=None if u.seed is None else int(u.seed),
        slices_per_subject=cfg.data.slices_per_subject,
        device=str(device_of(cfg)) if "hardware" in cfg else "cpu",
        formats=configured("data", sources.format_options, cfg.data),
    )


def prewhiten_option(cfg: DictConfig) -> str:
    """`data.prewhiten` checked: 'auto', 'true' or 'false' (YAML booleans accepted)."""
    value = cfg.data.get("prewhiten", "auto")
    text = str(value).lower() if isinstance(value, (bool, str)) else None
    if text not in ("auto", "true", "false"):
        raise UserError(f"data.prewhiten: {value!r} must be auto, true or false")
    return text


def open_source(cfg: DictConfig) -> Source:
    """The raw input of preprocess: a named source (the embedded sample), or the file(s) of
    data.source read by the reader their content calls for (data/source.py)."""
    return sources.open_source(source_spec(cfg), read_options(cfg))


def open_processed(cfg: DictConfig) -> DeepInPyFile:
    """The processed file `data.path` (a dataset folder of a sharded preprocess: its parts as one
    dataset, data/shards.py), with a hint when it has not been made yet; the `data` options are
    checked first, as in preprocess (a bad data.bits or data.scale is an error in every
    subcommand, not only where it is used)."""
    variant_of(cfg)
    path = Path(str(cfg.data.path))
    if not path.exists():
        raise UserError(
            f"data.path: {path} not found (make it with 'mrirecon preprocess data={cfg.data.name}' or set data.path)"
        )
    if path.is_dir():
        from mrirecon.data.shards import DatasetFolder

        return DatasetFolder(path)
    return DeepInPyFile(path)


def overwrite(cfg: DictConfig) -> bool:
    """`overwrite=true`: outputs may replace files that this subcommand did not write, or a finished
    run (only the files it writes: mrirecon/io/ownership.py)."""
    return bool(cfg.get("overwrite", False))


def plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of a config node."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


MAPS_CHOICES = ("source", "espirit")  # data.maps: the source's coil maps, or ESPIRiT from the measured data


def maps_option(cfg: DictConfig) -> str:
    """`data.maps`, checked: source (the maps the source ships, or ESPIRiT where it has none) or espirit."""
    value = str(cfg.data.get("maps", "source"))
    if value not in MAPS_CHOICES:
        raise UserError(f"data.maps: '{value}' is not one of {', '.join(MAPS_CHOICES)}")
    return value


def model_error_warning(ratios: list[float], fires: list[bool], where: str) -> str | None:
    """The one warning line of the model-error check (physics/model_error.py) over the slices of
    `where`, naming the remedy; None when it fires on no slice."""
    from mrirecon.physics.model_error import RATIO_LIMIT

    hit = [r for r, f in zip(ratios, fires) if f]
    if not hit:
        return None
    return (
        f"model error: on {len(hit)} of {len(ratios)} slices of {where} the coil maps do not explain the fully "
        f"sampled calibration region (residual {min(hit):.1f}-{max(hit):.1f} x the noise, limit {RATIO_LIMIT:g}: "
        "their support cuts the object, or they do not fit the data); re-estimate them from the data: preprocess "
        "with data.maps=espirit where the source ships maps, or a lower data.espirit.crop / data.espirit.thresh for "
        "ESPIRiT maps (lam=auto adds a zero-filled anchor on those slices: rule model)"
    )
