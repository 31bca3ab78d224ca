"""The calibration (ACS) region that E2E-VarNet estimates its coil maps from."""

from __future__ import annotations

import pytest
import torch

from mrirecon.physics.calibration import calibration_mask


def box(shape: tuple[int, int], hx: int, hy: int) -> torch.Tensor:
    out = torch.zeros(shape)
    out[shape[0] // 2 - hx : shape[0] // 2 + hx, shape[1] // 2 - hy : shape[1] // 2 + hy] = 1
    return out


def test_a_2d_mask_gives_its_calibration_square_not_the_samples_around_it():
    shape = (32, 24)
    mask = box(shape, 4, 4)
    mask[::3, ::5] = 1  # scattered samples, some touching the square on one axis only
    mask[16 + 4, 12] = 1  # the centre column's run goes one past the square on one side: symmetric cut
    found = calibration_mask(mask[None])[0]
    assert torch.equal(found, box(shape, 4, 4))


def test_a_column_mask_gives_every_row_of_its_central_columns():
    shape = (20, 30)
    mask = torch.zeros(shape)
    mask[:, 12:18] = 1  # 6 central columns (fastMRI's low frequencies), centre 15
    mask[:, 2::4] = 1
    found = calibration_mask(mask[None])[0]
    assert torch.equal(found, box(shape, 10, 3))


def test_each_slice_has_its_own_region_and_an_unsampled_centre_gives_the_minimum_block():
    shape = (16, 16)
    masks = torch.stack([box(shape, 3, 3), box(shape, 5, 2), torch.zeros(shape)])
    found = calibration_mask(masks)
    assert torch.equal(found[0], box(shape, 3, 3)) and torch.equal(found[1], box(shape, 5, 2))
    assert torch.equal(found[2], box(shape, 1, 1))


def test_bad_mask_is_refused_by_name():
    with pytest.raises(ValueError, match="^mask: real"):
        calibration_mask(torch.ones(8, 8))
