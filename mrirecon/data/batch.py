"""The one batch type: slices read together, as reconstruct and training both use them.

A `Batch` of B slices holds the stored k-space, coil maps, sampling mask, noise level, slice
indices and acquired regions, and optionally the reference image, the recon size to crop to
and fastMRI's root-sum-of-squares image. A dataset item is a batch of one slice; `collate`
joins items into a batch (the DataLoader's `collate_fn`), `Batch.to` moves one to a device.
Torch only; it knows nothing about methods or training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

OPTIONAL = ("img", "crop", "rss")  # fields a batch may lack (all its slices alike)


@dataclass(frozen=True)
class Batch:
    """B slices.

    Args:
        ksp: (B, C, X, Y) complex64 centred k-space as stored (fully sampled where the file has
            it; zero outside the mask when only measured samples may be read).
        maps: (B, C, X, Y) complex64 coil maps.
        mask: (B, X, Y) float32 sampling mask in {0, 1}.
        noise_std: (B,) float32 noise std per k-space sample, NaN where the file stores none.
        index: (B,) int64 slice indices in the file.
        acquired: (B, 4) int64 acquired k-space region (x0, x1, y0, y1), half-open; outside it
            the grid is zero padding that was never measured.
        img: (B, X, Y) complex64 reference image, or None (unsupervised training never sees it).
        crop: (B, 2) int64 recon size that metrics crop images to (fastMRI's), or None.
        rss: (B, X, Y) float32 second reference (fastMRI's reconstruction_rss), or None.
    """

    ksp: torch.Tensor
    maps: torch.Tensor
    mask: torch.Tensor
    noise_std: torch.Tensor
    index: torch.Tensor
    acquired: torch.Tensor
    img: torch.Tensor | None = None
    crop: torch.Tensor | None = None
    rss: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """B, the number of slices."""
        return int(self.ksp.shape[0])

    @property
    def y(self) -> torch.Tensor:
        """The measured k-space mask * ksp (B, C, X, Y)."""
        return self.ksp * self.mask.unsqueeze(1)

    def reference(self) -> torch.Tensor:
        """`img`; a ValueError when the batch holds none."""
        if self.img is None:
            raise ValueError("img: this batch holds no reference image (measured data only)")
        return self.img

    def acquired_samples(self) -> torch.Tensor:
        """(B,) float64: the number of k-space locations of each slice's acquired region."""
        a = self.acquired.to(torch.float64)
        return (a[:, 1] - a[:, 0]) * (a[:, 3] - a[:, 2])

    def replace(self, **changes: Any) -> Batch:
        """A copy with the given fields replaced (the tensors are shared, not copied)."""
        return dataclasses.replace(self, **changes)

    def part(self, start: int, stop: int) -> Batch:
        """Slices start..stop-1 (views)."""
        parts: dict[str, Any] = {f.name: _sliced(getattr(self, f.name), start, stop) for f in dataclasses.fields(self)}
        return Batch(**parts)

    def to(self, device: torch.device | str) -> Batch:
        """Every tensor on `device` (non-blocking copies)."""
        moved: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            moved[f.name] = None if value is None else value.to(device, non_blocking=True)
        return Batch(**moved)

    def pin_memory(self) -> Batch:
        """Every tensor in page-locked memory (a DataLoader with pin_memory=True calls this), so
        that its copy to a GPU overlaps the computation."""
        pinned: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            pinned[f.name] = None if value is None else value.pin_memory()
        return Batch(**pinned)


def _sliced(value: torch.Tensor | None, start: int, stop: int) -> torch.Tensor | None:
    return None if value is None else value[start:stop]


def collate(items: Sequence[Batch]) -> Batch:
    """The items (batches, usually of one slice each) joined along the slice axis; an optional
    field is kept when every item has it and must be absent from all or none (ValueError)."""
    if not items:
        raise ValueError("items: nothing to collate")
    joined: dict[str, Any] = {}
    for field in dataclasses.fields(Batch):
        values = [getattr(item, field.name) for item in items]
        present = [v is not None for v in values]
        if not any(present):
            joined[field.name] = None
        elif not all(present):
            raise ValueError(f"{field.name}: held by some items of the batch and not by others")
        else:
            joined[field.name] = torch.cat(values)
    return Batch(**joined)
