"""`mrirecon evaluate runs=[...]`: tables and a comparison figure across reconstruct runs."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from mrirecon import metrics
from mrirecon.errors import UserError
from mrirecon.figures import comparison_figure
from mrirecon.io import write_text
from mrirecon.tasks.common import run_dir

log = logging.getLogger(__name__)
STATS = (*metrics.NAMES, "seconds")


def find_runs(paths: list[str]) -> list[Path]:
    """Reconstruct run dirs under each path (a run dir itself or a multirun dir), sorted."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if not path.is_dir():
            raise UserError(f"runs: {path} is not a folder")
        here = sorted({p.parent for p in path.rglob("summary.json") if (p.parent / "metrics.csv").is_file()})
        if not here:
            raise UserError(f"runs: {path} holds no reconstruct run (no summary.json with metrics.csv)")
        found += [p for p in here if p not in found]
    return found


def _load_run(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads((path / "summary.json").read_text())
        with open(path / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        per_slice = {k: np.array([float(r[k]) for r in rows]) for k in STATS}
        slices = [int(r["slice"]) for r in rows]
        return {"dir": path, "summary": summary, "per_slice": per_slice, "slices": slices,
                "method": summary["method"], "variant": summary["variant"], "params": summary.get("method_config", {}),
                "data": str(summary.get("data_path", "")), "split": str(summary.get("split", ""))}
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"runs: {path} has an unreadable summary.json or metrics.csv ({exc})") from None


def _swept_params(runs: list[dict[str, Any]]) -> list[str]:
    """Method parameters that take more than one value among runs of the same method."""
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run in runs:
        for key, value in run["params"].items():
            if key != "name":
                values[(run["method"], key)].add(json.dumps(value))
    return sorted({key for (_, key), vals in values.items() if len(vals) > 1})


def summarize(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per (data file, split, variant, method, swept params): mean/std over all slices of
    its runs. Runs on different files or splits are never pooled."""
    params = _swept_params(runs)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        key = (run["data"], run["split"], run["variant"], run["method"], *(json.dumps(run["params"].get(p)) for p in params))
        groups[key].append(run)
    table = []
    for key, members in groups.items():
        row: dict[str, Any] = {"data": key[0], "split": key[1], "variant": key[2], "method": key[3]}
        row.update({p: members[0]["params"].get(p, "") for p in params})
        row["n"] = sum(len(m["slices"]) for m in members)
        for stat in STATS:
            pooled = np.concatenate([m["per_slice"][stat] for m in members])
            finite = pooled[np.isfinite(pooled)]  # NaN for data without a reference image
            row[f"{stat}_mean"] = float(finite.mean()) if finite.size else float("nan")
            row[f"{stat}_std"] = float(finite.std()) if finite.size else float("nan")
        row["runs"] = members
        table.append(row)
    table.sort(key=lambda r: (r["data"], r["split"], r["variant"], -np.nan_to_num(r["psnr_mean"], nan=-np.inf)))
    best: dict[tuple, float] = {}
    for row in table:
        group = (row["data"], row["split"], row["variant"])
        best.setdefault(group, row["psnr_mean"])
        row["best"] = "*" if np.isfinite(row["psnr_mean"]) and row["psnr_mean"] == best[group] else ""
    return table, params


def _columns(params: list[str]) -> list[str]:
    return ["data", "split", "variant", "method", *params, "n", *(f"{s}_{a}" for s in STATS for a in ("mean", "std")),
            "best"]


def _fmt(key: str, value: Any) -> str:
    if isinstance(value, float) and key.endswith("_std") and abs(value) < 1e-12:
        value = 0.0  # rounding noise of equal values (e.g. seconds shared by a batch)
    if isinstance(value, float):
        if key.startswith("psnr"):
            return f"{value:.2f}"
        if key.startswith(metrics.NAMES):
            return f"{value:.4f}"
        return f"{value:.4g}"  # seconds and swept parameters (lam 3e-05, not 0.0000)
    return "" if value is None else str(value)


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Write results.csv, results.md and comparison.png into the run dir; print the table."""
    if not cfg.runs:
        raise UserError("runs: give at least one reconstruct run or multirun folder, e.g. runs=[outputs/multirun/...]")
    runs = [_load_run(p) for p in find_runs([str(r) for r in cfg.runs])]
    table, params = summarize(runs)
    cols = _columns(params)
    out = run_dir()

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for row in table:
        writer.writerow([f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in cols])
    write_text(out / "results.csv", buf.getvalue())

    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(_fmt(c, row[c]) for c in cols) + " |" for row in table]
    md += ["", f"Metrics: {metrics.CONVENTION}. mean and std over slices; n = number of slices; "
               "* = best mean PSNR per data file, split and variant.", ""]
    write_text(out / "results.md", "\n".join(md))

    _comparison(table, params, int(cfg.figure_slices), out / "comparison.png")

    _print_table(table, params, len(runs))
    log.info("results: %s, %s, %s", out / "results.csv", out / "results.md", out / "comparison.png")
    return table


def _print_table(table: list[dict[str, Any]], params: list[str], num_runs: int) -> None:
    """The table on the terminal, one 'mean ± std' cell per metric."""
    rich_table = Table(title=f"mrirecon evaluate: {num_runs} runs")
    heads = {"nrmse": "NRMSE", "psnr": "PSNR (dB)", "ssim": "SSIM", "seconds": "s/slice"}
    for c in ["data", "split", "variant", "method", *params, "n", *heads.values(), "best"]:
        rich_table.add_column(c, justify="left" if c in ("data", "split", "variant", "method") else "right")
    for row in table:
        cells = [Path(row["data"]).name, row["split"], *(_fmt(c, row[c]) for c in ("variant", "method", *params, "n"))]
        cells += [f"{_fmt(s + '_mean', row[s + '_mean'])} ± {_fmt(s + '_std', row[s + '_std'])}" for s in heads]
        rich_table.add_row(*cells, row["best"])
    console = Console()
    if not console.is_terminal:  # a log file or pipe: do not squeeze the table to 80 columns
        console = Console(width=200)
    console.print(rich_table)


def _label(row: dict[str, Any], params: list[str], psnr: float) -> str:
    """Column title: the method, its swept parameters and this slice's PSNR."""
    extra = ", ".join(f"{p}={row[p]}" for p in params if row[p] != "")
    return f"{row['method']}" + (f" ({extra})" if extra else "") + f"\nPSNR {psnr:.2f}"


def _comparison(table: list[dict[str, Any]], params: list[str], per_variant: int, path: Path) -> None:
    """Rows: a few slices of each variant; columns: reference, then each table row's recon."""
    by_variant: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        by_variant[(row["data"], row["split"], row["variant"])].append(row)
    grid = []
    for (_, _, variant), rows in by_variant.items():
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
