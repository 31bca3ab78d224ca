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

from mrirecon import metrics, provenance
from mrirecon.data.h5 import DeepInPyFile, region_size
from mrirecon.data.transforms import center_crop
from mrirecon.errors import UserError, configured
from mrirecon.io import load_checkpoint
from mrirecon.methods import REGISTRY, Method, build_method
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.tasks.common import device_of, open_processed, plain, refuse_foreign_outputs, run_dir
from mrirecon.tasks.recon_outputs import OUTPUTS, Chosen, OutputOptions, RunFacts, SliceRecord, write_run
from mrirecon.tasks.settings import check_amp, check_file_variant, command_line_keys
from mrirecon.trainables import TRAINABLES, family_for, rebuild

log = logging.getLogger(__name__)
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
    (NaN where the file has none) and the acquired k-space locations (B,) (float64, on the CPU)."""

    indices: np.ndarray
    reference: torch.Tensor
    y: torch.Tensor
    maps: torch.Tensor
    mask: torch.Tensor
    noise_std: torch.Tensor
    acquired: torch.Tensor


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
    return Batch(idx, ref, ksp * mask.unsqueeze(1), maps, mask, noise.to(device), acquired)


def image_shape(data: DeepInPyFile) -> tuple[int, int]:
    """The size of the images in every output: the file's recon size (fastMRI's reconSpace, e.g.
    320x320) where it records one, as fastMRI crops, else its k-space grid."""
    return data.recon_size or data.shape


def has_reference(data: DeepInPyFile) -> bool:
    """Whether the file holds reference images (raw undersampled data does not)."""
    return bool(data.attrs.get("has_reference", True))


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


@torch.no_grad()
def batch_records(
    method: Method, batch: Batch, position: int, subjects: np.ndarray | None, shape: tuple[int, int], reference: bool
) -> list[SliceRecord]:
    """The records of one batch: reconstruct it, measure it, crop its images to `shape`; without
    a `reference` the zero-filled image stands in for it (and the metrics are NaN)."""
    x, op, noise, seconds = reconstruct_batch(method, batch)
    consistency = (op.forward(x) - batch.y).abs().flatten(1).norm(dim=1) / batch.y.abs().flatten(1).norm(dim=1)
    acceleration = batch.acquired / batch.mask.flatten(1).sum(1).cpu()
    ref = batch.reference if reference else op.adjoint(batch.y)
    recon_np = center_crop(x.cpu().numpy().astype(np.complex64), shape)
    ref_np = center_crop(ref.cpu().numpy(), shape)
    nan = dict.fromkeys(metrics.NAMES, float("nan"))
    return [
        SliceRecord(
            position=position + k,
            index=int(i),
            subject=None if subjects is None else int(subjects[i]),
            recon=recon_np[k],
            reference=ref_np[k],
            metrics=metrics.slice_metrics(recon_np[k], ref_np[k]) if reference else dict(nan),
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
    shape, reference = image_shape(data), has_reference(data)
    position = 0
    for idx in batches(indices, batch_size):
        yield from batch_records(method, load_batch(data, idx, device), position, subjects, shape, reference)
        position += len(idx)


def check_training_subjects(cfg: DictConfig, trained: dict[str, Any], data: DeepInPyFile, indices: np.ndarray) -> None:
    """Refuse to report on slices of subjects a checkpoint was trained on (unless
    allow_train_slices=true); warn when the file is not the training file, or when its source
    differs so that the check cannot be made."""
    if "train_subjects" not in trained:
        return
    here = str(data.attrs.get("source_id", data.attrs.get("source", "")))
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
    a, b = (int(v) for v in str(data.attrs.get("source_cfl_axes", "0,1")).split(","))
    return a, b


def facts_of(
    cfg: DictConfig, method: Method, method_config: dict[str, Any], trained: dict[str, Any], data: DeepInPyFile
) -> RunFacts:
    """What the outputs record about the run besides its slices."""
    checkpoint = cfg.get("checkpoint")
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
        shape=image_shape(data),
        cropped=bool(data.recon_size),
        noise_definition=str(data.attrs.get("noise_std_definition", NOISE_ESTIMATED)),
        prewhitened=bool(int(data.attrs.get("prewhitened", 0))),
        coil_compression=str(data.attrs.get("coil_compression", "none")),
        param_units=dict(method.units),
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
    """One line with the run's means."""
    means = summary["mean"]
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
    refuse_foreign_outputs(cfg, out, OUTPUTS, "recon.h5")
    device = device_of(cfg)
    method, method_config, trained = method_of(cfg, device)
    data = open_processed(cfg)
    try:
        indices = check_data(cfg, method_config, trained, data)
        facts = facts_of(cfg, method, method_config, trained, data)
        output = replace(options.output, cfl_axes=cfl_axes_of(data))
        torch.manual_seed(options.seed)
        records = reconstruct_slices(method, data, indices, options.batch_size, device)
        summary = write_run(out, records, facts, indices, output)
    finally:
        data.close()
    log_summary(summary, out)
    return float(summary["objective"]["value"])


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
