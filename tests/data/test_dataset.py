"""The slice dataset: items are batches of one slice, read lazily (also in DataLoader workers);
training without a reference reads measured k-space only."""

from __future__ import annotations

import torch

from mrirecon.data.batch import collate
from mrirecon.data.dataset import SliceDataset
from mrirecon.data.h5 import DeepInPyFile


def test_dataset_loads_lazily_in_worker_processes(tiny_h5):
    data = DeepInPyFile(tiny_h5)
    supervised = SliceDataset(data, [1, 3, 5])
    unsupervised = SliceDataset(data, [1, 3, 5], reference=False)
    assert supervised[0].img is not None and unsupervised[0].img is None
    loader = torch.utils.data.DataLoader(supervised, batch_size=2, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert [b.index.tolist() for b in batches] == [[1, 3], [5]]
    assert batches[0].ksp.shape == (2, 4, 32, 24) and batches[0].ksp.dtype == torch.complex64
    assert batches[0].acquired.tolist() == [[0, 32, 0, 24]] * 2 and batches[0].crop is None


def test_measured_only_items_hold_measured_kspace_and_no_reference(tiny_h5):
    data = DeepInPyFile(tiny_h5)
    item = SliceDataset(data, [1, 2], reference=False, measured_only=True)[0]
    full = SliceDataset(data, [1, 2])[0]  # validation: full k-space and the reference
    assert item.img is None and full.img is not None
    assert torch.equal(item.ksp, full.ksp * full.mask.unsqueeze(1)) and bool((item.ksp != 0).any())
    assert not torch.equal(item.ksp, full.ksp)
    assert torch.isnan(full.noise_std).all() and full.rss is None  # the tiny file stores neither
