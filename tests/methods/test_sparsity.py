"""Compressed-sensing baselines: the cs_* methods and their solvers (FISTA, POGM, primal-dual)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import crandn, random_operator

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.evaluation.metrics import nrmse
from mrirecon.methods import build_method
from mrirecon.methods.base import data_scale
from mrirecon.physics.finite_differences import FiniteDifferences
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.physics.wavelet import Wavelet


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV: sum over pixels of sqrt(|dx|^2 + |dy|^2); (B, X, Y) -> (B,)."""
    return FiniteDifferences()(x).abs().pow(2).sum(1).sqrt().flatten(1).sum(1)


def wavelet_objective(x: torch.Tensor, y: torch.Tensor, op: SenseOperator, lam: float, levels: int) -> torch.Tensor:
    """cs_wavelet's objective 0.5 ||A x - y||^2 + w ||W x||_1 over the detail bands, w = lam *
    max |A^H y|, per batch element (B,) (its default wavelet, db2)."""
    w = Wavelet((int(x.shape[-2]), int(x.shape[-1])), "db2", levels)
    details = w(x)[:, w.approximation_size :].abs().sum(1)
    return 0.5 * (op.forward(x) - y).abs().pow(2).flatten(1).sum(1) + lam * data_scale(y, op) * details


@pytest.fixture
def problem():
    op, _maps, _mask = random_operator(2, 4, (32, 24))
    x = torch.zeros(2, 32, 24, dtype=torch.complex64)
    x[:, 8:24, 6:18] = 1.0  # piecewise constant: sparse in wavelets and gradients
    y = op.forward(x)
    return op, x, y


@pytest.mark.parametrize("solver", ["fista", "pogm"])
def test_solvers_decrease_the_objective(problem, solver):
    op, _, y = problem
    objectives = []
    for iters in (1, 5, 50):
        m = build_method(
            {
                "name": "cs_wavelet",
                "lam": 0.01,
                "max_iter": iters,
                "tol": 0.0,
                "solver": solver,
                "levels": 2,
                "cycle_spin": False,
            }
        )
        objectives.append(wavelet_objective(m.reconstruct(y, op), y, op, 0.01, 2))
    start = wavelet_objective(op.adjoint(y), y, op, 0.01, 2)
    assert torch.all(objectives[2] < objectives[1]) and torch.all(objectives[1] < start)


def test_pogm_and_fista_reach_the_same_minimum(problem):
    op, _, y = problem
    kw = {"name": "cs_wavelet", "lam": 0.01, "max_iter": 300, "tol": 0.0, "levels": 2, "cycle_spin": False}
    a = build_method({**kw, "solver": "fista"})
    b = build_method({**kw, "solver": "pogm"})
    fa, fb = (wavelet_objective(m.reconstruct(y, op), y, op, 0.01, 2) for m in (a, b))
    assert torch.allclose(fa, fb, rtol=1e-3)


@pytest.mark.parametrize("name", ["cs_wavelet", "cs_tv"])
def test_lambda_to_zero_approaches_cg_sense(problem, name):
    op, _, y = problem
    cg = build_method({"name": "cg_sense", "lam": 0.0, "max_iter": 200, "tol": 1e-9}).reconstruct(y, op)
    cs = build_method({"name": name, "lam": 0.0, "max_iter": 2000, "tol": 0.0}).reconstruct(y, op)
    assert float((cs - cg).abs().norm() / cg.abs().norm()) < 0.02


def dense_matrix(apply, shape: tuple[int, int]) -> torch.Tensor:
    """The matrix (outputs, X*Y) of a linear map of (B, X, Y) complex128 images, column by column."""
    n = shape[0] * shape[1]
    return apply(torch.eye(n, dtype=torch.complex128).reshape(n, *shape)).reshape(n, -1).T


def tv_minimum_by_admm(op: SenseOperator, y: torch.Tensor, w: float, iters: int = 1000) -> torch.Tensor:
    """argmin_x 0.5 ||A x - y||^2 + w TV(x) for one small slice by ADMM on z = grad x with exact
    x-updates (dense matrices in complex128): an independent reference for cs_tv."""
    shape = tuple(y.shape[-2:])
    n = shape[0] * shape[1]
    many = SenseOperator(op.maps.expand(n, -1, -1, -1).to(torch.complex128), op.mask[0, 0].double())
    a, g = dense_matrix(many.forward, shape), dense_matrix(FiniteDifferences(), shape)
    solve = torch.linalg.inv(a.conj().T @ a + g.conj().T @ g)  # rho = 1
    aty = a.conj().T @ y.reshape(-1).to(torch.complex128)
    x = solve @ aty
    z, u = g @ x, torch.zeros(2 * n, dtype=torch.complex128)
    for _ in range(iters):
        x = solve @ (aty + g.conj().T @ (z - u))
        v = (g @ x + u).reshape(2, n)
        z = (v * torch.clamp(1 - w / v.abs().pow(2).sum(0).sqrt().clamp_min(1e-30), min=0)).reshape(-1)
        u = u + g @ x - z
    return x.reshape(1, *shape)


@pytest.mark.parametrize("lam", [0.02, 0.1])
def test_cs_tv_reaches_the_minimum_at_a_positive_weight(lam):
    """cs_tv (Chambolle-Pock) against ADMM with exact linear solves on a 12x10 problem: the same
    minimiser and objective (a weight off by 20 % moves the image by 1.5 %)."""
    op, maps, mask = random_operator(1, 3, (12, 10), seed=4)
    x = torch.zeros(1, 12, 10, dtype=torch.complex64)
    x[:, 3:9, 2:7], x[:, 5:7, 4:9] = 1.0, 1.0 + 0.5j
    y = op.forward(x) + 0.05 * crandn(1, 3, 12, 10, seed=1) * op.mask
    w = lam * float(op.adjoint(y).abs().max())
    reference = tv_minimum_by_admm(op, y, w)
    cs = build_method({"name": "cs_tv", "lam": lam, "max_iter": 1000, "tol": 0.0}).reconstruct(y, op)
    cs = cs.to(torch.complex128)
    assert float((cs - reference).norm() / reference.norm()) < 1e-4
    exact = SenseOperator(maps.to(torch.complex128), mask.double())
    objective = lambda v: 0.5 * (exact.forward(v) - y).abs().pow(2).sum() + w * total_variation(v).sum()  # noqa: E731
    assert float(objective(cs)) <= float(objective(reference)) * (1 + 1e-5)  # float32 solver
    assert float(total_variation(reference).sum()) > 0  # not the trivial lam = 0 or constant solution


def test_cs_beats_zero_filled_on_the_sample(sample_dir):
    data = DeepInPyFile(sample_dir / "outputs" / "data" / "8bit_quarter.h5")
    slices = [data.read(int(i)) for i in data.split_indices("test")]
    maps = torch.from_numpy(np.stack([s.maps for s in slices]))
    mask = torch.from_numpy(np.stack([s.mask for s in slices]))
    y = torch.from_numpy(np.stack([s.ksp for s in slices])) * mask[:, None]
    op = SenseOperator(maps, mask)
    results = {}
    for name in ("zero_filled", "cs_wavelet", "cs_tv"):
        x = build_method({"name": name}).reconstruct(y, op, resolve_noise_std(y, op.mask)).numpy()
        results[name] = np.mean([nrmse(x[k], s.img) for k, s in enumerate(slices)])
    assert results["cs_wavelet"] < 0.7 * results["zero_filled"], results
    assert results["cs_tv"] < 0.7 * results["zero_filled"], results


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["cs_wavelet", "cs_tv"])
def test_cs_on_cuda_matches_cpu(problem, name):
    op, _, y = problem
    m = build_method({"name": name, "max_iter": 20, "tol": 0.0, **({"levels": 2} if name == "cs_wavelet" else {})})
    cpu = m.reconstruct(y, op, resolve_noise_std(y, op.mask))
    gpu_op = SenseOperator(op.maps.cuda(), op.mask[:, 0].cuda())
    gpu = m.reconstruct(y.cuda(), gpu_op, resolve_noise_std(y.cuda(), gpu_op.mask))
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)
