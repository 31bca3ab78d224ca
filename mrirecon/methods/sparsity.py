"""Compressed-sensing baselines: L1-wavelet (FISTA or POGM) and isotropic total variation
(Chambolle-Pock), both min_x 0.5 ||A x - y||^2 + w * R(x) on the shared SENSE operator.

The weight w of each slice is `lam` * max |A^H y| for a number (so `lam` does not depend on the
data's intensity units), or with lam=auto (the default) kappa * sigma, sigma the slice's noise
std per k-space sample: the soft threshold then sits at a fixed multiple of the noise level.
kappa, a class attribute of each method (0.3 wavelet, 0.2 TV), was picked on real acquired
k-space (scripts/bench_real.py: a fully sampled 4-coil scan undersampled 4x, 6x and 8x with
Poisson-disc masks; the best weight lay at 0.28-0.4 sigma for the wavelet and 0.14-0.28 sigma
for TV at every acceleration). Where the data cannot be fitted
to sigma (model error, sigma underestimated or 0: noiseless simulations), sigma is replaced by the
noise level the residual implies (`auto_weight.effective_noise_std`, rule 'residual'), so the
weight never silently falls to 0; where the coil maps fail the calibration check of
`physics.model_error` (rule 'model'), the weight is `auto_weight.MODEL_WEIGHT` times larger and
the objective gets the zero-filled anchor (a / 2) ||x - A^H y||^2, a = the method's
`model_anchor` (`auto_weight.Anchored`; 0.3 for the wavelet, 0 for TV).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from mrirecon.methods.auto_weight import MODEL_WEIGHT, Anchored, auto_choice
from mrirecon.methods.base import (
    AUTO,
    Method,
    auto_or_nonnegative,
    check_bool,
    check_nonnegative,
    check_positive_int,
    data_scale,
    known_noise_std,
    register,
)
from mrirecon.physics.finite_differences import NORM_SQUARED_BOUND, FiniteDifferences
from mrirecon.physics.operator import LinearOperator
from mrirecon.physics.sense import SenseOperator
from mrirecon.physics.wavelet import Wavelet, check_wavelet
from mrirecon.solvers.fista import fista, lipschitz, pogm
from mrirecon.solvers.primal_dual import primal_dual
from mrirecon.solvers.prox import project_isotropic, wavelet_shrinkage

SOLVERS = {"fista": fista, "pogm": pogm}


class SparsityMethod(Method):
    """A compressed-sensing method whose weight lam=auto is `kappa` * sigma."""

    kappa: ClassVar[float]  # lam=auto: weight = kappa * sigma
    model_anchor: ClassVar[float]  # lam=auto's zero-filled anchor where the model-error check fires
    units: ClassVar[dict[str, str]] = {"lam": "x max|A^H y|"}  # lam relative to the data's scale


def weights(
    method: SparsityMethod,
    lam: str | float,
    y: torch.Tensor,
    op: SenseOperator,
    noise_std: torch.Tensor | None,
    fallback: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The regularisation weight w (B,) of each slice for `lam` (auto or relative to max |A^H y|)
    and the zero-filled anchor's weight (B,) (0 unless lam=auto's rule is 'model'); records lam
    relative to max |A^H y| in method.chosen, and for auto the rule that chose it and the noise
    std it followed."""
    scale = data_scale(y, op)
    if lam != AUTO:
        method.chosen = {"lam": torch.full_like(scale, float(lam))}
        return float(lam) * scale, torch.zeros_like(scale)
    auto = auto_choice(y, op, known_noise_std(noise_std, "lam=auto"), fallback=fallback, anchor=method.model_anchor)
    w = method.kappa * auto.sigma * torch.where(auto.fires, MODEL_WEIGHT, 1.0)
    method.chosen = {"lam": w / scale, "rule": auto.rules, "effective_noise_std": auto.sigma}
    return w, auto.anchor


def auto_levels(shape: tuple[int, int]) -> int:
    """Wavelet levels that leave a coarsest band of at least 4 pixels on the shorter side
    (6 at 320x256, 4 at 80x64, 5 at 230x180)."""
    return max(1, math.floor(math.log2(min(shape) / 4)))


@register("cs_wavelet")
class WaveletCS(SparsityMethod):
    """min_x 0.5 ||A x - y||^2 + w ||W x||_1 with an orthogonal wavelet transform W.

    Args:
        lam: 'auto' (w = 0.3 sigma) or the weight relative to max |A^H y| (>= 0).
        max_iter: iterations (>= 1); tol: relative-change stopping tolerance.
        solver: 'fista' or 'pogm'.
        wavelet: PyWavelets name (default Daubechies 2, 4 taps, as BART's pics).
        levels: decomposition levels, or 'auto' (coarsest band >= 4 pixels).
        cycle_spin: shift the image by a random offset below 2^levels before each wavelet
            shrinkage and back after it (as BART's pics does), which removes the blocky
            artefacts of a fixed wavelet grid; the objective then changes slightly per step.
            The shifts follow a fixed seed, the same for every slice.
        fallback: lam=auto only: allow the 'residual' rule (false: always w = 0.3 sigma).
    """

    kappa = 0.3
    model_anchor = 0.3

    def __init__(
        self,
        lam: str | float = AUTO,
        max_iter: int = 100,
        tol: float = 1e-5,
        solver: str = "fista",
        wavelet: str = "db2",
        levels: str | int = AUTO,
        cycle_spin: bool = True,
        fallback: bool = True,
    ) -> None:
        self.lam = auto_or_nonnegative("lam", lam)
        self.fallback = check_bool("fallback", fallback)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = check_nonnegative("tol", tol)
        if solver not in SOLVERS:
            raise ValueError(f"solver: unknown solver '{solver}' (expected fista or pogm)")
        self.solver = SOLVERS[solver]
        self.cycle_spin, self.wavelet = bool(cycle_spin), wavelet
        self.levels = levels if levels == AUTO else check_positive_int("levels", levels)
        try:
            check_wavelet(wavelet)
        except ValueError as exc:
            raise ValueError(f"wavelet: {exc}") from None
        self._transforms: dict[tuple[int, int, int], Wavelet] = {}

    def transform(self, shape: tuple[int, int]) -> tuple[Wavelet, int]:
        """The wavelet transform W for images of `shape` and its number of levels."""
        levels = auto_levels(shape) if isinstance(self.levels, str) else self.levels  # str: AUTO
        if (*shape, levels) not in self._transforms:
            self._transforms[(*shape, levels)] = Wavelet(shape, self.wavelet, levels)
        return self._transforms[(*shape, levels)], levels

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        aty = op.adjoint(y)
        w, anchor = weights(self, self.lam, y, op, noise_std, self.fallback)
        w = w.reshape(-1, 1, 1)
        data: LinearOperator = op
        if bool((anchor > 0).any()):
            anchored = Anchored(op, anchor)
            data, y = anchored, anchored.data(y, aty)
        step = 1.0 / lipschitz(data, aty)
        wavelet, levels = self.transform((int(aty.shape[-2]), int(aty.shape[-1])))
        shifts = torch.Generator().manual_seed(0)

        def prox(v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            if not self.cycle_spin:
                return wavelet_shrinkage(wavelet, v, w * t)
            dx, dy = torch.randint(0, 2**levels, (2,), generator=shifts).tolist()
            shrunk = wavelet_shrinkage(wavelet, torch.roll(v, (dx, dy), dims=(-2, -1)), w * t)
            return torch.roll(shrunk, (-dx, -dy), dims=(-2, -1))

        return self.solver(data, y, prox, aty, step, self.max_iter, self.tol)


@register("cs_tv")
class TotalVariationCS(SparsityMethod):
    """min_x 0.5 ||A x - y||^2 + w TV(x), isotropic TV, Chambolle-Pock primal-dual.

    Args:
        lam: 'auto' (w = 0.2 sigma) or the weight relative to max |A^H y| (>= 0).
        max_iter: iterations (>= 1); tol: relative-change stopping tolerance.
        fallback: lam=auto only: allow the 'residual' rule (false: always w = 0.2 sigma).
    """

    kappa = 0.2
    model_anchor = 0.0

    def __init__(self, lam: str | float = AUTO, max_iter: int = 200, tol: float = 1e-5, fallback: bool = True) -> None:
        self.lam = auto_or_nonnegative("lam", lam)
        self.fallback = check_bool("fallback", fallback)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = check_nonnegative("tol", tol)

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        aty = op.adjoint(y)
        w, anchor = weights(self, self.lam, y, op, noise_std, self.fallback)
        radius = w.reshape(-1, 1, 1, 1)
        data: LinearOperator = op
        if bool((anchor > 0).any()):
            anchored = Anchored(op, anchor)
            data, y = anchored, anchored.data(y, aty)
        norm_sq = lipschitz(data, aty) + NORM_SQUARED_BOUND
        dual_prox = lambda q: project_isotropic(q, radius)  # noqa: E731
        return primal_dual(data, y, FiniteDifferences(), dual_prox, aty, norm_sq, self.max_iter, self.tol)
