"""Classical baselines: zero-filled adjoint and CG-SENSE."""

from __future__ import annotations

from typing import ClassVar

import torch

from mrirecon.methods.auto_weight import auto_choice, measured_samples
from mrirecon.methods.base import (
    AUTO,
    Method,
    auto_or_nonnegative,
    check_bool,
    check_nonnegative,
    check_positive_int,
    known_noise_std,
    register,
)
from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient


@register("zero_filled")
class ZeroFilled(Method):
    """x_hat = A^H y: coil-combined inverse FFT of the zero-filled k-space."""

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        return op.adjoint(y)


def residual_norm(op: SenseOperator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||A x - y|| per slice, (B,)."""
    return (op.forward(x) - y).abs().flatten(1).norm(dim=1)


@register("cg_sense")
class CGSense(Method):
    """Tikhonov-regularised SENSE: solve (A^H A + lam I) x = A^H y with conjugate gradient.

    With lam=auto (the default) each slice's lam follows the discrepancy principle: the lam
    whose solution leaves a residual ||A x - y|| equal to the noise, sigma * sqrt(C * M) (C
    coils, M measured locations), found by bisection of log10(lam) in [1e-4, 10]. Where the
    data cannot be fitted to sigma (model error, sigma underestimated or 0), sigma is replaced
    by the noise level the residual implies (`auto_weight.effective_noise_std`, rule 'residual');
    where the coil maps fail the calibration check of `physics.model_error` (rule 'model') the
    Tikhonov term is centred on the zero-filled image: (A^H A + lam + a)^-1 (1 + a) A^H y with
    a = `model_anchor` (model error: the fit would explain unmodelled signal with artefacts).

    Args:
        lam: 'auto' or the Tikhonov weight (>= 0) in the units of A^H A (maps normalised to
            sum |S|^2 = 1, so it does not depend on the data's intensity units).
        max_iter: CG iterations (>= 1).
        tol: stop when the relative residual falls under this.
        search_steps: bisection steps of lam=auto (each a warm-started CG of max_iter // 3).
        fallback: lam=auto only: allow the 'residual' and 'model' rules (false: always sigma,
            as the plain discrepancy principle).
    """

    units: ClassVar[dict[str, str]] = {"lam": "A^H A"}
    model_anchor: ClassVar[float] = 1.0  # lam=auto's zero-filled anchor where the model-error check fires

    def __init__(
        self,
        lam: str | float = AUTO,
        max_iter: int = 30,
        tol: float = 1e-6,
        search_steps: int = 8,
        fallback: bool = True,
    ) -> None:
        self.lam = auto_or_nonnegative("lam", lam)
        self.max_iter = check_positive_int("max_iter", max_iter)
        self.tol = check_nonnegative("tol", tol)
        self.search_steps = check_positive_int("search_steps", search_steps)
        self.fallback = check_bool("fallback", fallback)

    def discrepancy_lam(
        self, y: torch.Tensor, op: SenseOperator, aty: torch.Tensor, noise_std: torch.Tensor
    ) -> torch.Tensor:
        """The lam (B,) whose solution's residual matches the noise level (B,) of each slice."""
        target = noise_std * measured_samples(y, op).sqrt()
        low = torch.full_like(target, -4.0)
        high = torch.full_like(target, 1.0)
        x = None
        for _ in range(self.search_steps):
            mid = (low + high) / 2
            x = conjugate_gradient(op.gram, aty, x0=x, lam=10**mid, max_iter=max(1, self.max_iter // 3), tol=self.tol)
            too_smooth = residual_norm(op, x, y) > target
            high, low = torch.where(too_smooth, mid, high), torch.where(too_smooth, low, mid)
        return 10 ** ((low + high) / 2)

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        aty = op.adjoint(y)
        lam: torch.Tensor | float
        if self.lam != AUTO:
            lam = float(self.lam)
            self.chosen = {"lam": torch.full((y.shape[0],), lam)}
            return conjugate_gradient(op.gram, aty, lam=lam, max_iter=self.max_iter, tol=self.tol)
        auto = auto_choice(y, op, known_noise_std(noise_std, "lam=auto"), aty, self.fallback, self.model_anchor)
        lam = self.discrepancy_lam(y, op, aty, auto.sigma)
        self.chosen = {"lam": lam, "rule": auto.rules, "effective_noise_std": auto.sigma}
        if not bool((auto.anchor > 0).any()):
            return conjugate_gradient(op.gram, aty, lam=lam, max_iter=self.max_iter, tol=self.tol)
        a = auto.anchor
        rhs = aty * (1 + a).reshape(-1, 1, 1)
        return conjugate_gradient(op.gram, rhs, lam=lam + a, max_iter=self.max_iter, tol=self.tol)
