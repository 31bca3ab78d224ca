"""The study behind lam=auto's fallback (`python scripts/bench_auto.py --rules`): candidate rules
for the noise level a weight follows where the data cannot be fitted to sigma, on the cases of
bench_auto.py. Every candidate fires where the default does (sigma_res > 1.1 sigma), so only what
it puts in sigma's place differs:
  residual (the default): sigma_res = ||A x_0 - y|| / sqrt(C M - tr H), x_0 the fit at lam 1e-4
    (10 CG steps), tr H by Hutchinson (methods/auto_weight.py);
  floor: 1.25 ||A x_0 - y|| / sqrt(C M), a fixed margin above the residual floor, no trace;
  gcv: cg_sense takes the lam minimising generalised cross-validation, RSS(lam) / (C M - tr H(lam))^2
    over log10 lam in [-4, 1] (steps of 0.5; 30 CG steps, 2 probes), the CS weights the noise
    level GCV implies, sqrt(RSS / (C M - tr H)) at that lam;
  holdout: k-space cross-validation per method: 10 % of the measured samples outside the 24x24
    centre are held out, the method reconstructs the rest at 1, 2, 4 and 8 sigma_res, and the
    multiple that predicts the held-out samples best is used with all the data (4 extra solves).
"""

from __future__ import annotations

import numpy as np
import torch
from bench_auto import METHODS, Case, cell, held_out, reconstruct, score

from mrirecon.methods.auto_weight import FALLBACK_RATIO, LAM_FLOOR, hat_trace, measured_samples, residual_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient

GCV_LAMS = 10 ** np.arange(-4.0, 1.01, 0.5)


def residual_sum(op: SenseOperator, y: torch.Tensor, lam: float, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RSS (B,) of the Tikhonov fit at lam and A^H y."""
    aty = op.adjoint(y)
    x = conjugate_gradient(op.gram, aty, lam=lam, max_iter=iters, tol=0.0)
    return (op.forward(x) - y).abs().pow(2).flatten(1).sum(1), aty


def gcv(op: SenseOperator, y: torch.Tensor) -> tuple[float, float]:
    """(lam, implied noise std) of the GCV minimum for one slice (B = 1)."""
    samples = float(measured_samples(y, op)[0])
    best = (np.inf, 0.0, 0.0)
    for lam in GCV_LAMS:
        rss, aty = residual_sum(op, y, float(lam), 30)
        trace = float(hat_trace(op, aty, float(lam), 30)[0])
        dof = samples - trace
        score_ = float(rss[0]) / dof**2
        if score_ < best[0]:
            best = (score_, float(lam), float(np.sqrt(float(rss[0]) / dof)))
    return best[1], best[2]


RULES = ("residual", "floor", "gcv", "holdout")


def slice_of(case: Case, b: int, sigma: float | None = None) -> Case:
    """Slice b of `case` as a one-slice case (with noise std `sigma` if given)."""
    noise = case.sigma[b : b + 1] if sigma is None else np.array([sigma])
    return Case(case.scan, case.condition, case.y[b : b + 1], case.maps[b : b + 1], case.mask[b : b + 1], noise)


def holdout_sigma(one: Case, name: str, sigma_res: float, multiples: tuple[float, ...] = (1, 2, 4, 8)) -> float:
    """The multiple of sigma_res whose reconstruction of 90 % of the samples best predicts the other 10 %."""
    measured = one.mask[0] > 0
    val = held_out(measured, 0.1, seed=1)
    fit = (measured & ~val).astype(np.float32)
    part = Case(one.scan, one.condition, (one.y * fit).astype(np.complex64), one.maps, fit[None], one.sigma,
                held=one.y * val)  # fmt: skip
    errors = [
        score(part, reconstruct(part, {"name": name, "fallback": False}, sigma=np.array([c * sigma_res]))[0])["holdout"]
        for c in multiples
    ]
    return multiples[int(np.argmin(errors))] * sigma_res


def candidates(case: Case, b: int) -> dict[str, dict] | None:
    """Per rule, the settings of slice b ({'cg': cg_sense config, 'sigma': {method: noise std}}),
    or None where sigma explains the data (no rule fires)."""
    one = slice_of(case, b)
    op, y = one.operator(), torch.from_numpy(one.y)
    sigma_res = float(residual_noise_std(y, op)[0])
    if not sigma_res > FALLBACK_RATIO * float(case.sigma[b]):
        return None
    plain = {"name": "cg_sense", "fallback": False}
    floor = float(residual_sum(op, y, LAM_FLOOR, 10)[0][0].sqrt() / measured_samples(y, op)[0].sqrt()) * 1.25
    lam, sigma_gcv = gcv(op, y)
    return {
        "residual": {"cg": plain, "sigma": dict.fromkeys(METHODS, sigma_res)},
        "floor": {"cg": plain, "sigma": dict.fromkeys(METHODS, floor)},
        "gcv": {"cg": {"name": "cg_sense", "lam": lam}, "sigma": dict.fromkeys(METHODS, sigma_gcv)},
        "holdout": {"cg": plain, "sigma": {m: holdout_sigma(one, m, sigma_res) for m in METHODS}},
    }


def run_rule(case: Case, settings: list[dict]) -> dict[str, dict]:
    """Scores of the three methods with per-slice settings of one rule."""
    out = {}
    for name in METHODS:
        images = []
        for b, s in enumerate(settings):
            cfg = s["cg"] if name == "cg_sense" else {"name": name, "fallback": False}
            images.append(reconstruct(slice_of(case, b, s["sigma"][name]), cfg)[0])
        out[name] = score(case, np.concatenate(images))
    return out


def compare_rules(cases: list[Case]) -> None:
    """Print the candidate rules' scores on every case where the fallback fires on every slice."""
    print(
        "\n| scan | condition | rule | sigma_eff / sigma (cg / wav / tv) | zero_filled | cg_sense | cs_wavelet | cs_tv |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        per_slice = [candidates(case, b) for b in range(len(case.y))]
        if any(p is None for p in per_slice):
            continue
        zero_filled = score(case, reconstruct(case, {"name": "zero_filled"})[0])
        for rule in RULES:
            settings = [p[rule] for p in per_slice]
            ratio = "inf (sigma 0)"
            if case.sigma.all():
                ratios = [np.mean([s["sigma"][m] / case.sigma[b] for b, s in enumerate(settings)]) for m in METHODS]
                ratio = " / ".join(f"{r:.2f}" for r in ratios)
            scores = run_rule(case, settings)
            cells = " | ".join(cell(scores[m], zero_filled) for m in METHODS)
            print(f"| {case.scan} | {case.condition} | {rule} | {ratio} | {cell(zero_filled)} | {cells} |")
