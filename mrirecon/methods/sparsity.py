"""Compressed-sensing baselines: L1-wavelet (FISTA or POGM) and isotropic total variation
(Chambolle-Pock), both min_x 0.5 ||A x - y||^2 + lam * s * R(x) on the shared SENSE operator.

s = max |A^H y| of each slice, so `lam` does not depend on the data's intensity units (the
sample's [0, 1] images and raw scanner k-space take the same lam)."""

from __future__ import annotations

import torch

from mrirecon.errors import UserError
from mrirecon.methods.base import Method, check_nonnegative, check_positive_int, register
from mrirecon.physics.sense import SenseOperator
from mrirecon.regularizers import WaveletSparsity, divergence, gradient, project_isotropic
from mrirecon.solvers.fista import fista, lipschitz, pogm
from mrirecon.solvers.primal_dual import primal_dual

SOLVERS = {"fista": fista, "pogm": pogm}


def data_scale(aty: torch.Tensor) -> torch.Tensor:
    """max |A^H y| per batch element, (B,), floored to avoid a zero weight."""
    return aty.abs().flatten(1).amax(1).clamp_min(1e-30)


@register("cs_wavelet")
class WaveletCS(Method):
    """min_x 0.5 ||A x - y||^2 + lam ||W x||_1 with an orthogonal wavelet transform W.

    Args:
        lam: regularisation weight (>= 0), relative to max |A^H y|.
        max_iter: iterations (>= 1); tol: relative-change stopping tolerance.
        solver: 'fista' or 'pogm'.
        wavelet: PyWavelets name (default Daubechies 4); levels: decomposition levels.
        cycle_spin: shift the image by a random offset below 2^levels before each wavelet
            shrinkage and back after it (as BART's pics does), which removes the blocky
            artefacts of a fixed wavelet grid; the objective then changes slightly per step.
    """

    def __init__(self, lam: float = 1e-4, max_iter: int = 100, tol: float = 1e-5, solver: str = "fista",
                 wavelet: str = "db4", levels: int = 4, cycle_spin: bool = True) -> None:
        self.lam = check_nonnegative("method.lam", lam)
        self.max_iter = check_positive_int("method.max_iter", max_iter)
        self.tol = check_nonnegative("method.tol", tol)
        if solver not in SOLVERS:
            raise UserError(f"method.solver: unknown solver '{solver}' (expected fista or pogm)")
        self.solver = SOLVERS[solver]
        self.cycle_spin, self.levels = bool(cycle_spin), levels
        try:
            self.sparsity = WaveletSparsity(wavelet, check_positive_int("method.levels", levels))
        except ValueError as exc:
            raise UserError(f"method.wavelet: {exc}") from None

    def objective(self, x: torch.Tensor, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        """0.5 ||A x - y||^2 + lam s ||W x||_1 per batch element, (B,)."""
        weight = self.lam * data_scale(op.adjoint(y))
        return 0.5 * (op.forward(x) - y).abs().pow(2).flatten(1).sum(1) + weight * self.sparsity.norm(x)

    def reconstruct(self, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        aty = op.adjoint(y)
        weight = (self.lam * data_scale(aty)).reshape(-1, 1, 1)
        step = 1.0 / lipschitz(op.normal, aty)
        shifts = torch.Generator().manual_seed(0)

        def prox(v: torch.Tensor, t: float) -> torch.Tensor:
            if not self.cycle_spin:
                return self.sparsity.prox(v, weight * t)
            dx, dy = torch.randint(0, 2**self.levels, (2,), generator=shifts).tolist()
            shrunk = self.sparsity.prox(torch.roll(v, (dx, dy), dims=(-2, -1)), weight * t)
            return torch.roll(shrunk, (-dx, -dy), dims=(-2, -1))

        return self.solver(lambda x: op.normal(x) - aty, prox, aty, step, self.max_iter, self.tol)


@register("cs_tv")
class TotalVariationCS(Method):
    """min_x 0.5 ||A x - y||^2 + lam TV(x), isotropic TV, Chambolle-Pock primal-dual.

    Args:
        lam: regularisation weight (>= 0), relative to max |A^H y|.
        max_iter: iterations (>= 1); tol: relative-change stopping tolerance.
    """

    def __init__(self, lam: float = 1e-3, max_iter: int = 200, tol: float = 1e-5) -> None:
        self.lam = check_nonnegative("method.lam", lam)
        self.max_iter = check_positive_int("method.max_iter", max_iter)
        self.tol = check_nonnegative("method.tol", tol)

    def reconstruct(self, y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        aty = op.adjoint(y)
        radius = (self.lam * data_scale(aty)).reshape(-1, 1, 1, 1)
        norm_sq = lipschitz(op.normal, aty) + 8.0  # ||grad||^2 <= 8
        return primal_dual(op.forward, op.adjoint, y, gradient, lambda q: -divergence(q),
                           lambda q: project_isotropic(q, radius), aty, norm_sq, self.max_iter, self.tol)
