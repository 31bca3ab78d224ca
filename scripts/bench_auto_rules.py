"""The study behind lam=auto's fallback (`python scripts/bench_auto.py --rules`): candidate rules
for the noise level a weight follows where the data cannot be fitted to sigma, on the cases of
bench_auto.py. Every candidate fires where the default does (sigma_res > 1.1 sigma), so only what
it puts in sigma's place differs:
  residual (the default): sigma_res = ||A x_0 - y|| / sqrt(C M - tr H), x_0 the fit at lam 1e-4
    (10 CG steps), tr H by Hutchinson (methods/auto_weight.py);
  floor: 1.25 ||A x_0 - y|| / sqrt(C M), a fixed margin above the residual floor, no trace;
  gcv: cg_sense takes the lam minimising generalised cross-validation, RSS(lam) / (C M - tr H(lam))^2
    over log10 lam in [-4, 1] (steps of 0.5; 30 CG steps, 2 probes), the CS weights the noise
    level GCV implies, sqrt(RSS / (C M - tr H)) at that lam.
"""

from __future__ import annotations

import numpy as np
import torch
from bench_auto import METHODS, Case, cell, reconstruct, score

from mrirecon.methods.auto_weight import FALLBACK_RATIO, LAM_FLOOR, hat_trace, measured_samples, residual_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient

GCV_LAMS = 10 ** np.arange(-4.0, 1.01, 0.5)


def residual_sum(op: SenseOperator, y: torch.Tensor, lam: float, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RSS (B,) of the Tikhonov fit at lam and A^H y."""
    aty = op.adjoint(y)
    x = conjugate_gradient(op.normal, aty, lam=lam, max_iter=iters, tol=0.0)
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


def candidates(case: Case, b: int) -> dict[str, dict]:
    """Per rule, the settings of slice b: {'sigma': effective sigma, 'cg': cg_sense config}."""
    one = Case(case.scan, case.condition, case.y[b : b + 1], case.maps[b : b + 1], case.mask[b : b + 1],
               case.sigma[b : b + 1])  # fmt: skip
    op, y = one.operator(), torch.from_numpy(one.y)
    sigma = float(case.sigma[b])
    sigma_res = float(residual_noise_std(y, op)[0])
    if not sigma_res > FALLBACK_RATIO * sigma:
        plain = {"sigma": sigma, "cg": {"name": "cg_sense", "fallback": False}}
        return dict.fromkeys(("residual", "floor", "gcv"), plain)
    floor = float(residual_sum(op, y, LAM_FLOOR, 10)[0][0].sqrt() / measured_samples(y, op)[0].sqrt()) * 1.25
    lam, sigma_gcv = gcv(op, y)
    return {
        "residual": {"sigma": sigma_res, "cg": {"name": "cg_sense", "fallback": False}},
        "floor": {"sigma": floor, "cg": {"name": "cg_sense", "fallback": False}},
        "gcv": {"sigma": sigma_gcv, "cg": {"name": "cg_sense", "lam": lam}},
    }


def run_rule(case: Case, settings: list[dict]) -> dict[str, dict]:
    """Scores of the three methods with per-slice settings of one rule."""
    out = {}
    for name in METHODS:
        images = []
        for b, s in enumerate(settings):
            one = Case(case.scan, case.condition, case.y[b : b + 1], case.maps[b : b + 1], case.mask[b : b + 1],
                       np.array([s["sigma"]]))  # fmt: skip
            cfg = s["cg"] if name == "cg_sense" else {"name": name, "fallback": False}
            images.append(reconstruct(one, cfg)[0])
        out[name] = score(case, np.concatenate(images))
    return out


def compare_rules(cases: list[Case]) -> None:
    """Print the candidate rules' scores on every case where the fallback fires."""
    print("\n| scan | condition | rule | sigma_eff / sigma | zero_filled | cg_sense | cs_wavelet | cs_tv |")
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        per_slice = [candidates(case, b) for b in range(len(case.y))]
        if all(p["residual"]["sigma"] == case.sigma[b] for b, p in enumerate(per_slice)):
            continue  # sigma explains the data: every rule keeps it
        zero_filled = score(case, reconstruct(case, {"name": "zero_filled"})[0])
        for rule in ("residual", "floor", "gcv"):
            settings = [p[rule] for p in per_slice]
            ratio = np.mean([s["sigma"] for s in settings]) / np.mean(case.sigma) if case.sigma.any() else np.inf
            scores = run_rule(case, settings)
            cells = [cell(scores[m], zero_filled) for m in METHODS]
            print(
                f"| {case.scan} | {case.condition} | {rule} | {ratio:.2f} | {cell(zero_filled)} | {' | '.join(cells)} |"
            )
