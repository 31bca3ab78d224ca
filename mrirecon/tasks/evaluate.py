"""`mrirecon evaluate runs=[...]`: tables, paired comparisons, a summary plot, comparison figures,
sweep plots, training curves and a report page from the per-slice rows of reconstruct runs (and
the per-epoch rows of train runs). Everything is read and checked first; the outputs are then
written together (one staged set, renamed into the run dir), never partially."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.errors import UserError
from mrirecon.evaluation import report, report_html, results
from mrirecon.evaluation.figures import comparison_figure, heatmap_figure, summary_figure, sweep_figure, training_figure
from mrirecon.evaluation.metrics import NAMES as METRICS
from mrirecon.evaluation.optuna_figures import optuna_figures
from mrirecon.evaluation.runs import CROPS, REFERENCES, Damaged, Run, Skipped, discover, load, load_training
from mrirecon.io.files import staged_outputs, write_text
from mrirecon.io.ownership import Outputs
from mrirecon.tasks.common import run_dir
from mrirecon.tasks.evaluate_uncertainty import uncertainty_figures

log = logging.getLogger(__name__)
# the names evaluate always writes (and comparison_*, sweep_*, optuna_* figures named by the runs)
FIXED = (
    "results.csv",
    "comparisons.csv",
    "results.md",
    "report.html",
    "summary.png",
    "training_curves.png",
    "uncertainty.png",
)
LEVELS = ("slice", "volume")
MAX_FIGURE_COLUMNS = 8  # reconstructions per comparison figure (the best rows by mean PSNR)


@dataclass(frozen=True)
class Options:
    """evaluate's keys, checked before anything is read."""

    paths: list[str]
    level: str
    pool: tuple[str, ...]
    strict: bool
    figure_slices: int
    baseline: str | None
    reference: str = "auto"
    crop: str | None = None


def options(cfg: DictConfig) -> Options:
    """The checked keys: runs (one path or a list), level, pool, strict, figure_slices, baseline,
    reference, crop."""
    runs = cfg.get("runs")
    paths = [str(r) for r in (runs if isinstance(runs, (ListConfig, list, tuple)) else [runs] if runs else [])]
    if not paths or any(not p for p in paths):
        raise UserError("runs: give at least one reconstruct run or multirun folder: runs=DIR or runs=[DIR,...]")
    level = str(cfg.get("level", "slice"))
    if level not in LEVELS:
        raise UserError(f"level: '{level}' is not one of {', '.join(LEVELS)}")
    pool_value = cfg.get("pool")
    pool = tuple(
        str(p) for p in (pool_value if isinstance(pool_value, ListConfig) else [pool_value] if pool_value else [])
    )
    for p in pool:
        if p not in results.POOLABLE:
            raise UserError(f"pool: '{p}' cannot be pooled (poolable: {', '.join(results.POOLABLE)}; null: none)")
    strict = cfg.get("strict", False)
    if not isinstance(strict, bool):
        raise UserError(f"strict: {strict!r} is not true or false")
    slices = cfg.get("figure_slices", 2)
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 0:
        raise UserError(f"figure_slices: {slices!r} is not a whole number >= 0 (slices per comparison figure)")
    baseline = cfg.get("baseline")
    reference = str(cfg.get("reference", "auto"))
    if reference not in REFERENCES:
        raise UserError(f"reference: '{reference}' is not one of {', '.join(REFERENCES)}")
    crop = cfg.get("crop")
    if crop is not None and crop not in CROPS:
        raise UserError(f"crop: {crop!r} is not null or one of {', '.join(CROPS)}")
    return Options(paths, level, pool, strict, slices, None if baseline is None else str(baseline), reference, crop)


def read(opts: Options) -> tuple[list[Run], list[tuple[str, np.ndarray, dict[str, np.ndarray]]], list[Skipped]]:
    """The reconstruct runs, train-run curves and skipped runs under the paths (strict: a skipped
    run is an error)."""
    recon_dirs, train_dirs, skipped = discover(opts.paths)
    loaded, curves = [], []
    for path in recon_dirs:
        try:
            loaded.append(load(path, opts.level, opts.reference, opts.crop))
        except Damaged as exc:
            skipped.append(Skipped(path, str(exc)))
    for path in train_dirs:
        try:
            curves.append(load_training(path))
        except Damaged as exc:
            skipped.append(Skipped(path, str(exc)))
    if opts.strict and skipped:
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise UserError(f"runs: {skipped[0].path}: {skipped[0].reason}{more} (strict=true)")
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    return loaded, curves, skipped


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Read every run, then write results.csv, comparisons.csv, results.md, summary.png,
    comparison_*.png, sweep plots, training curves and report.html into the run dir together;
    print the tables."""
    opts = options(cfg)
    outputs = Outputs(run_dir(), "evaluate", replace=bool(cfg.get("overwrite", False)))
    outputs.claim(list(FIXED))  # before the work; the figures' names are claimed when written
    loaded, curves, skipped = read(opts)
    methods = sorted({r.identity["method"] for r in loaded})
    if opts.baseline is not None and opts.baseline not in methods:
        raise UserError(
            f"baseline: '{opts.baseline}' is not a method of these runs (methods: {', '.join(methods) or 'none'})"
        )
    table = results.summarize(loaded, opts.level, opts.pool)
    columns = results.param_columns(loaded)
    results.label_rows(table, columns)
    comps = results.comparisons(table, opts.baseline)
    title = f"mrirecon evaluate: {_plural(len(loaded), 'reconstruct run')}"
    title += f", {_plural(len(curves), 'train run')}" if curves else ""
    doc = report.Report(title, opts.level, table, columns, comps, loaded, skipped, opts.pool)
    for warning in report.warnings(doc):
        log.warning("%s", warning)
    out = run_dir()
    with staged_outputs(out, outputs) as stage:  # replaces only its own files, removes its own stale ones
        if table:
            doc.summary_figure = _summary_plot(doc, stage / "summary.png")
            doc.figures += _comparisons(table, opts.figure_slices, stage)
            doc.figures += uncertainty_figures(table, stage)
            doc.figures += _sweep_plots(table, columns, stage)
            doc.figures += optuna_figures([Path(p) for p in opts.paths], stage)
            write_text(stage / "results.csv", report.results_csv(doc))
            write_text(stage / "comparisons.csv", report.comparisons_csv(doc))
            write_text(stage / "results.md", report.markdown(doc))
        if curves:
            training_figure(curves, stage / "training_curves.png")
            names = "; ".join(label for label, _, _ in curves)
            caption = f"per epoch, from the metrics.csv of {names} (TensorBoard is the live view)"
            doc.figures.append(("Training curves", caption, stage / "training_curves.png"))
        write_text(stage / "report.html", report_html.html_report(doc))
        written = sorted(p.name for p in stage.iterdir())
    _print_tables(doc)
    log.info("results in %s: %s", out, ", ".join(written))
    return table


def _slug(*parts: Any) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9_.=-]+", "-", str(p)).strip("-") for p in parts if str(p))


def _summary_plot(doc: report.Report, path: Path) -> Path:
    """summary.png: each row's mean and interval per metric, grouped by variant and data file."""
    by_group = sorted(report.groups(doc.table), key=lambda g: (g[1][0]["variant"], g[1][0]["data_label"]))
    groups = [
        (
            f"{rows[0]['variant']} · {rows[0]['split']} · {rows[0]['data_label']}",
            [(r["label"], {m: (r[f"{m}_mean"], r[f"{m}_low"], r[f"{m}_high"]) for m in METRICS}) for r in rows],
        )
        for _, rows in by_group
    ]
    summary_figure(groups, path, results.HIGHER_IS_BETTER)
    return path


def _read_slice(path: Path | None, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference, recon) of slice `index` from a recon.h5; a read failure is a UserError."""
    if path is None:
        raise ValueError("path: a run without recon.h5 has no images to show")
    try:
        with open_hdf5(path) as h5:  # checked whole by runs.load
            k = int(np.flatnonzero(h5["slices"][()] == index)[0])
            return h5["imgs"][k], h5["recon"][k]
    except (OSError, KeyError, IndexError) as exc:
        raise UserError(f"runs: {path} is unreadable ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def _wrap(label: str, width: int = 34) -> str:
    """A column title: the label's parts (split at ' · ') wrapped to `width` characters."""
    import textwrap

    return "\n".join(line for part in label.split(" · ") for line in textwrap.wrap(part, width))


def _comparisons(table: list[dict[str, Any]], per_group: int, stage: Path) -> list[tuple[str, str, Path]]:
    """comparison_<variant>_<split>_<data>.png per group: `per_group` slices, each a row of the
    reference and each table row's reconstruction (the best MAX_FIGURE_COLUMNS by mean PSNR), with
    |error| x5 under them."""
    written: list[tuple[str, str, Path]] = []
    for heading, rows in report.groups(table) if per_group > 0 else []:
        shown = [r for r in rows if r["members"][0].recon is not None][:MAX_FIGURE_COLUMNS]
        if not shown:
            continue
        common = set.intersection(*(set(r["members"][0].slices.tolist()) for r in shown))
        first = rows[0]
        grid = []
        for s in sorted(common)[:per_group]:
            reference, cols = _slice_panels(shown, s)
            grid.append((f"{first['data_label']} · {first['variant']} · slice {s}", reference, cols))
        if not grid:
            continue
        path = _unique(stage / f"comparison_{_slug(first['variant'], first['split'], first['data_label'])}.png")
        comparison_figure(grid, path)
        more = f"; the {len(shown)} best of {len(rows)} rows by mean PSNR" if len(shown) < len(rows) else ""
        caption = (
            f"{heading}: reference, each row's reconstruction (its PSNR on the slice; a pooled row shows its first "
            f"run) and |error| x5 under it, on the same grey scale{more}"
        )
        written.append(("Comparison figures", caption, path))
    return written


def _slice_panels(rows: list[dict[str, Any]], index: int) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """Slice `index`: the reference (X, Y) and, per row, (column title, its first run's recon)."""
    reference, cols = np.zeros((0, 0)), []
    for r in rows:
        run = r["members"][0]
        psnr = float(run.per_slice["psnr"][run.slices.tolist().index(index)])
        reference, image = _read_slice(run.recon, index)
        cols.append((f"{_wrap(r['label'])}\nslice PSNR {psnr:.2f}", image))
    return reference, cols


def _unique(path: Path) -> Path:
    k, candidate = 1, path
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.stem}_{k}{path.suffix}")
    return candidate


def _series_name(rows: list[dict[str, Any]], table: list[dict[str, Any]]) -> str:
    """A sweep line's label: method on variant, with the data file, split, checkpoint and seed
    where the table has several."""
    r = rows[0]
    name = f"{r['method']} on {r['variant']}"
    if len({(t["data"], t["data_id"]) for t in table}) > 1:
        name += f", {r['data_label']}"
    if len({t["split"] for t in table}) > 1:
        name += f", {r['split']}"
    return name + "".join(f" · {e}" for e in r["label"].split(" · ")[1:])


def _band(rows: list[dict[str, Any]], metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.array([r[f"{metric}_{k}"] for r in rows], dtype=float) for k in ("mean", "low", "high"))  # type: ignore[return-value]


def _sweep_plots(
    table: list[dict[str, Any]], columns: list[results.Column], stage: Path
) -> list[tuple[str, str, Path]]:
    """sweep_<param>.png per parameter column (a line per series; auto as a star) and
    sweep_<method>_<variant>_<p1>_x_<p2>.png heat maps for two-parameter sweeps."""
    written: list[tuple[str, str, Path]] = []
    lines, grids = results.sweeps(table, columns)
    for column in columns:
        mine = [s for s in lines if s.column == column]
        if not mine:
            continue
        series, others = [], []
        for sweep in mine:
            rows = sweep.numeric or [r for r, _ in sweep.other]
            name = _series_name(rows, table)
            if sweep.numeric:
                xs = [results.cell(r, column) for r in sweep.numeric]
                series.append((name, xs, {m: _band(sweep.numeric, m) for m in METRICS}))
            for r, chosen in sweep.other:
                band = {m: (r[f"{m}_mean"], r[f"{m}_low"], r[f"{m}_high"]) for m in METRICS}
                others.append((name, str(results.cell(r, column)), chosen, band))
        path = stage / f"sweep_{_slug(column.title)}.png"
        sweep_figure(column.title, series, path, others)
        caption = f"metrics vs {column.title}: mean with a 95 % interval over the units (subjects when recorded)"
        if others:
            caption += (
                f"; stars: a {column.param} that is not a number (e.g. auto), at the value it chose when recorded"
            )
        written.append(("Sweeps", caption, path))
    for c1, c2, rows in grids:
        written.append(_heatmap(c1, c2, rows, table, stage))
    return written


def _heatmap(
    c1: results.Column, c2: results.Column, rows: list[dict[str, Any]], table: list[dict[str, Any]], stage: Path
) -> tuple[str, str, Path]:
    """A heat map per metric of a two-parameter sweep, best cell outlined."""
    v1 = sorted({results.cell(r, c1) for r in rows}, key=results.sort_key)
    v2 = sorted({results.cell(r, c2) for r in rows}, key=results.sort_key)
    maps: dict[str, tuple[np.ndarray, tuple[int, int] | None]] = {}
    for m in METRICS:
        grid = np.full((len(v1), len(v2)), np.nan)
        for r in rows:
            grid[v1.index(results.cell(r, c1)), v2.index(results.cell(r, c2))] = r[f"{m}_mean"]
        best: tuple[int, int] | None = None
        if np.isfinite(grid).any():
            flat = np.nanargmax(grid) if results.HIGHER_IS_BETTER[m] else np.nanargmin(grid)
            i, j = np.unravel_index(flat, grid.shape)
            best = (int(i), int(j))
        maps[m] = (grid, best)
    name = _series_name(rows, table)
    path = _unique(stage / f"sweep_{_slug(rows[0]['method'], rows[0]['variant'], c1.title, 'x', c2.title)}.png")
    heatmap_figure(c1.title, c2.title, v1, v2, maps, f"{name}: mean", path)
    return ("Sweeps", f"{name}: {c1.title} x {c2.title}, mean over the items", path)


def _print_tables(doc: report.Report) -> None:
    """The results tables on the terminal, one per group."""
    console = Console()
    if not console.is_terminal:  # a log file or pipe: do not squeeze the table to 80 columns
        console = Console(width=200)
    console.print(escape(doc.title))
    for heading, rows in report.groups(doc.table):
        head, lines = report.group_table(doc, rows)
        rich_table = Table(title=escape(f"{heading} (level {doc.level})"))
        for c in head:
            rich_table.add_column(escape(c), justify="left" if c in ("method", "run", "best", "warning") else "right")
        for line in lines:
            rich_table.add_row(*(escape(text) for text, _ in line))
        console.print(rich_table)
    for s in doc.skipped:
        console.print(escape(f"skipped {s.path}: {s.reason}"))
