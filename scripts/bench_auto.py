#!/usr/bin/env python
"""lam=auto where its assumption fails: every classical method at its defaults against
zero-filling, on the real scans and under simulated model error, the rule that chose the weight,
the model-error check (physics/model_error.py) and what the defaults gave before it.

Scans and conditions (the default lam=auto assumes the SENSE model explains the data down to the
noise std sigma; each condition breaks that in a way real data do):
  phantom: the real fully sampled 4-coil GRE scan (tests/assets), Poisson-disc R = 6, ESPIRiT maps
    from the undersampled calibration region, sigma estimated, reference = SENSE combine of the
    full k-space with those (full-support) maps: made without the maps or method under test.
  brain: the real 8-coil brain k-space, 8x Poisson (tests/assets), ESPIRiT maps; no reference. It is
    judged by k-space hold-out: 15 % of the measured samples outside the 24x24 calibration square
    are held out, the method reconstructs from the rest, and its image predicts them:
    ||A_held x - y_held|| / ||y_held|| (lower is better). A method that fits noise predicts unseen
    samples badly.
  sample: simulation (the embedded sample's 3 test slices at 320x256: real knee magnitudes,
    simulated phase, birdcage maps, Poisson-disc masks R = 6).
Conditions: `as acquired` / `as simulated`; `support cut N px` (maps zeroed outside their support
eroded by N pixels: the object's rim is outside the model, as with a too tight ESPIRiT crop);
`ESPIRiT crop c` / `ESPIRiT thresh t` (maps from the data with a higher crop or threshold than
the default 0.95 / 0.02: real ESPIRiT maps whose support cuts the object); `maps zeroed on 20 %
of the object` (the last fifth of the columns the support spans: anatomy outside the model, a
condition the model rule's constants were not chosen on); `sigma / 4` (sigma
underestimated 4x, as padded fastMRI columns bias the estimator); `sigma = 0`; `noiseless` (the
sample with data.noise=0); `ESPIRiT maps` (the sample with maps estimated from its noisy 24x24
calibration region instead of the true ones).

For each scan x condition: sigma_res / sigma (methods/auto_weight.py), the model-error check
(ratio to the noise / fraction of the calibration energy; * where it fires), zero_filled, then
cg_sense, cs_wavelet, cs_tv at their defaults (PSNR / SSIM, or the hold-out error), the rule that
chose each auto weight (noise | residual | model), and where the check fires the same three as
they were before it (the check off: the residual rule alone). `--rules` adds the study that chose
the residual fallback: candidate rules on the same cases. The checks printed at the end are
those of docs/noise.md.

Usage: python scripts/bench_auto.py [--threads 2] [--rules] [--scans phantom,brain,sample]
(also run by scripts/bench_real.py)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import sigpy.mri
import torch
from scipy import ndimage

from mrirecon.data.completion import espirit_maps, ifft2c_numpy
from mrirecon.data.formats.sample import SampleSource
from mrirecon.evaluation import metrics
from mrirecon.methods import build_method
from mrirecon.methods.auto_weight import residual_noise_std
from mrirecon.physics import model_error
from mrirecon.physics.noise import estimate_noise_std
from mrirecon.physics.sense import SenseOperator

DATA = Path(__file__).resolve().parents[1] / "tests" / "assets"
METHODS = ("cg_sense", "cs_wavelet", "cs_tv")
ITERS = {"cs_wavelet": 100, "cs_tv": 200}  # the defaults, with tol 0 (fixed work per slice)
GRIDS = {  # the weights behind "best of grid": cg_sense lam (units of A^H A), CS lam relative to max |A^H y|
    "cg_sense": [1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0],
    "cs_wavelet": [2.5e-4 * 2**k for k in range(9)],
    "cs_tv": [2.5e-4 * 2**k for k in range(9)],
}


@dataclass(frozen=True)
class Case:
    """One scan under one condition: a batch of B slices (numpy)."""

    scan: str
    condition: str
    y: np.ndarray  # (B, C, X, Y) measured k-space (zeros off the mask)
    maps: np.ndarray  # (B, C, X, Y) the maps the methods are given
    mask: np.ndarray  # (B, X, Y)
    sigma: np.ndarray  # (B,) the noise std the methods are given
    ref: np.ndarray | None = None  # (B, X, Y) reference images, or None
    held: np.ndarray | None = None  # (B, C, X, Y) samples the methods do not see (zeros elsewhere)

    def operator(self) -> SenseOperator:
        return SenseOperator(torch.from_numpy(self.maps), torch.from_numpy(self.mask))


def estimate(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.atleast_1d(estimate_noise_std(torch.from_numpy(y), torch.from_numpy(mask)).numpy()).astype(np.float64)


def held_out(measured: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A random `fraction` of the locations `measured` (X, Y) outside the 24x24 centre."""
    x, y = measured.shape
    centre = np.zeros_like(measured)
    centre[x // 2 - 12 : x // 2 + 12, y // 2 - 12 : y // 2 + 12] = True
    return measured & ~centre & (np.random.default_rng(seed).random(measured.shape) < fraction)


def phantom(accel: float = 6.0, seed: int = 2) -> Case:
    """The phantom undersampled at `accel`; its held-out samples are 15 % of the unmeasured ones
    (it is fully sampled), so that the hold-out error can be compared with PSNR."""
    full = np.load(DATA / "phantom_4coil_gre_256.npy")
    mask = (sigpy.mri.poisson(full.shape[1:], accel, calib=(24, 24), seed=seed) != 0).astype(np.float32)
    y = (full * mask).astype(np.complex64)
    maps = espirit_maps(y, 24, 0.02, 0.95)
    ref = (np.conj(maps) * ifft2c_numpy(full)).sum(0).astype(np.complex64)
    held = full * held_out(mask == 0, 0.15)
    return Case("phantom", "as acquired", y[None], maps[None], mask[None], estimate(y, mask), ref[None], held[None])


def brain(held_fraction: float = 0.15) -> Case:
    """The brain with `held_fraction` of its measured samples outside the calibration square held out."""
    full = np.load(DATA / "brain_8coil_ksp_poisson8x.npy")
    measured = np.abs(full).sum(0) > 0
    held = held_out(measured, held_fraction)
    mask = (measured & ~held).astype(np.float32)
    kept = (full * mask).astype(np.complex64)
    maps = espirit_maps(kept, 24, 0.02, 0.95)
    return Case(
        "brain", "as acquired", kept[None], maps[None], mask[None], estimate(kept, mask), held=(full * held)[None]
    )


def sample(noise: float | None = None) -> Case:
    """The sample's 3 test slices at full scale (simulation); noise 0 for the noiseless case."""
    source = SampleSource() if noise is None else SampleSource(noise=noise)
    slices = [source.read(i) for i in (12, 13, 14)]
    stack = lambda key: np.stack([getattr(s, key) for s in slices])  # noqa: E731
    mask = stack("mask").astype(np.float32)
    y = (stack("ksp") * mask[:, None]).astype(np.complex64)
    sigma = np.array([s.noise_std for s in slices], dtype=np.float64)
    name = "noiseless" if noise == 0 else "as simulated"
    return Case("sample (simulated)", name, y, stack("maps"), mask, sigma, ref=stack("img"))


def support_cut(case: Case, pixels: int) -> Case:
    """Maps zeroed outside their support (where any coil's map is non-zero, or for maps defined
    everywhere where the reference exceeds 5 % of its maximum) eroded by `pixels`."""
    supports = []
    for b in range(case.maps.shape[0]):
        inside = np.abs(case.maps[b]).sum(0) > 0
        if inside.all() and case.ref is not None:
            inside = ndimage.binary_closing(np.abs(case.ref[b]) > 0.05 * np.abs(case.ref[b]).max(), iterations=4)
        supports.append(ndimage.binary_erosion(inside, iterations=pixels))
    maps = (case.maps * np.stack(supports)[:, None]).astype(np.complex64)
    return replace(case, maps=maps, condition=f"support cut {pixels} px")


def region_cut(case: Case, fraction: float = 0.2) -> Case:
    """Maps zeroed over one side of the object: the last `fraction` of the columns their support
    spans (anatomy the model does not cover at all)."""
    maps = case.maps.copy()
    for b in range(maps.shape[0]):
        columns = np.flatnonzero((np.abs(maps[b]).sum(0) > 0).any(0))
        start = int(columns[0] + (1 - fraction) * (columns[-1] + 1 - columns[0]))
        maps[b, :, :, start:] = 0
    return replace(case, maps=maps, condition=f"maps zeroed on {100 * fraction:.0f} % of the object")


def with_sigma(case: Case, factor: float, name: str) -> Case:
    return replace(case, sigma=case.sigma * factor, condition=name)


def with_espirit(case: Case, crop: float = 0.95, thresh: float = 0.02) -> Case:
    """ESPIRiT maps (calibration 24) from the measured data; named by what differs from the default."""
    maps = np.stack([espirit_maps(y, 24, thresh, crop) for y in case.y])
    name = "ESPIRiT maps" if (crop, thresh) == (0.95, 0.02) else f"ESPIRiT crop {crop}" if crop != 0.95 else ""
    name = name or f"ESPIRiT thresh {thresh}"
    return replace(case, maps=maps, condition=name)


def few_coils(case: Case, coils: int) -> Case:
    """The first `coils` coils only (maps renormalised to sum |S|^2 = 1 where they are non-zero,
    sigma re-estimated): fewer degrees of freedom left in the residual."""
    maps = case.maps[:, :coils]
    norm = np.sqrt((np.abs(maps) ** 2).sum(1, keepdims=True))
    maps = np.where(norm > 0, maps / np.where(norm > 0, norm, 1), 0).astype(np.complex64)
    y = np.ascontiguousarray(case.y[:, :coils])
    sigma = np.concatenate([estimate(y[b], case.mask[b]) for b in range(len(y))])
    held = None if case.held is None else case.held[:, :coils]
    return replace(case, y=y, maps=maps, sigma=sigma, held=held, condition=f"{coils} coils")


def rule_study_cases() -> list[Case]:
    """Extra cases of --rules: the phantom with 2 of its 4 coils at R = 4 and 8, sigma / 4."""
    return [
        with_sigma(few_coils(phantom(accel), 2), 0.25, f"2 coils, R = {accel:g}, sigma / 4") for accel in (4.0, 8.0)
    ]


def cases(scans: tuple[str, ...] = ("phantom", "brain", "sample")) -> list[Case]:
    out: list[Case] = []
    if "phantom" in scans:
        p = phantom()
        out += [
            p,
            support_cut(p, 8),
            support_cut(p, 12),
            with_espirit(p, crop=0.995),
            with_espirit(p, thresh=0.1),
            region_cut(p),
            with_sigma(p, 0.25, "sigma / 4"),
            with_sigma(p, 0, "sigma = 0"),
        ]
    if "brain" in scans:
        b = brain()
        out += [
            b,
            support_cut(b, 8),
            support_cut(b, 12),
            with_espirit(b, thresh=0.1),
            with_espirit(b, thresh=0.2),
            region_cut(b),
            with_sigma(b, 0.25, "sigma / 4"),
        ]
    if "sample" in scans:
        s = sample()
        out += [replace(s, condition="as simulated"), sample(noise=0.0), with_espirit(s), support_cut(s, 8)]
    return out


def cuts_maps(case: Case) -> bool:
    """A real scan whose maps cut the object (support cut or an ESPIRiT crop / threshold above the default)."""
    return case.scan in ("phantom", "brain") and case.condition.startswith(("support cut", "ESPIRiT ", "maps zeroed"))


@contextmanager
def model_check_off() -> Iterator[None]:
    """lam=auto as it was before the model-error check (the check never fires)."""
    limit = model_error.RATIO_LIMIT
    model_error.RATIO_LIMIT = float("inf")
    try:
        yield
    finally:
        model_error.RATIO_LIMIT = limit


def check_of(case: Case) -> tuple[str, bool]:
    """The model-error check of the case's slices as 'ratio / fraction %' (ranges over slices,
    * where it fires) and whether it fires on any slice."""
    found = model_error.model_error(
        torch.from_numpy(case.y), torch.from_numpy(case.maps), torch.from_numpy(case.mask), torch.from_numpy(case.sigma)
    )
    fires = bool(found.exceeds().any())

    def span(v: np.ndarray, fmt: str) -> str:
        return (
            fmt.format(v.min())
            if np.allclose(v.min(), v.max(), rtol=0.05)
            else f"{fmt.format(v.min())}-{fmt.format(v.max())}"
        )

    ratio = "inf" if not np.isfinite(found.ratio.numpy()).all() else span(found.ratio.numpy(), "{:.1f}")
    return f"{ratio} / {span(100 * found.fraction.numpy(), '{:.2f}')} %{' *' if fires else ''}", fires


def reconstruct(case: Case, cfg: dict, sigma: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Images (B, X, Y) of the method `cfg` and what it chose."""
    method = build_method({**cfg, **({"max_iter": ITERS[cfg["name"]], "tol": 0.0} if cfg["name"] in ITERS else {})})
    noise = torch.from_numpy(case.sigma if sigma is None else sigma).float()
    with torch.no_grad():
        x = method.reconstruct(torch.from_numpy(case.y), case.operator(), noise)
    return x.numpy(), method.chosen


def score(case: Case, x: np.ndarray) -> dict[str, float]:
    """Mean PSNR / SSIM over the slices against the reference, and the hold-out error."""
    out = {}
    if case.ref is not None:
        values = [metrics.slice_metrics(x[b], case.ref[b]) for b in range(len(x))]
        out = {k: float(np.mean([v[k] for v in values])) for k in ("psnr", "ssim")}
    if case.held is not None:
        mask = (np.abs(case.held).sum(1) > 0).astype(np.float32)
        op = SenseOperator(torch.from_numpy(case.maps), torch.from_numpy(mask))
        predicted = op.forward(torch.from_numpy(x.astype(np.complex64))).numpy()
        out["holdout"] = float(np.linalg.norm(predicted - case.held) / np.linalg.norm(case.held))
    return out


def cell(s: dict[str, float], zero_filled: dict[str, float] | None = None) -> str:
    """'PSNR / SSIM' (or the hold-out error); bold where it beats zero_filled, with a dagger where
    its SSIM is lower than zero_filled's."""
    text = f"{s['psnr']:.2f} / {s['ssim']:.3f}" if "psnr" in s else f"{s['holdout']:.3f}"
    if zero_filled is None:
        return text
    if "psnr" in s and s["ssim"] < zero_filled["ssim"]:
        text += " †"
    return f"**{text}**" if beats(s, zero_filled) else text


def beats(s: dict[str, float], zero_filled: dict[str, float]) -> bool:
    """A higher PSNR than zero-filled's (with a reference), else a smaller hold-out error."""
    if "psnr" in s:
        return s["psnr"] > zero_filled["psnr"]
    return s["holdout"] < zero_filled["holdout"]


def best_of_grid(case: Case, name: str) -> dict[str, float]:
    """The best score of `name` over its grid of weights (PSNR, or the hold-out error)."""
    scores = [score(case, reconstruct(case, {"name": name, "lam": lam})[0]) for lam in GRIDS[name]]
    return max(scores, key=lambda s: s["psnr"] if "psnr" in s else -s["holdout"])


def sigma_ratio(case: Case) -> str:
    sigma_res = residual_noise_std(torch.from_numpy(case.y), case.operator()).numpy()
    return f"{np.mean(sigma_res / case.sigma):.2f}" if np.all(case.sigma > 0) else "inf (sigma 0)"


def evaluate(case: Case) -> dict:
    """One row of the conditions table: scores, rules, the model-error check and, where it fires,
    the scores before it; where a default does not beat zero-filling, each method's best weight
    of a grid."""
    zero_filled = score(case, reconstruct(case, {"name": "zero_filled"})[0])
    check, fires = check_of(case)
    row = {"case": case, "zero_filled": zero_filled, "sigma_ratio": sigma_ratio(case), "check": check}
    row["fires"], row["best"] = fires, None
    for name in METHODS:
        x, chosen = reconstruct(case, {"name": name})
        rules = sorted(set(chosen["rule"]))
        row[name] = {"score": score(case, x), "rule": "+".join(rules), "before": None}
        if fires:
            with model_check_off():
                row[name]["before"] = score(case, reconstruct(case, {"name": name})[0])
    if not all(beats(row[m]["score"], zero_filled) for m in METHODS):
        row["best"] = {m: best_of_grid(case, m) for m in METHODS}
    return row


def loses_at_most(after: dict[str, float], before: dict[str, float], db: float = 0.2) -> bool:
    """after is at most `db` dB below before (PSNR; the hold-out error at most 10^(db/20) times larger)."""
    if "psnr" in after:
        return after["psnr"] >= before["psnr"] - db
    return after["holdout"] <= before["holdout"] * 10 ** (db / 20)


def table(rows: list[dict]) -> list[tuple[str, bool]]:
    """Print the markdown table of the conditions; return the checks: every default beats
    zero-filled; with cut maps on a real scan too; nothing that beat it before the model-error
    check loses more than 0.2 dB; the check fires on a real scan with cut maps and stays silent
    on the sample."""
    print(
        "\n| scan | condition | sigma_res / sigma | model error (ratio / fraction) | zero_filled | cg_sense | cs_wavelet "
        "| cs_tv | rule (cg / wav / tv) | before the check (cg / wav / tv) | best of grid (cg / wav / tv) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    checks = []
    for row in rows:
        case, zf = row["case"], row["zero_filled"]
        cells = " | ".join(cell(row[m]["score"], zf) for m in METHODS)
        rules = " / ".join(row[m]["rule"] for m in METHODS)
        before = " / ".join(cell(row[m]["before"], zf) for m in METHODS) if row["fires"] else "same"
        best = " / ".join(cell(row["best"][m], zf) for m in METHODS) if row["best"] else ""
        print(
            f"| {case.scan} | {case.condition} | {row['sigma_ratio']} | {row['check']} | {cell(zf)} | {cells} | {rules} "
            f"| {before} | {best} |"
        )
        where = f"{case.scan}, {case.condition}"
        for m in METHODS:
            kind = " (real scan, cut maps)" if cuts_maps(case) else ""
            checks.append((f"{where}: {m} default beats zero_filled{kind}", beats(row[m]["score"], zf)))
            earlier = row[m]["before"]
            if earlier is not None and beats(earlier, zf):
                checks.append(
                    (f"{where}: {m} loses at most 0.2 dB to before the check", loses_at_most(row[m]["score"], earlier))
                )
    fired = [r["case"].condition for r in rows if cuts_maps(r["case"]) and r["fires"]]
    checks.append((f"the model-error check fires on real scans with cut maps ({len(fired)} rows)", bool(fired)))
    for r in rows:
        if r["case"].scan.startswith("sample") and r["case"].condition in ("as simulated", "noiseless", "ESPIRiT maps"):
            checks.append((f"the model-error check is silent on the sample, {r['case'].condition}", not r["fires"]))
    print(
        "\nPSNR / SSIM (mean over the slices) or, brain, the k-space hold-out error (lower is better); bold: beats "
        "zero_filled (PSNR or hold-out error); †: SSIM below zero_filled's; model error: the calibration check's "
        "ratio to the noise / fraction of the calibration energy (ranges over the slices), * where it fires; before "
        "the check: where it fires, the defaults without it (the residual rule alone); best of grid: only where a "
        "default does not beat zero_filled"
    )
    return checks


def holdout_agrees_with_psnr(rows: list[dict]) -> tuple[str, bool]:
    """Spearman rank correlation of PSNR and -hold-out error over every phantom reconstruction."""
    from scipy.stats import spearmanr

    pairs = []
    for row in rows:
        if row["case"].scan != "phantom":
            continue
        pairs.append((row["zero_filled"]["psnr"], -row["zero_filled"]["holdout"]))
        for m in METHODS:
            pairs += [(row[m][k]["psnr"], -row[m][k]["holdout"]) for k in ("score", "before") if row[m][k] is not None]
    rho = float(spearmanr(*zip(*pairs)).statistic)
    print(
        f"phantom: rank correlation of PSNR and the k-space hold-out error over {len(pairs)} reconstructions: {rho:.2f}"
    )
    return (f"hold-out error ranks the phantom's reconstructions as PSNR does (Spearman {rho:.2f} >= 0.8)", rho >= 0.8)


def check_cost(case: Case, repeats: int = 3) -> None:
    """Seconds of the model-error check and of cg_sense's default reconstruction on the same
    slices, in the same run (the check runs inside lam=auto and once more in reconstruct; the
    anchor adds no solve)."""
    import time

    args = [torch.from_numpy(a) for a in (case.y, case.maps, case.mask, case.sigma)]

    def best(run: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return min(times)

    check = best(lambda: model_error.model_error(*args))
    cg = best(lambda: reconstruct(case, {"name": "cg_sense"}))
    print(
        f"model-error check on {case.scan}, {case.condition} ({len(case.y)} slices): {1e3 * check / len(case.y):.1f} ms "
        f"per slice, {100 * check / cg:.1f} % of cg_sense's default reconstruction of the same slices"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rules", action="store_true", help="also compare the candidate fallback rules")
    parser.add_argument("--scans", default="phantom,brain,sample")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    all_cases = cases(tuple(args.scans.split(",")))
    rows = [evaluate(c) for c in all_cases]
    checks = table(rows)
    if "phantom" in args.scans:
        checks.append(holdout_agrees_with_psnr(rows))
    check_cost(all_cases[0])
    if args.rules:
        from bench_auto_rules import compare_rules

        compare_rules(all_cases + rule_study_cases())
    print(f"\n{sum(ok for _, ok in checks)} of {len(checks)} hold")


if __name__ == "__main__":
    main()
