"""`mrirecon reconstruct`: run one method on a split and record metrics, images and figures.

The story of a run: resolve the options, open the method and the data, then
`reconstruct_slices` yields one `SliceRecord` per slice (batch by batch: load, resolve the noise
std once, reconstruct, measure) and `recon_outputs.write_run` turns the records into the run
dir's files, all or nothing."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from mrirecon.data.h5 import DeepInPyFile, region_size
from mrirecon.data.transforms import center_crop
from mrirecon.errors import UserError, configured
from mrirecon.evaluation import metrics
from mrirecon.io import provenance
from mrirecon.io.files import load_checkpoint
from mrirecon.io.ownership import Outputs
from mrirecon.methods import REGISTRY, Method, build_method
from mrirecon.physics.model_error import model_error
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.tasks.common import device_of, model_error_warning, open_processed, overwrite, plain, run_dir
from mrirecon.tasks.recon_outputs import OutputOptions, output_names, write_run
from mrirecon.tasks.recon_summary import Chosen, RunFacts, SliceRecord
from mrirecon.tasks.settings import check_amp, check_file_variant, command_line_keys
from mrirecon.training.trainables import TRAINABLES, family_for, rebuild

log = logging.getLogger(__name__)
Units = tuple[np.ndarray | None, np.ndarray | None]  # the subject and the volume of every slice of the file
NOISE_ESTIMATED = "estimated from the measured data (physics/noise.py): the file stores none"


@dataclass(frozen=True)
class ReconOptions:
    """The run's own keys, checked: batch_size (slices reconstructed together), seed, and what
    the outputs hold."""

    batch_size: int
    seed: int
    output: OutputOptions


@dataclass(frozen=True)
class Batch:
    """Slices read together: their indices (B,), reference (B, X, Y), measured k-space
    y = mask * ksp (B, C, X, Y), maps (B, C, X, Y), mask (B, X, Y), the stored noise std (B,)
    (NaN where the file has none), the acquired k-space locations (B,) (float64, on the CPU) and
    the second reference `rss` (B, X, Y) float32 (fastMRI's reconstruction_rss; None where the
    file has none)."""

    indices: np.ndarray
    reference: torch.Tensor
    y: torch.Tensor
    maps: torch.Tensor
    mask: torch.Tensor
    noise_std: torch.Tensor
    acquired: torch.Tensor
    rss: np.ndarray | None = None


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


def batches(indices: np.ndarray, size: int) -> list[np.ndarray]:
    """`indices` in consecutive chunks of `size` (the last may be shorter)."""
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def load_batch(data: DeepInPyFile, idx: np.ndarray, device: torch.device) -> Batch:
    """Read and stack the slices `idx` of `data` onto `device`."""
    slices = [data.read(int(i)) for i in idx]
    stack = lambda key: torch.from_numpy(np.stack([getattr(s, key) for s in slices])).to(device)  # noqa: E731
    ref, ksp, maps, mask = stack("img"), stack("ksp"), stack("maps"), stack("mask")
    noise = torch.tensor([np.nan if s.noise_std is None else s.noise_std for s in slices], dtype=torch.float32)
    acquired = torch.tensor([region_size(data.acquired(int(i))) for i in idx], dtype=torch.float64)
    rss = np.stack([s.rss for s in slices]) if data.has_rss else None  # type: ignore[misc]
    return Batch(idx, ref, ksp * mask.unsqueeze(1), maps, mask, noise.to(device), acquired, rss)


def image_shape(data: DeepInPyFile) -> tuple[int, int]:
    """The size of the images in every output: the file's recon size (fastMRI's reconSpace, e.g.
    320x320) where it records one, as fastMRI crops, else its k-space grid."""
    return data.header.recon_size or data.shape


def has_reference(data: DeepInPyFile) -> bool:
    """Whether the file holds reference images (raw undersampled data does not)."""
    return data.header.has_reference


def per_slice(chosen: dict[str, torch.Tensor | list[str]], k: int) -> dict[str, Chosen]:
    """Slice k's values of a method's `chosen` settings (tensors (B,) or lists of B labels)."""
    return {key: (v.tolist() if isinstance(v, torch.Tensor) else v)[k] for key, v in chosen.items()}


@torch.no_grad()
def reconstruct_batch(method: Method, batch: Batch) -> tuple[torch.Tensor, SenseOperator, torch.Tensor, float]:
    """x_hat (B, X, Y) of the batch, its operator, the noise std (B,) it was reconstructed with
    (resolved here, once: stored, else estimated) and the seconds per slice (noise resolution
    and reconstruction, after a CUDA synchronisation)."""
    start = time.perf_counter()
    op = SenseOperator(batch.maps, batch.mask)
    noise = resolve_noise_std(batch.y, batch.mask, batch.noise_std)
    x = method.reconstruct(batch.y, op, noise)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return x, op, noise, (time.perf_counter() - start) / len(batch.indices)


def defined_metrics(recon: np.ndarray, reference: np.ndarray, index: int) -> dict[str, float]:
    """The slice's metrics; a NaN metric is an error naming its cause, never a row: a reference
    that is all zero or not finite (a file claiming a reference it does not hold), or a
    reconstruction with non-finite pixels (the method diverged)."""
    values = metrics.slice_metrics(recon, reference)
    if not any(np.isnan(v) for v in values.values()):
        return values
    if not np.isfinite(reference).all() or not np.abs(reference).any():
        raise UserError(
            f"data.path: slice {index} has a reference image that is all zero or not finite, so its metrics are "
            "undefined (remake the file with preprocess)"
        )
    raise UserError(
        f"method: the reconstruction of slice {index} has non-finite pixels (the method diverged), so its metrics "
        "are undefined"
    )


@torch.no_grad()
def batch_records(
    method: Method, batch: Batch, position: int, units: Units, shape: tuple[int, int], reference: bool
) -> list[SliceRecord]:
    """The records of one batch: reconstruct it, measure it (against the SENSE reference and,
    where the file has one, fastMRI's `rss`), crop its images to `shape`; without a `reference`
    the zero-filled image stands in for it (and the metrics are NaN)."""
    x, op, noise, seconds = reconstruct_batch(method, batch)
    check = model_error(batch.y, batch.maps, batch.mask, noise.cpu())
    fires = check.exceeds()
    consistency = (op.forward(x) - batch.y).abs().flatten(1).norm(dim=1) / batch.y.abs().flatten(1).norm(dim=1)
    acceleration = batch.acquired / batch.mask.flatten(1).sum(1).cpu()
    ref = batch.reference if reference else op.adjoint(batch.y)
    recon_np = center_crop(x.cpu().numpy().astype(np.complex64), shape)
    ref_np = center_crop(ref.cpu().numpy(), shape)
    rss = None if batch.rss is None or not reference else center_crop(batch.rss, shape)
    nan = dict.fromkeys(metrics.NAMES, float("nan"))
    subjects, volumes = units
    return [
        SliceRecord(
            position=position + k,
            index=int(i),
            subject=None if subjects is None else int(subjects[i]),
            volume=None if volumes is None else int(volumes[i]),
            recon=recon_np[k],
            reference=ref_np[k],
            metrics=defined_metrics(recon_np[k], ref_np[k], int(i)) if reference else dict(nan),
            rss=None if rss is None else rss[k],
            rss_metrics=None if rss is None else defined_metrics(recon_np[k], rss[k], int(i)),
            model_error=float(check.ratio[k]),
            model_error_fires=bool(fires[k]),
            seconds=seconds,
            consistency=float(consistency[k]),
            acceleration=float(acceleration[k]),
            noise_std=float(noise[k]),
            chosen=per_slice(method.chosen, k),
        )
        for k, i in enumerate(batch.indices)
    ]


def reconstruct_slices(
    method: Method, data: DeepInPyFile, indices: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[SliceRecord]:
    """Reconstruct the slices `indices` of `data`, `batch_size` at a time on `device`, and yield
    one record per slice, in order (images cropped to `image_shape(data)`)."""
    subjects = data.subjects()  # None: the file records no subjects (the column stays empty)
    volumes = data.volumes()
    units = (subjects, subjects if volumes is None else volumes)
    shape, reference = image_shape(data), has_reference(data)
    position = 0
    for idx in batches(indices, batch_size):
        yield from batch_records(method, load_batch(data, idx, device), position, units, shape, reference)
        position += len(idx)


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
        records = reconstruct_slices(method, data, indices, options.batch_size, device)
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
    kind = REGISTRY[name].checkpoint_kind if name in REGISTRY else None
    trained_by = family_for(name, str(OmegaConf.select(cfg, "model.name", default="")))
    if name not in REGISTRY and trained_by is not None:  # a method that only `train` knows (e.g. flow_prior)
        served = sorted(m for m, c in REGISTRY.items() if c.checkpoint_kind == trained_by.kind)
        raise UserError(
            f"method={name} is trained, not reconstructed: reconstruct with its checkpoint and "
            f"method={' | '.join(served)}"
        )
    if kind is None:
        if checkpoint:
            raise UserError(f"checkpoint: method={name} is not a learned method and takes no checkpoint")
        check_amp(bool(cfg.hardware.amp), device, (), f"method={name}")
        return configured("method", build_method, plain(cfg.method)), plain(cfg.method), {}
    family = TRAINABLES[kind]
    check_amp(bool(cfg.hardware.amp), device, family.amp_devices, f"method={name}")
    if not checkpoint:
        raise UserError(
            f"method={name} needs checkpoint=PATH (train one with 'mrirecon train {family.train_hint(name)}')"
        )
    ckpt = load_checkpoint(str(checkpoint), "checkpoint", bool(cfg.get("trust_checkpoint", False)))
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
    chosen_by = str(state.get("best_by", family.select))  # recorded by the Trainer; older: the family's metric
    record = provenance.checkpoint_record(str(checkpoint), ckpt, chosen_by)
    return method, method_config, {**trained_on(ckpt), "record": record}
