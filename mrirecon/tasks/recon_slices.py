"""reconstruct's batch loop: read a batch of slices, resolve their noise std once, reconstruct
them, measure them, and yield one `SliceRecord` per slice (recon_outputs writes them)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch

from mrirecon.data.batch import Batch, collate
from mrirecon.data.dataset import SliceDataset
from mrirecon.data.transforms import center_crop
from mrirecon.errors import UserError
from mrirecon.evaluation import metrics
from mrirecon.evaluation.uncertainty import uncertainty_metrics
from mrirecon.methods import Method
from mrirecon.physics.model_error import model_error
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.tasks.recon_summary import Chosen, SliceRecord

Units = tuple[np.ndarray | None, np.ndarray | None]  # the subject and the volume of every slice of the file


def batches(indices: np.ndarray, size: int) -> list[np.ndarray]:
    """`indices` in consecutive chunks of `size` (the last may be shorter)."""
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def per_slice(chosen: dict[str, torch.Tensor | list[str]], k: int) -> dict[str, Chosen]:
    """Slice k's values of a method's `chosen` settings (tensors (B,) or lists of B labels)."""
    return {key: (v.tolist() if isinstance(v, torch.Tensor) else v)[k] for key, v in chosen.items()}


@torch.no_grad()
def reconstruct_batch(
    method: Method, batch: Batch
) -> tuple[torch.Tensor, torch.Tensor | None, SenseOperator, torch.Tensor, float]:
    """x_hat (B, X, Y) of the batch, the per-pixel std (B, X, Y) of a sampling method's samples
    (None for a method of one image), its operator, the noise std (B,) it was reconstructed with
    (resolved here, once: stored, else estimated) and the seconds per slice (noise resolution
    and reconstruction, after a CUDA synchronisation)."""
    start = time.perf_counter()
    op = SenseOperator(batch.maps, batch.mask)
    y = batch.y
    noise = resolve_noise_std(y, batch.mask, batch.noise_std)
    x, std = method.reconstruct_with_std(y, op, noise)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return x, std, op, noise, (time.perf_counter() - start) / batch.size


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
    x, std, op, noise, seconds = reconstruct_batch(method, batch)
    y = batch.y
    check = model_error(y, batch.maps, batch.mask, noise.cpu())
    fires = check.exceeds()
    consistency = (op.forward(x) - y).abs().flatten(1).norm(dim=1) / y.abs().flatten(1).norm(dim=1)
    acceleration = batch.acquired_samples().cpu() / batch.mask.flatten(1).sum(1).cpu()
    ref = batch.reference() if reference else op.adjoint(y)
    recon_np = center_crop(x.cpu().numpy().astype(np.complex64), shape)
    ref_np = center_crop(ref.cpu().numpy(), shape)
    rss = None if batch.rss is None or not reference else center_crop(batch.rss.cpu().numpy(), shape)
    std_np = None if std is None else center_crop(std.detach().cpu().numpy().astype(np.float32), shape)
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
            std=None if std_np is None else std_np[k],
            uncertainty=None
            if std_np is None or not reference
            else uncertainty_metrics(recon_np[k], ref_np[k], std_np[k]),
        )
        for k, i in enumerate(batch.index.tolist())
    ]


def reconstruct_slices(
    method: Method,
    dataset: SliceDataset,
    batch_size: int,
    device: torch.device,
    units: Units,
    shape: tuple[int, int],
    reference: bool,
) -> Iterator[SliceRecord]:
    """Reconstruct the slices of `dataset`, `batch_size` at a time on `device`, and yield one
    record per slice, in order (images cropped to `shape`; `units`: the subject and volume of
    every slice of the file; `reference`: whether the file holds reference images)."""
    position = 0
    for chunk in batches(np.arange(len(dataset)), batch_size):
        batch = collate([dataset[int(k)] for k in chunk]).to(device)
        yield from batch_records(method, batch, position, units, shape, reference)
        position += len(chunk)
