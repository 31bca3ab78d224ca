"""Finite differences (physics/finite_differences.py) on images whose differences are known (the
adjoint is checked with every operator in test_operators.py)."""

from __future__ import annotations

import torch

from mrirecon.physics.finite_differences import FiniteDifferences


def test_forward_differences_of_a_ramp_and_a_constant():
    i, j = torch.meshgrid(torch.arange(5.0), torch.arange(4.0), indexing="ij")
    x = torch.complex(i + 2 * j, -j).unsqueeze(0)  # (1, 5, 4)
    g = FiniteDifferences()(x)
    assert g.shape == (1, 2, 5, 4)
    assert torch.equal(g[0, 0, :-1], torch.ones(4, 4, dtype=x.dtype)) and torch.equal(g[0, 0, -1], torch.zeros(4))
    assert torch.equal(g[0, 1, :, :-1], torch.full((5, 3), 2 - 1j)) and torch.equal(g[0, 1, :, -1], torch.zeros(5))
    assert torch.equal(FiniteDifferences()(torch.full((2, 6, 3), 3 - 1j)), torch.zeros(2, 2, 6, 3, dtype=x.dtype))
