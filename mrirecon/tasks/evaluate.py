"""`mrirecon evaluate runs=[...]`: tables, paired comparisons, sweep plots, training curves and a
report page from the per-slice rows of reconstruct runs (and the per-epoch rows of train runs)."""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from mrirecon import report, results
from mrirecon.errors import UserError
from mrirecon.figures import comparison_figure, heatmap_figure, sweep_figure, training_figure
from mrirecon.io import write_text
from mrirecon.metrics import NAMES as METRICS
from mrirecon.optuna_figures import optuna_figures
from mrirecon.tasks.common import run_dir

log = logging.getLogger(__name__)
STATS = (*METRICS, "seconds")
OUTPUTS = (".csv", ".md", ".png", ".html")


def find_runs(paths: list[str]) -> tuple[list[Path], list[Path]]:
    """Reconstruct run dirs and train run dirs under each path (a run dir itself or a multirun
    dir), sorted."""
    found: list[Path] = []
    trained: list[Path] = []
    for text in paths:
        path = Path(text)
        if not path.is_dir():
            raise UserError(f"runs: {path} is not a folder")
        here = sorted({p.parent for p in path.rglob("summary.json") if (p.parent / "metrics.csv").is_file()})
        train = sorted(
            {
                p.parent
                for p in path.rglob("metrics.csv")
                if not (p.parent / "summary.json").exists() and _is_training_log(p)
            }
        )
        if not here and not train:
            raise UserError(
                f"runs: {path} holds no reconstruct run (summary.json with metrics.csv) and no train "
                "run (metrics.csv of epochs)"
            )
        found += [p for p in here if p not in found]
        trained += [p for p in train if p not in trained]
    return found, trained


def _is_training_log(path: Path) -> bool:
    try:
        with open(path, newline="") as fh:
            return fh.readline().startswith("epoch,")
    except OSError:
        return False


def _load_run(path: Path) -> dict[str, Any]:
    """A reconstruct run: its summary and per-slice rows (subject and effective acceleration
    R where recorded)."""
    try:
        summary = json.loads((path / "summary.json").read_text())
        with open(path / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        per_slice = {k: np.array([float(r[k]) for r in rows]) for k in STATS}
        accel = summary.get("acceleration", {}).get("per_slice", [])
        per_slice["R"] = np.array(accel, dtype=float) if len(accel) == len(rows) else np.full(len(rows), np.nan)
        subjects = [r.get("subject") or None for r in rows]
        return {
            "dir": path,
            "summary": summary,
            "per_slice": per_slice,
            "slices": [int(r["slice"]) for r in rows],
            "subjects": None if None in subjects else [int(s) for s in subjects],
            "method": summary["method"],
            "variant": summary["variant"],
            "params": summary.get("method_config", {}),
            "data": str(summary.get("data_path", "")),
            "split": str(summary.get("split", "")),
        }
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"runs: {path} has an unreadable summary.json or metrics.csv ({exc})") from None


def _load_training(path: Path) -> tuple[str, np.ndarray, dict[str, np.ndarray]]:
    """A train run's label, epochs and per-epoch columns (train_loss and val_*) of metrics.csv."""
    try:
        with open(path / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        epochs = np.array([int(r["epoch"]) for r in rows])
        names = [k for k in (rows[0] if rows else {}) if k == "train_loss" or k.startswith("val_")]
        columns = {k: np.array([float(r[k]) if r[k] != "" else np.nan for r in rows]) for k in names}
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"runs: {path} has an unreadable metrics.csv ({exc})") from None
    what = path.name
    config, described = path / ".hydra" / "config.yaml", path / "training.json"
    if described.is_file():  # written by train: its family's own description
        try:
            what = f"{json.loads(described.read_text())['trains']} ({path.parent.name}/{path.name})"
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"runs: {described} is unreadable ({exc})") from None
    elif config.is_file():  # train runs from before training.json
        cfg = OmegaConf.load(config)
        model = str(OmegaConf.select(cfg, "model.name", default=""))
        method = str(OmegaConf.select(cfg, "method.name", default=""))
        from mrirecon.trainables import family_for  # torch and the nets: only for these old runs

        family = family_for(method, model)
        what = f"{family.kind if family else 'unknown'} family: method={method} model={model}"
        what += f" ({path.parent.name}/{path.name})"
    return what, epochs, columns


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Write results.csv, comparisons.csv, results.md, comparison.png, sweep plots, training
    curves and report.html into the run dir; print the table."""
    if not cfg.runs:
        raise UserError("runs: give at least one reconstruct run or multirun folder, e.g. runs=[outputs/multirun/...]")
    recon_dirs, train_dirs = find_runs([str(r) for r in cfg.runs])
    runs = [_load_run(p) for p in recon_dirs]
    curves = [_load_training(p) for p in train_dirs]
    baseline = cfg.get("baseline")
    methods = sorted({r["method"] for r in runs})
    if baseline is not None and str(baseline) not in methods:
        raise UserError(
            f"baseline: '{baseline}' is not a method of these runs (methods: {', '.join(methods) or 'none'})"
        )
    out = run_dir()
    table, params = results.summarize(runs)
    comps = results.comparisons(table, params, None if baseline is None else str(baseline))
    figures: list[tuple[str, str, Path]] = []
    if table:
        write_text(out / "results.csv", report.csv_text(report.results_columns(params), table))
        write_text(out / "comparisons.csv", report.csv_text(*report.comparison_rows(comps, params)))
        write_text(out / "results.md", report.markdown(table, params, comps))
        figures += _sweep_plots(table, params, out)
        figures += optuna_figures([Path(str(r)) for r in cfg.runs], out)
        if _comparison(table, params, int(cfg.figure_slices), out / "comparison.png"):
            figures.append(
                (
                    "Per-slice comparison",
                    "reference, each method (PSNR of the slice) and |error| x5 under it, on the same grey scale",
                    out / "comparison.png",
                )
            )
        _print_table(table, params, len(runs))
    if curves:
        training_figure(curves, out / "training_curves.png")
        names = "; ".join(label for label, _, _ in curves)
        figures.append(
            (
                "Training curves",
                f"per epoch, from the metrics.csv of {names} (TensorBoard is the live view)",
                out / "training_curves.png",
            )
        )
    title = f"mrirecon evaluate: {len(runs)} reconstruct runs" + (f", {len(curves)} train runs" if curves else "")
    write_text(out / "report.html", report.html_report(title, table, params, comps, figures))
    log.info("results in %s: %s", out, ", ".join(sorted(p.name for p in out.iterdir() if p.suffix in OUTPUTS)))
    return table


def _slug(*parts: Any) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9_.=-]+", "-", str(p)).strip("-") for p in parts if str(p))


def _sweep_plots(table: list[dict[str, Any]], params: list[str], out: Path) -> list[tuple[str, str, Path]]:
    """sweep_<param>.png (a line per method/variant) for one-parameter sweeps and
    sweep_<method>_<variant>_<p1>_x_<p2>.png (heat maps) for two-parameter sweeps."""
    written: list[tuple[str, str, Path]] = []
    splits = len({r["split"] for r in table}) > 1

    def where(row: dict[str, Any]) -> str:
        files = {r["data"] for r in table if r["variant"] == row["variant"]}
        extra = [Path(row["data"]).name if len(files) > 1 else "", row["split"] if splits else ""]
        return row["variant"] + "".join(f", {e}" for e in extra if e)

    lines, grids = results.sweeps(table, params)
    for param, series in lines.items():
        data = [
            (
                f"{rows[0]['method']} on {where(rows[0])}",
                [r[param] for r in rows],
                {m: tuple(np.array([r[f"{m}_{k}"] for r in rows]) for k in ("mean", "low", "high")) for m in METRICS},
            )
            for rows in series
        ]
        path = out / f"sweep_{_slug(param)}.png"
        sweep_figure(param, data, path)
        written.append(("Sweeps", f"metrics vs {param}: mean over slices with a 95 % bootstrap band", path))
    for p1, p2, rows in grids:
        v1 = sorted({r[p1] for r in rows}, key=results.sort_key)
        v2 = sorted({r[p2] for r in rows}, key=results.sort_key)
        maps = {}
        for m in METRICS:
            grid = np.full((len(v1), len(v2)), np.nan)
            for r in rows:
                grid[v1.index(r[p1]), v2.index(r[p2])] = r[f"{m}_mean"]
            best = None
            if np.isfinite(grid).any():
                flat = np.nanargmax(grid) if results.HIGHER_IS_BETTER[m] else np.nanargmin(grid)
                best = tuple(int(i) for i in np.unravel_index(flat, grid.shape))
            maps[m] = (grid, best)
        row = rows[0]
        path = out / f"sweep_{_slug(row['method'], where(row), p1, 'x', p2)}.png"
        heatmap_figure(p1, p2, v1, v2, maps, f"{row['method']} on {where(row)}: mean over slices", path)
        written.append(("Sweeps", f"{row['method']} on {where(row)}: {p1} x {p2}, mean over slices", path))
    return written


def _print_table(table: list[dict[str, Any]], params: list[str], num_runs: int) -> None:
    """The table on the terminal, one 'mean ± std' cell per metric."""
    rich_table = Table(title=f"mrirecon evaluate: {num_runs} runs")
    heads = {"nrmse": "NRMSE", "psnr": "PSNR (dB)", "ssim": "SSIM"}
    for c in [
        "data",
        "split",
        "variant",
        "method",
        *params,
        "slices",
        "subjects",
        "R",
        *heads.values(),
        "s/slice",
        "best",
    ]:
        rich_table.add_column(c, justify="left" if c in ("data", "split", "variant", "method") else "right")
    for row in table:
        cells = [
            Path(row["data"]).name,
            row["split"],
            *(report.fmt(c, row[c]) for c in ("variant", "method", *params, "slices", "subjects", "R")),
        ]
        cells += [
            " ± ".join(filter(None, (report.fmt(f"{s}_{a}", row[f"{s}_{a}"]) for a in ("mean", "std")))) for s in heads
        ]  # a single slice has no std
        rich_table.add_row(*cells, report.fmt("seconds_mean", row["seconds_mean"]), row["best"])
    console = Console()
    if not console.is_terminal:  # a log file or pipe: do not squeeze the table to 80 columns
        console = Console(width=200)
    console.print(rich_table)


def _label(row: dict[str, Any], params: list[str], psnr: float) -> str:
    """Column title: the method, its swept parameters and this slice's PSNR."""
    return results.label(row, params) + f"\nPSNR {psnr:.2f}"


def _comparison(table: list[dict[str, Any]], params: list[str], per_variant: int, path: Path) -> bool:
    """Rows: a few slices of each variant; columns: reference, then each table row's recon, with
    error maps under them. False when there is nothing to show."""
    by_variant: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        by_variant[(row["data"], row["split"], row["variant"])].append(row)
    grid = []
    for (_, _, variant), rows in by_variant.items():
        rows = [r for r in rows if (r["runs"][0]["dir"] / "recon.h5").is_file()]
        if not rows:
            continue
        common = set.intersection(*(set(r["runs"][0]["slices"]) for r in rows))
        for s in sorted(common)[:per_variant]:
            reference, cols = None, []
            for r in rows:
                run = r["runs"][0]
                psnr = float(run["per_slice"]["psnr"][run["slices"].index(s)])
                with h5py.File(run["dir"] / "recon.h5", "r") as h5:
                    k = int(np.flatnonzero(h5["slices"][()] == s)[0])
                    reference = h5["imgs"][k]
                    cols.append((_label(r, params, psnr), h5["recon"][k]))
            grid.append((f"{variant} slice {s}", reference, cols))
    if grid:
        comparison_figure(grid, path)
    return bool(grid)
