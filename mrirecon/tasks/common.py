"""Helpers shared by the tasks: config checks, devices, data opening, run-dir access."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mrirecon import distributed as ddp
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.raw import RawKspaceSource
from mrirecon.data.sample import SampleSource
from mrirecon.errors import UserError

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
        raise UserError(f"hardware.device={name}: CUDA is not available on this machine (use hardware=cpu, or "
                        "hardware.device=cpu or auto)")
    return device


def training_setup(cfg: DictConfig) -> tuple[Path, torch.device]:
    """The run dir and device of a training job. With hardware=ddp under torchrun it joins the
    process group first: every rank then uses rank 0's run dir (to resume from and write to)
    and its own device, and ranks other than 0 log warnings only."""
    device = device_of(cfg)
    if bool(cfg.hardware.get("distributed", False)):
        if not ddp.launched():
            log.info("hardware=ddp without torchrun: training in one process "
                     "(start N with: torchrun --nproc_per_node=N -m mrirecon train hardware=ddp ...)")
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


def open_source(cfg: DictConfig) -> DeepInPyFile | SampleSource | RawKspaceSource:
    """The raw input of preprocess: the embedded sample, a DeepInPy-format file, or raw
    k-space without coil maps (.npy, or .h5 without 'maps': maps estimated by ESPIRiT)."""
    source = str(cfg.data.source)
    if source == "sample":
        s = cfg.data.sample
        return SampleSource(accel=s.accel, calib=s.calib, coils=s.coils, seed=s.seed, noise=s.noise)
    path = Path(source)
    if path.suffix == ".npy" or _h5_without_maps(path):
        e = cfg.data.espirit
        return RawKspaceSource(path, bool(cfg.data.transpose), e.calib_width, e.thresh, e.crop)
    return DeepInPyFile(path, transpose=bool(cfg.data.transpose))


def _h5_without_maps(path: Path) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return "maps" not in f and "ksp" in f
    except OSError:
        return False  # missing or not HDF5: DeepInPyFile reports it


def open_processed(cfg: DictConfig) -> DeepInPyFile:
    """The processed file `data.path`, with a hint when it has not been made yet; the `data`
    options are checked first, as in preprocess (a bad data.bits or data.scale is an error in
    every subcommand, not only where it is used)."""
    variant_of(cfg)
    path = Path(str(cfg.data.path))
    if not path.exists():
        raise UserError(
            f"data.path: {path} not found (make it with 'mrirecon preprocess data={cfg.data.name}' or set data.path)"
        )
    return DeepInPyFile(path)


def plain(cfg: Any) -> Any:
    """A resolved plain-Python copy of a config node."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
