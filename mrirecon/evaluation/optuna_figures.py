"""Figures of an Optuna sweep for `evaluate`: optimisation history and parameter importance.

An Optuna sweep dir (`hydra/sweeper=optuna`) holds one reconstruct run per trial (subfolders
named by trial number) and, once the sweep has finished, `optimization_results.yaml` (best
params and value). The history shows each trial's objective and the best so far; the
importance of each searched parameter is its first-order Sobol index (the share of the
objective's variance over the searched box explained by that parameter alone) under a
quadratic response surface fitted to the trials, shown when there are two or more parameters
and enough trials to fit it. Reads only what the runs wrote; needs no Optuna.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import yaml

from mrirecon.io.files import atomic_path

RESULTS = "optimization_results.yaml"
MAXIMISED = {"psnr": True, "ssim": True, "nrmse": False}


def is_optuna_sweep(path: Path) -> bool:
    """True for a folder written by hydra/sweeper=optuna (finished, or with a trial's config)."""
    if (path / RESULTS).is_file():
        return True
    configs = sorted(path.glob("*/.hydra/hydra.yaml"))
    return bool(configs) and "hydra_optuna_sweeper" in configs[0].read_text()


def _trial(run: Path) -> dict[str, Any] | None:
    """One trial: its number, overrides (key -> value string) and summary, or None if unfinished."""
    try:
        summary = json.loads((run / "summary.json").read_text())
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
        number = int(run.name)
    except (OSError, ValueError):
        return None
    pairs = dict(str(o).lstrip("+~").split("=", 1) for o in overrides if "=" in str(o))
    return {"number": number, "overrides": pairs, "summary": summary}


def load_trials(path: Path) -> tuple[list[dict[str, Any]], list[str], str]:
    """Trials in order, the searched parameters and the objective's metric name."""
    trials = sorted(filter(None, (_trial(p) for p in path.iterdir() if p.is_dir())), key=lambda t: t["number"])
    results = yaml.safe_load((path / RESULTS).read_text()) if (path / RESULTS).is_file() else {}
    params = list((results or {}).get("best_params") or {})
    if not params and trials:  # unfinished sweep: the keys whose values differ between trials
        keys = trials[0]["overrides"].keys()
        params = [k for k in keys if len({t["overrides"].get(k) for t in trials}) > 1]
    objective = str((trials[0]["summary"].get("objective") or {}).get("metric", "psnr")) if trials else "psnr"
    return trials, params, objective


def _values(trials: list[dict[str, Any]], params: list[str], objective: str) -> tuple[np.ndarray, np.ndarray]:
    """(trials, params) parameter values and (trials,) objective values (NaN where missing)."""
    x = np.array([[float(t["overrides"].get(p, "nan")) for p in params] for t in trials], dtype=float)
    y = np.array([float(t["summary"].get("mean", {}).get(objective, np.nan)) for t in trials])
    return x.reshape(len(trials), len(params)), y


def _unit(x: np.ndarray) -> np.ndarray:
    """Each column mapped to [0, 1], on a log scale when positive and spanning a decade or more."""
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        col = x[:, j]
        if (col > 0).all() and col.max() / col.min() >= 10:
            col = np.log10(col)
        span = col.max() - col.min()
        out[:, j] = (col - col.min()) / span if span > 0 else 0.5
    return out


def _features(u: np.ndarray) -> np.ndarray:
    """Quadratic features of points (n, d) in [0, 1]^d: 1, u_i, u_i^2, u_i u_j."""
    cols = [np.ones(len(u)), *u.T, *(u**2).T]
    cols += [u[:, i] * u[:, j] for i, j in itertools.combinations(range(u.shape[1]), 2)]
    return np.stack(cols, axis=1)


def importances(x: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """First-order Sobol index of each parameter (columns of x (n, d)) for the objective y (n,)
    under a quadratic surface fitted by least squares over the searched box (None when there
    are too few trials to fit it). They sum to 1 minus the share of interactions."""
    keep = np.isfinite(y) & np.isfinite(x).all(axis=1)
    u, y = _unit(x[keep]), y[keep]
    d = u.shape[1]
    if d < 2 or len(y) < _features(u[:1]).shape[1] + 1:
        return None
    coef = np.linalg.lstsq(_features(u), y, rcond=None)[0]
    points = max(3, round(4096 ** (1 / d)))
    axes = np.meshgrid(*[np.linspace(0, 1, points)] * d, indexing="ij")
    surface = (_features(np.stack([a.ravel() for a in axes], axis=1)) @ coef).reshape(axes[0].shape)
    total = surface.var()
    if total <= 0:
        return np.zeros(d)
    main = [surface.mean(axis=tuple(k for k in range(d) if k != j)).var() for j in range(d)]
    return np.array(main) / total


def history_figure(path: Path, out: Path) -> Path | None:
    """optuna_<sweep>.png: objective per trial and best so far, and (two or more parameters)
    the trials in the first two parameters and the parameters' importance. None if no trials."""
    trials, params, objective = load_trials(path)
    if not trials:
        return None
    x, y = _values(trials, params, objective)
    maximise = MAXIMISED.get(objective, True)
    best = (np.fmax if maximise else np.fmin).accumulate(np.where(np.isfinite(y), y, -np.inf if maximise else np.inf))
    share = importances(x, y) if params else None
    panels = 1 + (len(params) >= 2) + (share is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 3.8), squeeze=False, layout="constrained")
    ax = axes[0, 0]
    numbers = [t["number"] for t in trials]
    ax.plot(numbers, y, "o", color="tab:blue", label="trial")
    ax.step(numbers, best, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"mean {objective} ({'maximised' if maximise else 'minimised'})")
    ax.set_title("optimisation history")
    ax.legend(fontsize=8)
    if len(params) >= 2:
        ax = axes[0, 1]
        dots = ax.scatter(x[:, 0], x[:, 1], c=y, cmap="viridis")
        k = int(np.nanargmax(y) if maximise else np.nanargmin(y))
        ax.plot(x[k, 0], x[k, 1], "r*", markersize=14, label="best")
        for j, setter in ((0, ax.set_xscale), (1, ax.set_yscale)):
            col = x[:, j]
            if (col > 0).all() and col.max() / col.min() >= 10:
                setter("log")
        ax.set_xlabel(params[0]), ax.set_ylabel(params[1]), ax.set_title("trials")
        ax.legend(fontsize=8)
        fig.colorbar(dots, ax=ax, label=objective)
    if share is not None:
        ax = axes[0, -1]
        ax.barh(params, share, color="tab:green")
        ax.set_xlim(0, 1)
        ax.set_xlabel("first-order Sobol index (quadratic fit)")
        ax.set_title(f"parameter importance (interactions {max(0.0, 1 - share.sum()):.2f})")
    method = trials[0]["summary"].get("method", "")
    split = trials[0]["summary"].get("split", "")
    fig.suptitle(f"Optuna sweep {path.name}: {method}, {len(trials)} trials on the {split} split")
    target = out / f"optuna_{path.name}.png"
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return target


def optuna_figures(paths: list[Path], out: Path) -> list[tuple[str, str, Path]]:
    """evaluate's hook: one figure per Optuna sweep dir among `paths` (section, caption, file)."""
    written = []
    for path in paths:
        if path.is_dir() and is_optuna_sweep(path):
            figure = history_figure(path, out)
            if figure is not None:
                written.append(
                    ("Sweeps", f"Optuna sweep {path}: optimisation history and parameter importance", figure)
                )
    return written
