"""`mrirecon reconstruct`: run one method on a split and record metrics, images and figures.

The story of a run: resolve the options, open the method (`recon_method.method_of`) and the
data, then `recon_slices.reconstruct_slices` yields one `SliceRecord` per slice (batch by batch:
load, resolve the noise std once, reconstruct, measure) and `recon_outputs.write_run` turns the
records into the run dir's files, all or nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mrirecon.data.dataset import SliceDataset
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError
from mrirecon.evaluation import metrics
from mrirecon.io import provenance
from mrirecon.io.ownership import Outputs
from mrirecon.methods import Method
from mrirecon.tasks.common import device_of, model_error_warning, open_processed, overwrite, plain, run_dir
from mrirecon.tasks.recon_method import method_of
from mrirecon.tasks.recon_outputs import OutputOptions, output_names, write_run
from mrirecon.tasks.recon_slices import Units, reconstruct_slices
from mrirecon.tasks.recon_summary import RunFacts
from mrirecon.tasks.settings import check_file_variant

log = logging.getLogger(__name__)
NOISE_ESTIMATED = "estimated from the measured data (physics/noise.py): the file stores none"


@dataclass(frozen=True)
class ReconOptions:
    """The run's own keys, checked: batch_size (slices reconstructed together), seed, and what
    the outputs hold."""

    batch_size: int
    seed: int
    output: OutputOptions


def options_of(cfg: DictConfig) -> ReconOptions:
    """objective, batch_size, seed, output.cfl and figures, checked (output.cfl_axes: the
    data's, set once the data are open)."""
    objective = str(cfg.get("objective", "psnr"))
    if objective not in metrics.NAMES:
        raise UserError(f"objective: '{objective}' is not one of {', '.join(metrics.NAMES)}")
    if int(cfg.batch_size) < 1:
        raise UserError(f"batch_size: {cfg.batch_size} must be >= 1")
    output = OutputOptions(objective=objective, cfl=bool(cfg.output.cfl), figures=int(cfg.figures))
    return ReconOptions(batch_size=int(cfg.batch_size), seed=int(cfg.seed), output=output)


def image_shape(data: DeepInPyFile) -> tuple[int, int]:
    """The size of the images in every output: the file's recon size (fastMRI's reconSpace, e.g.
    320x320) where it records one, as fastMRI crops, else its k-space grid."""
    return data.header.recon_size or data.shape


def has_reference(data: DeepInPyFile) -> bool:
    """Whether the file holds reference images (raw undersampled data does not)."""
    return data.header.has_reference


def units_of(data: DeepInPyFile) -> Units:
    """The subject and the volume of every slice of the file (None: it records no subjects, and
    the column stays empty; volumes: the subjects where it records none)."""
    subjects = data.subjects()
    volumes = data.volumes()
    return subjects, subjects if volumes is None else volumes


def check_training_subjects(cfg: DictConfig, trained: dict[str, Any], data: DeepInPyFile, indices: np.ndarray) -> None:
    """Refuse to report on slices of subjects a checkpoint was trained on (unless
    allow_train_slices=true); warn when the file is not the training file, or when its source
    differs so that the check cannot be made."""
    if "train_subjects" not in trained:
        return
    here = data.header.source_id or ""
    if here != trained["source_id"]:
        log.warning(
            "checkpoint %s was trained on %s (source %s); %s comes from source %s: cannot check that no "
            "training subject is evaluated",
            cfg.checkpoint,
            trained["data_path"],
            trained["source_id"],
            data.path,
            here or "unknown",
        )
        return
    if Path(trained["data_path"]).resolve() != data.path.resolve():
        log.warning(
            "checkpoint %s was trained on %s, not on %s (same source: training subjects checked)",
            cfg.checkpoint,
            trained["data_path"],
            data.path,
        )
    subjects = data.subjects()
    subjects = np.arange(data.num_slices) if subjects is None else subjects
    seen = np.isin(subjects[indices], np.asarray(trained["train_subjects"]))
    if not seen.any():
        return
    what = (
        f"{int(seen.sum())} of the {len(indices)} slices of data.split={cfg.data.split} belong to subjects "
        f"checkpoint {cfg.checkpoint} was trained on"
    )
    if not bool(cfg.allow_train_slices):
        raise UserError(f"{what}; evaluate on data.split=test or val, or set allow_train_slices=true")
    log.warning("%s (allow_train_slices=true): those results are not a test of generalisation", what)


def check_trained_size(cfg: DictConfig, method_config: dict[str, Any], data: DeepInPyFile) -> None:
    """A method whose config records `fixed_shape` (a flow prior, AUTOMAP) works only at the image
    size it was trained at: refuse other data up front."""
    fixed = method_config.get("fixed_shape")
    if fixed is not None and tuple(fixed) != tuple(data.shape):
        raise UserError(
            f"checkpoint: the model in {cfg.checkpoint} was trained on {fixed[0]}x{fixed[1]} images, "
            f"{data.path} holds {data.shape[0]}x{data.shape[1]} (data={cfg.data.name}): "
            f"method={cfg.method.name} works only at its training size"
        )


def split_of(cfg: DictConfig, data: DeepInPyFile) -> np.ndarray:
    """The slice indices of `data.split`, refused when empty."""
    indices = data.split_indices(str(cfg.data.split))
    if len(indices) == 0:
        raise UserError(
            f"data.split: split '{cfg.data.split}' of {data.path} is empty "
            f"({data.num_slices} slices in all; data.split=all uses every slice)"
        )
    return indices


def cfl_axes_of(data: DeepInPyFile) -> tuple[int, int]:
    """The BART dims of the image plane of the data's source (recon.cfl keeps them)."""
    return data.header.cfl_axes


def facts_of(
    cfg: DictConfig, method: Method, method_config: dict[str, Any], trained: dict[str, Any], data: DeepInPyFile
) -> RunFacts:
    """What the outputs record about the run besides its slices."""
    checkpoint = cfg.get("checkpoint")
    header = data.header
    compression = header.coil_compression
    return RunFacts(
        method=method.name,
        variant=str(cfg.data.name),
        bits=cfg.data.bits,
        scale=float(cfg.data.scale),
        split=str(cfg.data.split),
        data_path=str(cfg.data.path),
        method_config=method_config,
        checkpoint=None if checkpoint is None else str(Path(str(checkpoint)).resolve()),
        checkpoint_info=trained.get("record"),
        seed=int(cfg.seed),
        overrides=list(HydraConfig.get().overrides.task),
        hardware=plain(cfg.hardware),
        has_reference=has_reference(data),
        has_rss=header.has_rss and header.has_reference,
        shape=image_shape(data),
        cropped=header.recon_size is not None,
        noise_definition=header.noise_std_definition or NOISE_ESTIMATED,
        prewhitened=header.prewhitened,
        coil_compression="none" if compression is None else compression.description,
        param_units=dict(method.units),
        mask=header.mask or "",
    )


def check_data(
    cfg: DictConfig, method_config: dict[str, Any], trained: dict[str, Any], data: DeepInPyFile
) -> np.ndarray:
    """The slices to reconstruct, after the checks that the checkpoint may be run on them."""
    check_file_variant(data, cfg.data.bits, float(cfg.data.scale))
    indices = split_of(cfg, data)
    check_training_subjects(cfg, trained, data, indices)
    selected = provenance.selection_warning(trained.get("record"), str(cfg.data.split))
    if selected:
        log.warning("checkpoint %s: %s", cfg.checkpoint, selected)
    check_trained_size(cfg, method_config, data)
    return indices


def log_summary(summary: dict[str, Any], out: Path) -> None:
    """One line with the run's means (without a reference: its data consistency, no metrics)."""
    means = summary["mean"]
    if not summary["has_reference"]:
        log.info(
            "%s on %s (%d slices): no reference image (raw undersampled data: no metrics), data consistency "
            "%.4f, R %.2f  %.3f s/slice -> %s",
            summary["method"],
            summary["variant"],
            summary["num_slices"],
            summary["data_consistency"]["mean"],
            summary["acceleration"]["mean"],
            means["seconds"],
            out,
        )
        return
    log.info(
        "%s on %s (%d slices): NRMSE %.4f  PSNR %.2f dB  SSIM %.4f  %.3f s/slice -> %s",
        summary["method"],
        summary["variant"],
        summary["num_slices"],
        means["nrmse"],
        means["psnr"],
        means["ssim"],
        means["seconds"],
        out,
    )


def run(cfg: DictConfig) -> float:
    """Reconstruct `data.split` of `data.path` with `method`; write the run dir's outputs.

    Writes metrics.csv (one row per slice), summary.json (means, std, config, metric
    convention), recon.h5 (recon and reference images, slice indices), figures/, and with
    output.cfl=true recon.cfl/.hdr (the recon images for BART, in the order of recon.h5).
    Images are reconstructed on the file's k-space grid and, when the file records a recon size
    (fastMRI's reconSpace), centre-cropped to it as fastMRI does, before metrics, figures and
    outputs. Returns the mean of `objective` (psnr, ssim or nrmse) over the slices: the value a
    Hydra sweeper (hydra/sweeper=optuna) optimises; NaN without a reference.
    """
    options = options_of(cfg)
    out = run_dir()
    outputs = outputs_of(cfg, out)
    outputs.claim(output_names(np.zeros(0, int), options.output))  # before any work: the fixed names
    device = device_of(cfg)
    method, method_config, trained = method_of(cfg, device)
    data = open_processed(cfg)
    try:
        indices = check_data(cfg, method_config, trained, data)
        names = output_names(indices, options.output)
        outputs.claim(names)  # the figures' names too
        facts = facts_of(cfg, method, method_config, trained, data)
        output = replace(options.output, cfl_axes=cfl_axes_of(data))
        torch.manual_seed(options.seed)
        dataset = SliceDataset(data, indices, rss=data.header.has_rss)
        records = reconstruct_slices(
            method, dataset, options.batch_size, device, units_of(data), image_shape(data), has_reference(data)
        )
        summary = write_run(out, records, facts, indices, output)
    finally:
        data.close()
    check = summary["model_error"]
    warning = model_error_warning(check["per_slice"], check["fires"], f"{data.path} (data.split={cfg.data.split})")
    if warning:
        log.warning("%s", warning)
    outputs.commit(names)
    log_summary(summary, out)
    return float(summary["objective"]["value"])


def outputs_of(cfg: DictConfig, out: Path) -> Outputs:
    """The run dir's files as reconstruct owns them (ownership.Outputs)."""
    return Outputs(out, "reconstruct", replace=overwrite(cfg))
