"""`mrirecon reconstruct`: run one method on a split and record metrics, images and figures."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress

from mrirecon import __version__, metrics, provenance
from mrirecon.data.cfl import CflImageWriter
from mrirecon.data.h5 import DeepInPyFile, region_size
from mrirecon.data.transforms import center_crop
from mrirecon.errors import UserError, configured
from mrirecon.figures import reconstruction_figure
from mrirecon.io import atomic_path, load_checkpoint, write_json, write_text
from mrirecon.methods import REGISTRY, Method, build_method
from mrirecon.methods.base import noise_of
from mrirecon.physics.sense import SenseOperator
from mrirecon.tasks.common import device_of, open_processed, plain, refuse_foreign_outputs, run_dir
from mrirecon.trainables import TRAINABLES, family_for, rebuild

log = logging.getLogger(__name__)
CSV_HEADER = ("slice", "subject", "method", "nrmse", "psnr", "ssim", "seconds")
# the run dir's files that a run replaces (recon.h5 vouches that the others are an earlier run's)
OUTPUTS = ("recon.h5", "metrics.csv", "summary.json", "recon.cfl", "recon.hdr")


def _batches(indices: np.ndarray, size: int) -> list[np.ndarray]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _load(data: DeepInPyFile, idx: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Stack slices: reference (B,X,Y), measured y = mask*ksp (B,C,X,Y), maps, mask (B,X,Y) and
    the stored noise std (B,) (NaN where the file has none: the methods estimate it)."""
    slices = [data.read(int(i)) for i in idx]
    stack = lambda key: torch.from_numpy(np.stack([getattr(s, key) for s in slices])).to(device)  # noqa: E731
    ref, ksp, maps, mask = stack("img"), stack("ksp"), stack("maps"), stack("mask")
    noise = torch.tensor([np.nan if s.noise_std is None else s.noise_std for s in slices], dtype=torch.float32)
    return ref, ksp * mask.unsqueeze(1), maps, mask, noise.to(device)


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


def run(cfg: DictConfig) -> float:
    """Reconstruct `data.split` of `data.path` with `method`; write the run dir's outputs.

    Writes metrics.csv (one row per slice), summary.json (means, std, config, metric
    convention), recon.h5 (recon and reference images, slice indices), figures/, and with
    output.cfl=true recon.cfl/.hdr (the recon images for BART, in the order of recon.h5).
    Returns the mean of `objective` (psnr, ssim or nrmse) over the slices: the value a Hydra
    sweeper (hydra/sweeper=optuna) optimises; NaN without a reference.
    """
    objective = str(cfg.get("objective", "psnr"))
    if objective not in metrics.NAMES:
        raise UserError(f"objective: '{objective}' is not one of {', '.join(metrics.NAMES)}")
    out = run_dir()
    refuse_foreign_outputs(cfg, out, OUTPUTS, "recon.h5")
    device = device_of(cfg)
    method, method_config, trained = method_of(cfg, device)
    if int(cfg.batch_size) < 1:
        raise UserError(f"batch_size: {cfg.batch_size} must be >= 1")
    data = open_processed(cfg)
    indices = data.split_indices(str(cfg.data.split))
    if len(indices) == 0:
        raise UserError(
            f"data.split: split '{cfg.data.split}' of {data.path} is empty "
            f"({data.num_slices} slices in all; data.split=all uses every slice)"
        )
    check_training_subjects(cfg, trained, data, indices)
    selected = provenance.selection_warning(trained.get("record"), str(cfg.data.split))
    if selected:
        log.warning("checkpoint %s: %s", cfg.checkpoint, selected)
    check_trained_size(cfg, method_config, data)
    write_cfl = bool(cfg.output.cfl)
    # Images are reconstructed on the file's k-space grid and, when the file records a recon size
    # (fastMRI's reconSpace, e.g. 320x320), centre-cropped to it as fastMRI does, before metrics,
    # figures and outputs.
    shown_shape: tuple[int, int] = data.recon_size or data.shape
    has_reference = bool(data.attrs.get("has_reference", True))
    subjects = data.subjects()  # None: the file records no subjects (the column stays empty)
    rows: list[dict[str, Any]] = []
    shown: list[tuple[int, np.ndarray, np.ndarray]] = []  # (slice, reference, recon) for figures
    consistencies: list[float] = []  # ||A x_hat - y|| / ||y|| per slice
    noise_stds: list[float] = []  # the noise std each slice was reconstructed with
    accelerations: list[float] = []  # effective acceleration: acquired / measured locations
    chosen: dict[str, list] = {}  # settings chosen from the data (e.g. lam: auto, its rule), per slice
    torch.manual_seed(int(cfg.seed))
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out / "recon.h5"))
        h5 = stack.enter_context(h5py.File(tmp, "w", rdcc_nbytes=0))
        a, b = (int(v) for v in str(data.attrs.get("source_cfl_axes", "0,1")).split(","))  # the source's BART plane
        cfl = (
            stack.enter_context(CflImageWriter(out / "recon", len(indices), shown_shape, (a, b))) if write_cfl else None
        )
        recon_ds = h5.create_dataset("recon", (len(indices), *shown_shape), np.complex64, chunks=(1, *shown_shape))
        ref_ds = h5.create_dataset("imgs", (len(indices), *shown_shape), np.complex64, chunks=(1, *shown_shape))
        h5["slices"] = indices
        h5.attrs.update(
            {
                "method": method.name,
                "variant": str(cfg.data.name),
                "data_path": str(cfg.data.path),
                "mrirecon_version": __version__,
            }
        )
        with Progress(transient=True) as progress, torch.no_grad():
            bar = progress.add_task(f"{method.name} on {cfg.data.name}", total=len(indices))
            pos = 0
            for idx in _batches(indices, int(cfg.batch_size)):
                ref, y, maps, mask, noise = _load(data, idx, device)
                start = time.perf_counter()
                op = SenseOperator(maps, mask)
                noise = noise_of(y, op, noise)
                x = method.reconstruct(y, op, noise)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds = (time.perf_counter() - start) / len(idx)
                consistency = (
                    (op.forward(x) - y).abs().flatten(1).norm(dim=1) / y.abs().flatten(1).norm(dim=1)
                ).tolist()
                noise_stds += noise.tolist()
                acquired = torch.tensor([region_size(data.acquired(int(i))) for i in idx], dtype=torch.float64)
                accelerations += (acquired / mask.flatten(1).sum(1).cpu()).tolist()
                for key, values in method.chosen.items():
                    chosen.setdefault(key, []).extend(values.tolist() if isinstance(values, torch.Tensor) else values)
                x_np, ref_np = x.cpu().numpy().astype(np.complex64), ref.cpu().numpy()
                if not has_reference:  # raw data: show the zero-filled image in place of a reference
                    ref_np = op.adjoint(y).cpu().numpy()
                x_np, ref_np = center_crop(x_np, shown_shape), center_crop(ref_np, shown_shape)
                for k, i in enumerate(idx):
                    recon_ds[pos], ref_ds[pos] = x_np[k], ref_np[k]
                    if cfl is not None:
                        cfl.write(pos, x_np[k])
                    pos += 1
                    scores = (
                        metrics.slice_metrics(x_np[k], ref_np[k])
                        if has_reference
                        else dict.fromkeys(metrics.NAMES, float("nan"))
                    )
                    subject = "" if subjects is None else int(subjects[i])
                    rows.append(
                        {"slice": int(i), "subject": subject, "method": method.name, **scores, "seconds": seconds}
                    )
                    consistencies.append(consistency[k])
                    if len(shown) < int(cfg.figures):
                        shown.append((int(i), ref_np[k], x_np[k]))
                progress.advance(bar, len(idx))
    data.close()
    for (i, ref_img, rec_img), m in zip(shown, rows):
        title = (
            f"{method.name} on {cfg.data.name}, slice {i}: NRMSE {m['nrmse']:.4f}, "
            f"PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}"
        )
        if not has_reference:
            title = f"{method.name} on {cfg.data.name}, slice {i} (no reference: left panel is zero-filled)"
        (out / "figures").mkdir(exist_ok=True)
        reconstruction_figure(
            ref_img,
            rec_img,
            title,
            out / "figures" / f"slice_{i:04d}.png",
            reference_label="reference" if has_reference else "zero-filled",
        )
    _write_csv(out / "metrics.csv", rows)
    summary = _summary(cfg, method.name, method_config, rows)
    summary["checkpoint_info"] = trained.get("record")
    summary["has_reference"] = has_reference
    summary["image_size"] = {
        "shape": list(shown_shape),
        "definition": "images (recon.h5, metrics, figures) centre-cropped to the file's recon size (fastMRI)"
        if data.recon_size
        else "images on the whole k-space grid",
    }
    summary["data_consistency"] = {
        "mean": float(np.mean(consistencies)),
        "max": float(np.max(consistencies)),
        "definition": "||A x_hat - y||_2 / ||y||_2 on the measured samples",
    }
    summary["noise_std"] = {
        "mean": float(np.mean(noise_stds)),
        "per_slice": noise_stds,
        "definition": str(
            data.attrs.get(
                "noise_std_definition", "estimated from the measured data (physics/noise.py): the file stores none"
            )
        ),
    }
    summary["prewhitened"] = bool(int(data.attrs.get("prewhitened", 0)))
    summary["coil_compression"] = str(data.attrs.get("coil_compression", "none"))
    summary["chosen"] = {key: _chosen_summary(v) for key, v in chosen.items()}
    summary["acceleration"] = {
        "mean": float(np.mean(accelerations)),
        "per_slice": accelerations,
        "definition": "acquired k-space locations (padding, e.g. fastMRI's, excluded) / measured locations of "
        "each slice's mask",
    }
    summary["objective"] = {"metric": objective, "value": summary["mean"][objective]}
    write_json(out / "summary.json", summary)
    means = summary["mean"]
    log.info(
        "%s on %s (%d slices): NRMSE %.4f  PSNR %.2f dB  SSIM %.4f  %.3f s/slice -> %s",
        method.name,
        cfg.data.name,
        len(rows),
        means["nrmse"],
        means["psnr"],
        means["ssim"],
        means["seconds"],
        out,
    )
    return float(summary["objective"]["value"])


def _chosen_summary(values: list) -> dict[str, Any]:
    """summary.json's entry of one chosen setting: per slice, with the mean of numbers or the
    count of each value of labels (e.g. the rule that chose an auto weight)."""
    if all(isinstance(v, str) for v in values):
        return {"counts": {v: values.count(v) for v in sorted(set(values))}, "per_slice": values}
    return {"mean": float(np.mean(values)), "per_slice": values}


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
        return configured("method", build_method, plain(cfg.method)), plain(cfg.method), {}
    family = TRAINABLES[kind]
    if not checkpoint:
        raise UserError(
            f"method={name} needs checkpoint=PATH (train one with 'mrirecon train {family.train_hint(name)}')"
        )
    ckpt = load_checkpoint(str(checkpoint), "checkpoint", bool(cfg.get("trust_checkpoint", False)))
    trained = configured("checkpoint", rebuild, ckpt, str(checkpoint), kind, name)
    configured("data", family.check_bits, cfg.data.bits)
    trained.module.to(device).eval()
    method, method_config = configured(
        "method", trained.reconstructor, plain(cfg.method), cfg.data.bits, bool(cfg.hardware.amp)
    )
    state = ckpt.get("state") if isinstance(ckpt.get("state"), dict) else {}
    chosen_by = str(state.get("best_by", family.select))  # recorded by the Trainer; older: the family's metric
    record = provenance.checkpoint_record(str(checkpoint), ckpt, chosen_by)
    return method, method_config, {**trained_on(ckpt), "record": record}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_HEADER, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def _summary(
    cfg: DictConfig, method_name: str, method_config: dict[str, Any], rows: list[dict[str, Any]]
) -> dict[str, Any]:
    keys = (*metrics.NAMES, "seconds")
    values = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in keys}
    return {
        "method": method_name,
        "variant": str(cfg.data.name),
        "bits": cfg.data.bits,
        "scale": float(cfg.data.scale),
        "split": str(cfg.data.split),
        **provenance.data_record(str(cfg.data.path)),  # data_path (absolute) and data_id (content)
        "num_slices": len(rows),
        # over all slices: NaN when any slice's value is not finite (counted in non_finite), never
        # a mean over the survivors; std is the sample std (ddof 1), as in evaluate's tables
        "mean": {k: float(np.mean(v)) for k, v in values.items()},
        "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for k, v in values.items()},
        "std_ddof": 1,
        "non_finite": {k: int(np.sum(~np.isfinite(v))) for k, v in values.items()},
        "metric_convention": metrics.CONVENTION,
        "method_config": method_config,
        "checkpoint": None if cfg.get("checkpoint") is None else str(Path(str(cfg.checkpoint)).resolve()),
        "seed": int(cfg.seed),
        "created": provenance.now(),
        "overrides": list(HydraConfig.get().overrides.task),
        "hardware": plain(cfg.hardware),
        "mrirecon_version": __version__,
    }
