#!/usr/bin/env python
"""Trials an Optuna (TPE) sweep needs to come within 0.1 dB of a dense grid's best, against a grid.

On the val split of a processed file (default: the simulated sample at 4bit_quarter, 2 val
slices), for cs_wavelet (lam) and flow_combined (lam, beta; needs a trained flow checkpoint):
  1. a dense log-spaced grid (33 values of lam; 9 x 9 for lam x beta) with Hydra's basic
     sweeper gives the reference best mean PSNR;
  2. `hydra/sweeper=optuna` (TPE, its defaults) with several seeds: the number of trials until
     the best so far is within `--tol` dB of the dense grid's best;
  3. grid search: the smallest log-spaced grid (nested in the dense one: 2, 3, 5, 9, 17, 33
     values per parameter) whose best is within `--tol` dB; its number of trials.
Every run is a `mrirecon reconstruct` command (printed); results are read from the run dirs.

Usage: python scripts/bench_tuning.py [--cases cs_wavelet,flow_combined] [--flow-checkpoint CKPT]
       [--seeds 1,2,3,4,5] [--trials 30] [--data 4bit_quarter] [--out outputs/bench_tuning]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
CASES = {  # searched parameters: (low, high) on a log scale, dense grid values per parameter
    "cs_wavelet": ({"method.lam": (1e-4, 1e-1)}, 33),
    "flow_combined": ({"method.lam": (1e-2, 3.0), "method.beta": (1e-3, 1.0)}, 9),
}


def mrirecon(args: list[str]) -> None:
    print("$ mrirecon " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "mrirecon", *args], check=True, stdout=subprocess.DEVNULL)


def trials(sweep: Path, params: list[str]) -> list[tuple[int, tuple[float, ...], float]]:
    """(job number, parameter values, mean PSNR) of every run under a sweep dir, in job order."""
    out = []
    for run in sweep.iterdir():
        if not (run / "summary.json").is_file():
            continue
        summary = json.loads((run / "summary.json").read_text())
        values = tuple(float(summary["method_config"][p.split(".", 1)[1]]) for p in params)
        out.append((int(run.name), values, float(summary["mean"]["psnr"])))
    return sorted(out)


def dense_grid(case: str, common: list[str], out: Path) -> dict[tuple[float, ...], float]:
    space, points = CASES[case]
    axes = {p: np.geomspace(lo, hi, points) for p, (lo, hi) in space.items()}
    sweep = out / case / "grid"
    if not sweep.is_dir():
        mrirecon(
            [
                "reconstruct",
                "-m",
                *common,
                *(f"{p}={','.join(f'{v:.6g}' for v in vs)}" for p, vs in axes.items()),
                f"hydra.sweep.dir={sweep}",
            ]
        )
    found = {values: psnr for _, values, psnr in trials(sweep, list(space))}
    return {tuple(float(f"{v:.6g}") for v in key): psnr for key, psnr in found.items()}


def grid_trials(case: str, grid: dict[tuple[float, ...], float], target: float) -> tuple[int, float]:
    """Trials of the smallest nested log-spaced grid reaching `target`, and that grid's best."""
    space, points = CASES[case]
    axes = [sorted({k[j] for k in grid}) for j in range(len(space))]
    for step in [s for s in range(points - 1, 0, -1) if (points - 1) % s == 0]:
        sub = [a[::step] for a in axes]
        best = max(grid[key] for key in itertools.product(*sub))
        if best >= target:
            return int(np.prod([len(a) for a in sub])), best
    return len(grid), max(grid.values())


def tpe_trials(case: str, seed: int, n: int, common: list[str], out: Path, target: float) -> tuple[int | None, float]:
    """Trials TPE needs to reach `target` (None: not within n), and its best after n trials."""
    space, _ = CASES[case]
    sweep = out / case / f"tpe_seed{seed}"
    if not (sweep / "optimization_results.yaml").is_file():
        intervals = [f"{p}=tag(log, interval({lo}, {hi}))" for p, (lo, hi) in space.items()]
        mrirecon(
            [
                "reconstruct",
                "-m",
                "hydra/sweeper=optuna",
                f"hydra.sweeper.sampler.seed={seed}",
                f"hydra.sweeper.n_trials={n}",
                *common,
                *intervals,
                f"hydra.sweep.dir={sweep}",
            ]
        )
    psnrs = [psnr for _, _, psnr in trials(sweep, list(space))]
    hit = next((k + 1 for k, best in enumerate(np.maximum.accumulate(psnrs)) if best >= target), None)
    return hit, max(psnrs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="cs_wavelet,flow_combined")
    parser.add_argument("--flow-checkpoint", default=None, help="a flow prior's best.pt (needed by flow_combined)")
    parser.add_argument("--seeds", default="1,2,3,4,5")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--tol", type=float, default=0.1, help="dB below the dense grid's best")
    parser.add_argument("--data", default="4bit_quarter")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="outputs/bench_tuning")
    parser.add_argument("--dense", type=int, default=None, help="dense grid values per parameter (2^k + 1)")
    parser.add_argument("--overrides", default="", help="extra reconstruct overrides, e.g. method.iterations=60")
    args = parser.parse_args()
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.dense:
        for case in CASES:
            CASES[case] = (CASES[case][0], args.dense)
    if not Path(f"outputs/data/{args.data}.h5").is_file():
        mrirecon(["preprocess", f"data={args.data}"])
    rows = []
    for case in args.cases.split(","):
        common = [
            f"method={case}",
            f"data={args.data}",
            "data.split=val",
            "figures=0",
            f"hardware.threads={args.threads}",
        ]
        if case.startswith("flow"):
            if not args.flow_checkpoint:
                sys.exit("error: --flow-checkpoint: flow_combined needs a trained flow (mrirecon train model=flow)")
            common.append(f"checkpoint={args.flow_checkpoint}")
        grid = dense_grid(case, common, out)
        best = max(grid.values())
        target = best - args.tol
        n_grid, grid_best = grid_trials(case, grid, target)
        tpe = [tpe_trials(case, s, args.trials, common, out, target) for s in seeds]
        rows.append((case, len(grid), best, n_grid, grid_best, tpe))
    extra = f", {args.overrides}" if args.overrides else ""
    print(f"\nval split of {args.data}{extra}; target: within {args.tol} dB of the dense grid's best mean PSNR")
    print(
        "| method (parameters) | dense grid: trials, best PSNR | grid search: trials to target | TPE: trials to target (median, per seed) | TPE best after "
        f"{args.trials} (median) |"
    )
    print("|---|---|---|---|---|")
    for case, n_dense, best, n_grid, grid_best, tpe in rows:
        hits = [h for h, _ in tpe]
        shown = [str(h) if h is not None else f">{args.trials}" for h in hits]
        median = statistics.median([h if h is not None else args.trials + 1 for h in hits])
        median_text = f"{median:g}" if median <= args.trials else f">{args.trials}"
        names = ", ".join(p.split(".", 1)[1] for p in CASES[case][0])
        print(
            f"| {case} ({names}) | {n_dense}, {best:.2f} dB | {n_grid} ({grid_best:.2f} dB) | {median_text} ({', '.join(shown)}) | "
            f"{statistics.median(b for _, b in tpe):.2f} dB |"
        )


if __name__ == "__main__":
    main()
