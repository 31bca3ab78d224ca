"""A torch Dataset over the slices of a DeepInPy file (lazy: one slice read per item), its
items batches of one slice (mrirecon.data.batch: `collate` joins them)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mrirecon.data.batch import Batch
from mrirecon.data.h5 import DeepInPyFile


class SliceDataset(Dataset[Batch]):
    """Item k: slice `indices[k]` as a `Batch` of one: k-space (fully sampled where the file has
    it), maps, mask, noise std (NaN when the file stores none), index, acquired region; the
    reference image when `reference`, fastMRI's rss image when `rss` (and the file has one), and
    the recon size when the file records one (fastMRI). With `measured_only`, k-space is zero
    wherever the mask is 0 (unsupervised training: only what was measured leaves the dataset).

    The file handle opens lazily in each DataLoader worker.
    """

    def __init__(
        self,
        data: DeepInPyFile,
        indices: Sequence[int] | np.ndarray,
        reference: bool = True,
        measured_only: bool = False,
        rss: bool = False,
    ) -> None:
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.reference, self.measured_only, self.rss = reference, measured_only, rss

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Batch:
        i = int(self.indices[k])
        s = self.data.read(i)
        ksp = np.where(s.mask[None] != 0, s.ksp, 0).astype(s.ksp.dtype) if self.measured_only else s.ksp
        one = lambda a: torch.from_numpy(a)[None]  # noqa: E731
        recon_size = self.data.header.recon_size
        return Batch(
            ksp=one(ksp),
            maps=one(s.maps),
            mask=one(s.mask),
            noise_std=torch.tensor([float("nan") if s.noise_std is None else s.noise_std], dtype=torch.float32),
            index=torch.tensor([i]),
            acquired=torch.tensor([self.data.acquired(i)]),
            img=one(s.img) if self.reference else None,
            crop=None if recon_size is None else torch.tensor([recon_size]),
            rss=one(s.rss) if self.rss and s.rss is not None else None,
        )
