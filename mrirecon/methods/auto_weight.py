"""The noise level that `lam=auto` follows, with a fallback for data the model cannot fit to it.

cg_sense (discrepancy principle: ||A x - y|| = sigma sqrt(C M)), cs_wavelet and cs_tv
(w = kappa sigma) set their weight from sigma, the noise std per complex k-space sample. That
assumes the SENSE model explains the data down to the noise. It does not when the maps are wrong
(zeroed outside a support that cuts the object, estimated from a small calibration region),
when sigma is underestimated, or when sigma is 0 (noiseless simulations): the discrepancy target
then lies below the smallest residual any lam reaches, bisection pins lam at its lower bound and
CG amplifies the noise, and the CS weights fall to 0 (plain least squares).

`residual_noise_std` measures the noise level the data themselves imply: the residual of an
almost unregularised fit, x = (A^H A + LAM_FLOOR I)^-1 A^H y (cg_sense's lower search bound, by
FLOOR_ITERATIONS CG steps), divided by its degrees of freedom,

    sigma_res^2 = ||A x - y||^2 / (C M - tr H),   H = A (A^H A + LAM_FLOOR I)^-1 A^H,

the residual variance estimate of ridge regression (Wahba 1990), with tr H by Hutchinson's
estimator (PROBES seeded Rademacher vectors, the same for every slice, so a slice's value does
not depend on its batch). Where sigma explains the data, sigma_res is within a few per cent of
it (0.95-1.04 sigma on the real phantom, the brain and the sample: scripts/bench_auto.py); with
model error or an underestimated sigma it is larger (the misfit acts as noise). The rule:
`effective_noise_std` keeps sigma (rule 'noise') unless sigma_res exceeds it by more than
FALLBACK_RATIO, and then uses sigma_res (rule 'residual'); the discrepancy target is then
reachable by construction (sigma_res sqrt(C M) > ||A x - y||).

Model error is more than a larger noise: where the maps cannot explain the data (their support
cuts the object, ESPIRiT with a high crop or threshold), every weight of cg_sense and cs_wavelet
loses to zero-filling on the real phantom (the fit explains the unmodelled signal with artefacts
inside the support), and every weight of all three loses on the brain's hold-out error.
`auto_choice` therefore also runs the calibration check of `physics.model_error`; where it fires
(rule 'model') the method adds a zero-filled anchor to its objective,

    + (a / 2) ||x - A^H y||^2,

a = the method's `model_anchor` in the units of A^H A (1: one fully sampled measurement of every
pixel), so that the data decide where they are well measured and the zero-filled image where the
model would fill in from unmodelled signal; for cg_sense (a = 1) it makes the Tikhonov solution
(A^H A + lam + a)^-1 (1 + a) A^H y (Tikhonov centred on the zero-filled image). The CS weights
then follow MODEL_WEIGHT x the noise level of the sigma rules (the misfit is structured: a weight
set for noise leaves it in). The constants (cg_sense a = 1, cs_wavelet a = 0.3, cs_tv a = 0, weight
x4) were chosen on the model-error rows of scripts/bench_auto.py (docs/noise.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrirecon.physics.model_error import model_error
from mrirecon.physics.operator import LinearOperator
from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient

LAM_FLOOR = 1e-4  # the almost unregularised fit (units of A^H A; cg_sense's lower search bound)
FLOOR_ITERATIONS = 10  # its CG steps (sigma_res changes by < 2 % between 5 and 30 on the phantom)
PROBES = 2  # Hutchinson probes for tr H
FALLBACK_RATIO = 1.1  # use sigma_res when it exceeds sigma by more than 10 %
MIN_DOF_FRACTION = 0.05  # C M - tr H is floored at this fraction of C M (e.g. one coil: no dof left)
NOISE, RESIDUAL, MODEL = "noise", "residual", "model"  # the rules, as summary.json names them
MODEL_WEIGHT = 4.0  # the CS weights' multiple of the sigma rules' noise level where the check fires


def measured_samples(y: torch.Tensor, op: SenseOperator) -> torch.Tensor:
    """C M per slice (B,): coils times the measured locations of its mask."""
    return op.mask.flatten(1).sum(1).expand(y.shape[0]) * y.shape[1]


def rademacher(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Complex Rademacher probes (shape) with E[z z^H] = I: (+-1 +- 1j) / sqrt(2), seeded."""
    signs = torch.randint(0, 2, (2, *shape), generator=torch.Generator().manual_seed(seed)).float() * 2 - 1
    return torch.complex(signs[0], signs[1]) / 2**0.5


def hat_trace(
    op: SenseOperator, like: torch.Tensor, lam: float = LAM_FLOOR, iterations: int = FLOOR_ITERATIONS
) -> torch.Tensor:
    """Hutchinson estimate (B,) of tr H = tr((A^H A + lam I)^-1 A^H A) for each slice, with the
    same truncated CG as the fit; `like` (B, X, Y) gives batch, shape, dtype and device."""
    total = torch.zeros(like.shape[0], dtype=like.real.dtype, device=like.device)
    for k in range(PROBES):
        z = rademacher(tuple(like.shape[1:]), seed=k).to(like.device, like.dtype).expand_as(like)
        u = conjugate_gradient(op.gram, op.normal(z), lam=lam, max_iter=iterations, tol=0.0)
        total = total + (z.conj() * u).real.flatten(1).sum(1)
    return total / PROBES


def residual_noise_std(y: torch.Tensor, op: SenseOperator, aty: torch.Tensor | None = None) -> torch.Tensor:
    """sigma_res (B,): the noise std per k-space sample implied by the residual of an almost
    unregularised fit of y (B, C, X, Y) (module docstring); aty = A^H y if already computed."""
    aty = op.adjoint(y) if aty is None else aty
    x = conjugate_gradient(op.gram, aty, lam=LAM_FLOOR, max_iter=FLOOR_ITERATIONS, tol=0.0)
    rss = (op.forward(x) - y).abs().pow(2).flatten(1).sum(1)
    samples = measured_samples(y, op).to(rss.dtype)
    dof = (samples - hat_trace(op, aty)).clamp_min(MIN_DOF_FRACTION * samples).clamp_min(1.0)
    return (rss / dof).sqrt()


def effective_noise_std(
    y: torch.Tensor, op: SenseOperator, sigma: torch.Tensor, aty: torch.Tensor | None = None
) -> tuple[torch.Tensor, list[str]]:
    """The noise std (B,) an auto weight follows and the rule that chose it, per slice: sigma
    (B,) ('noise'), or sigma_res where it exceeds sigma by more than FALLBACK_RATIO
    ('residual': model error, an underestimated sigma, or sigma = 0)."""
    sigma_res = residual_noise_std(y, op, aty)
    fallback = sigma_res > FALLBACK_RATIO * sigma
    rules = [RESIDUAL if bool(f) else NOISE for f in fallback]
    return torch.where(fallback, sigma_res, sigma), rules


@dataclass(frozen=True)
class AutoChoice:
    """What lam=auto follows, per slice: the noise std sigma (B,), the rule (noise | residual |
    model), whether the model-error check fired (B,) bool, the zero-filled anchor's weight (B,)
    (the method's anchor where it fired, else 0) and the check's ratio (B,) (NaN where unchecked)."""

    sigma: torch.Tensor
    rules: list[str]
    fires: torch.Tensor
    anchor: torch.Tensor
    model_error: torch.Tensor


def auto_choice(
    y: torch.Tensor,
    op: SenseOperator,
    sigma: torch.Tensor,
    aty: torch.Tensor | None = None,
    fallback: bool = True,
    anchor: float = 1.0,
) -> AutoChoice:
    """The noise std and rule of each slice (`effective_noise_std` when `fallback`, else sigma)
    and, with `fallback`, the model-error check: where it fires the rule is 'model' and the
    zero-filled anchor's weight `anchor` (module docstring)."""
    batch = y.shape[0]
    none = torch.zeros(batch, dtype=y.real.dtype, device=y.device)
    if not fallback:
        unchecked = torch.full((batch,), float("nan"))
        return AutoChoice(sigma, [NOISE] * batch, torch.zeros(batch, dtype=torch.bool), none, unchecked)
    check = model_error(y, op.maps, op.mask, sigma.detach().cpu())  # against the noise, not sigma_res
    sigma, rules = effective_noise_std(y, op, sigma, aty)
    fires = check.exceeds()
    rules = [MODEL if bool(f) else r for f, r in zip(fires, rules)]
    weights = torch.where(fires.to(y.device), torch.full_like(none, anchor), none)
    return AutoChoice(sigma, rules, fires.to(y.device), weights, check.ratio)


class Anchored(LinearOperator):
    """The data term with the zero-filled anchor, ||A x - y||^2 + a ||x - A^H y||^2, as one
    operator [A; sqrt(a) I] and data [y; sqrt(a) A^H y]: k-space (B, C, X, Y) with the anchor as
    one more channel (B, C + 1, X, Y); a (B,) per slice (0: the plain data term)."""

    def __init__(self, op: SenseOperator, anchor: torch.Tensor) -> None:
        self.op, self.anchor = op, anchor
        self._root = anchor.sqrt().reshape(-1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.op.forward(x), (self._root * x).unsqueeze(1)], dim=1)

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        return self.op.adjoint(u[:, :-1]) + self._root * u[:, -1]

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.op.normal(x) + self.anchor.reshape(-1, 1, 1) * x

    def data(self, y: torch.Tensor, aty: torch.Tensor) -> torch.Tensor:
        """[y; sqrt(a) A^H y] (B, C + 1, X, Y)."""
        return torch.cat([y, (self._root * aty).unsqueeze(1)], dim=1)
