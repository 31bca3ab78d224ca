"""Contracts every reconstruction method keeps: results scale with the data's units, do not
depend on the batch a slice is reconstructed in, and lam/stdev=auto follow the noise."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_arrays
from registered import SMALL, tiny_method

from mrirecon.methods import REGISTRY, build_method
from mrirecon.nets import build_net
from mrirecon.physics.noise import complex_noise, resolve_noise_std
from mrirecon.physics.sense import SenseOperator

SHAPE = (32, 24)
NOISE = 0.02


def noisy_slices(n: int = 5) -> tuple[torch.Tensor, SenseOperator, torch.Tensor, torch.Tensor]:
    """y (n, 4, 32, 24) with complex noise of std NOISE, its operator, the noise std (n,) and the images."""
    a = tiny_arrays(n=n, coils=4, shape=SHAPE, seed=11)
    ksp = torch.from_numpy(a["ksp"]) + complex_noise((n, 4, *SHAPE), NOISE, torch.Generator().manual_seed(0))
    mask = torch.from_numpy(a["masks"])
    op = SenseOperator(torch.from_numpy(a["maps"]), mask)
    return ksp * mask.unsqueeze(1), op, torch.full((n,), NOISE), torch.from_numpy(a["imgs"])


# iteration counts of these tests (more than the config tests': the contracts hold at any count)
KEYS = {**SMALL, "max_iter": 20, "iterations": 5, "num_unrolls": 2, "cg_max_iter": 4}


def method(name: str):
    """Every registered method, built from its own config, small enough for a unit test (learned
    ones untrained: tests/registered.py)."""
    return tiny_method(name, SHAPE, keys=KEYS)


def run(m, y: torch.Tensor, op: SenseOperator, noise: torch.Tensor | None) -> torch.Tensor:
    """m's reconstruction of y with the noise std `noise`, or (None) the one estimated from y."""
    with torch.no_grad():
        return m.reconstruct(y, op, resolve_noise_std(y, op.mask) if noise is None else noise)


def sub(op: SenseOperator, idx: list[int]) -> SenseOperator:
    return SenseOperator(op.maps[idx], op.mask[idx, 0])


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("factor", [1e-5, 300.0])
def test_output_scales_with_the_data(name, factor):
    y, op, noise, _ = noisy_slices(2)
    m = method(name)
    x = run(m, y, op, noise)
    scaled = run(m, factor * y, op, factor * noise)
    assert torch.allclose(scaled / factor, x, rtol=1e-3, atol=1e-4 * float(x.abs().max())), name
    estimated = run(m, factor * y, op, None)  # noise estimated from the data scales as well
    assert torch.allclose(estimated / factor, run(m, y, op, None), rtol=1e-3, atol=1e-4 * float(x.abs().max()))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_a_slice_does_not_depend_on_its_batch(name):
    y, op, noise, _ = noisy_slices(5)
    m = method(name)
    whole = run(m, y, op, noise)
    order = [3, 0, 4, 2, 1]
    for size in (1, 2):
        parts = [
            run(m, y[order[i : i + size]], sub(op, order[i : i + size]), noise[order[i : i + size]])
            for i in range(0, 5, size)
        ]
        shuffled = torch.cat(parts)
        tol = 1e-4 * float(whole.abs().max())
        assert torch.allclose(shuffled, whole[order], atol=tol, rtol=1e-4), (name, size)


def test_cg_sense_auto_lam_leaves_the_noise_as_residual():
    y, op, noise, _ = noisy_slices(3)
    m = build_method({"name": "cg_sense"})
    x = run(m, y, op, noise)
    residual = (op.forward(x) - y).abs().flatten(1).norm(dim=1)
    expected = noise * (4 * op.mask.flatten(1).sum(1)).sqrt()
    assert torch.allclose(residual, expected, rtol=0.05)
    assert (m.chosen["lam"] > 1e-4).all() and (m.chosen["lam"] < 10).all()
    fixed = build_method({"name": "cg_sense", "lam": 0.05})
    assert torch.allclose(
        run(fixed, y, op, noise), run(build_method({"name": "cg_sense", "lam": 0.05}), y, op, 2 * noise)
    )


@pytest.mark.parametrize("name", ["cs_wavelet", "cs_tv"])
def test_cs_auto_weight_follows_the_noise_not_the_units(name):
    """lam=auto: the weight relative to max |A^H y| does not change with the data's units and
    grows in proportion to the noise; a number is kept as given. (That the auto weight is a good
    one is tested in test_auto_weight.py against a grid of weights.)"""
    y, op, noise, _ = noisy_slices(2)
    m = build_method({"name": name, "max_iter": 3})
    run(m, y, op, noise)
    rescaled = build_method({"name": name, "max_iter": 3})
    run(rescaled, 1e4 * y, op, 1e4 * noise)
    assert torch.allclose(rescaled.chosen["lam"], m.chosen["lam"], rtol=1e-4)
    louder = build_method({"name": name, "max_iter": 3})
    run(louder, y, op, 3 * noise)
    assert torch.allclose(louder.chosen["lam"], 3 * m.chosen["lam"], rtol=1e-5)
    assert m.chosen["rule"] == louder.chosen["rule"] == ["noise", "noise"]
    numeric = build_method({"name": name, "lam": 1e-3, "max_iter": 3})
    run(numeric, y, op, noise)
    assert torch.allclose(numeric.chosen["lam"], torch.full((2,), 1e-3))


def test_dbp_auto_noise_ball_follows_the_noise():
    y, op, noise, _ = noisy_slices(2)
    net = build_net({"name": "resnet", "channels": 4, "num_blocks": 1})
    m = build_method(
        {"name": "dbp", "num_unrolls": 1, "num_admm": 40, "cg_max_iter": 60, "cg_eps": 1e-8, "l2lam_init": 10.0},
        denoiser=net,
    )
    x = run(m, y, op, noise)
    eps = noise * (4 * op.mask.flatten(1).sum(1)).sqrt()
    dist = (op.forward(x) - y).abs().flatten(1).norm(dim=1)
    assert torch.all(dist <= 1.05 * eps) and torch.all(dist > 0.5 * eps)
    hard = build_method(
        {
            "name": "dbp",
            "num_unrolls": 1,
            "num_admm": 40,
            "cg_max_iter": 60,
            "cg_eps": 1e-8,
            "l2lam_init": 10.0,
            "stdev": 0.0,
        },
        denoiser=net,
    )
    hard_dist = (op.forward(run(hard, y, op, noise)) - y).abs().flatten(1).norm(dim=1)
    assert torch.all(hard_dist < 0.8 * dist)  # stdev=0: as close to the (noisy, infeasible) data as it gets


@pytest.mark.parametrize("name", ["cg_sense", "cs_wavelet", "cs_tv"])
def test_auto_beats_zero_filled_on_noisy_data(name):
    y, op, noise, img = noisy_slices(3)
    zf = run(build_method({"name": "zero_filled"}), y, op, noise)
    x = run(build_method({"name": name}), y, op, noise)
    error = lambda r: float((r.abs() - img.abs()).norm() / img.abs().norm())  # noqa: E731
    assert error(x) < 0.9 * error(zf), name


def test_auto_and_numbers_are_accepted_and_bad_values_refused():
    for name in ("cg_sense", "cs_wavelet", "cs_tv"):
        assert build_method({"name": name, "lam": "auto"}).lam == "auto"
        assert build_method({"name": name, "lam": 1e-3}).lam == 1e-3
        with pytest.raises(ValueError, match="^lam: 'loud'"):
            build_method({"name": name, "lam": "loud"})
    with pytest.raises(ValueError, match="^stdev: "):
        build_method({"name": "dbp", "stdev": -1.0}, denoiser=build_net({"name": "resnet"}))
    with pytest.raises(ValueError, match="^fallback: "):
        build_method({"name": "cs_tv", "fallback": "yes"})


def test_noise_std_is_resolved_by_the_caller_not_the_method():
    """resolve_noise_std keeps a stored value and estimates only the unknown (NaN) slices; a
    method whose weight follows the noise refuses an unresolved None instead of estimating."""
    y, op, _, _ = noisy_slices(3)
    estimate = resolve_noise_std(y, op.mask)
    assert estimate.shape == (3,) and bool((estimate > 0).all())  # its accuracy: test_noise.py
    stored = torch.tensor([0.5, float("nan"), 0.25])
    resolved = resolve_noise_std(y, op.mask, stored)
    assert torch.equal(resolved[[0, 2]], stored[[0, 2]]) and resolved[1] == estimate[1]
    for name in ("cg_sense", "cs_wavelet", "cs_tv"):
        with pytest.raises(ValueError, match="^noise_std: lam=auto"):
            run_unresolved(build_method({"name": name, "max_iter": 2}), y, op)
    run_unresolved(build_method({"name": "cg_sense", "lam": 0.05, "max_iter": 2}), y, op)  # a fixed weight needs none


def run_unresolved(m, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
    with torch.no_grad():
        return m.reconstruct(y, op)
