"""The one batch type: items of one slice joined by collate, parts, devices, the measured data
and the optional fields (all of a batch's slices have them, or none)."""

from __future__ import annotations

import pytest
import torch
from tiny_training import items_of, tiny_batch

from mrirecon.data.batch import Batch, collate


def test_collate_joins_items_and_part_takes_them_apart():
    batch = tiny_batch(n=3)
    items = items_of(batch)
    assert [item.size for item in items] == [1, 1, 1]
    joined = collate(items)
    for name in ("ksp", "maps", "mask", "noise_std", "index", "acquired", "img"):
        assert torch.equal(getattr(joined, name), getattr(batch, name)), name
    assert joined.crop is None and joined.rss is None
    assert torch.equal(joined.part(1, 3).ksp, batch.ksp[1:3]) and joined.part(1, 3).size == 2


def test_optional_fields_are_held_by_every_item_or_none():
    a, b = items_of(tiny_batch(n=2))
    with pytest.raises(ValueError, match="^img: held by some items of the batch and not by others"):
        collate([a, b.replace(img=None)])
    assert collate([a.replace(img=None), b.replace(img=None)]).img is None
    with pytest.raises(ValueError, match="^items: nothing to collate"):
        collate([])


def test_the_measured_data_the_reference_and_the_acquired_samples():
    batch = tiny_batch(n=2, shape=(8, 6))
    assert torch.equal(batch.y, batch.ksp * batch.mask.unsqueeze(1))
    assert torch.equal(batch.reference(), batch.img)
    with pytest.raises(ValueError, match="^img: this batch holds no reference image"):
        batch.replace(img=None).reference()
    padded = batch.replace(acquired=torch.tensor([[0, 8, 1, 5], [2, 6, 0, 6]]))
    assert padded.acquired_samples().tolist() == [32.0, 24.0]


def test_to_moves_every_tensor_and_keeps_absent_fields_absent():
    batch = tiny_batch(n=2).replace(crop=torch.tensor([[4, 4], [4, 4]]))
    moved = batch.to("meta")
    assert all(getattr(moved, n).device.type == "meta" for n in ("ksp", "maps", "mask", "img", "crop", "index"))
    assert moved.rss is None and isinstance(moved, Batch)
