"""A torch Dataset over the slices of a DeepInPy file (lazy: one slice read per item)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mrirecon.data.h5 import DeepInPyFile


class SliceDataset(Dataset[dict[str, torch.Tensor]]):
    """Items are dicts of tensors for one slice: 'ksp' (C, X, Y) complex64 fully sampled,
    'maps' (C, X, Y) complex64, 'mask' (X, Y) float32, 'noise_std' () float32 (NaN when the
    file stores none), 'index' (), 'img' (X, Y) complex64 only when `with_reference`
    (unsupervised training never sees it), and 'crop' (2,) int64, the recon size validation
    metrics crop images to, only when the file records one (fastMRI). With `measured_only`,
    'ksp' is zero wherever the mask is 0 (unsupervised training: only what was measured leaves
    the dataset).

    The file handle opens lazily in each DataLoader worker.
    """

    def __init__(
        self,
        data: DeepInPyFile,
        indices: Sequence[int] | np.ndarray,
        with_reference: bool = True,
        measured_only: bool = False,
    ) -> None:
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64)
        self.with_reference, self.measured_only = with_reference, measured_only

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i = int(self.indices[k])
        s = self.data.read(i)
        ksp = np.where(s.mask[None] != 0, s.ksp, 0).astype(s.ksp.dtype) if self.measured_only else s.ksp
        item = {
            "ksp": torch.from_numpy(ksp),
            "maps": torch.from_numpy(s.maps),
            "mask": torch.from_numpy(s.mask),
            "noise_std": torch.tensor(float("nan") if s.noise_std is None else s.noise_std, dtype=torch.float32),
            "index": torch.tensor(i),
            "acquired": torch.tensor(self.data.acquired(i)),  # where k-space was acquired (no padding)
        }
        if self.with_reference:
            item["img"] = torch.from_numpy(s.img)
        if self.data.header.recon_size is not None:
            item["crop"] = torch.tensor(self.data.header.recon_size)
        return item
