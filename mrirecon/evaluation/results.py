"""Results tables from loaded runs: one row per distinct run identity, paired comparisons, sweeps.

Runs share a row only when everything that makes runs differ is equal (runs.identity: data file
and its content id, split, variant, method and its parameters, checkpoint, seed, code version,
metric convention); `pool=("seed",)` lets rows that differ only by seed share one, on request.
Runs that share a row are averaged item by item (slice or volume). Rows are compared within
their group (same data file, content, split and variant). Nothing is recomputed from images.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mrirecon.evaluation import budgets, stats, uncertainty
from mrirecon.evaluation.metrics import NAMES as METRICS
from mrirecon.evaluation.runs import Run

HIGHER_IS_BETTER = {"nrmse": False, "psnr": True, "ssim": True}
# The values a metric can take: a mean's interval is clipped to this range, a paired difference's
# to [-(hi - lo), hi - lo] (the true value lies there, so the clipped interval covers as often).
RANGES = {"nrmse": (0.0, math.inf), "psnr": (-math.inf, math.inf), "ssim": (-1.0, 1.0)}
RANK_BY = "psnr"
POOLABLE = ("seed",)
GROUP = ("data", "data_id", "split", "variant", "reference_image")  # reference_image: what the metrics compare with
# A sweep axis or table column never mixes units: a run records the units of its method's
# parameters in summary.json (`param_units`, from Method.units).
UNIT_NAMES = {"slice": "slices", "volume": "volumes"}


@dataclass(frozen=True)
class Column:
    """A parameter column: its title, the parameter, the unit it holds ('' when not declared) and
    the methods it is swept for (the only rows with a value in it)."""

    title: str
    param: str
    unit: str
    methods: tuple[str, ...]


def unit_of(run: Run, param: str) -> str:
    """The unit of `param` in `run` ('' when its method declares none)."""
    return str(run.summary["param_units"].get(param, ""))


def param_columns(runs: list[Run]) -> list[Column]:
    """Method parameters that take more than one value among runs of the same method, in the
    order of the methods' configs, one column per (parameter, unit): 'lam' when one unit, else
    'lam [A^H A]', 'lam [x max|A^H y|]'."""
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    unit: dict[tuple[str, str], str] = {}
    for run in runs:
        for key, value in run.identity["params"].items():
            if key != "name":
                values[(run.identity["method"], key)].add(json.dumps(value, sort_keys=True))
                unit.setdefault((run.identity["method"], key), unit_of(run, key))
    swept = [(method, key) for (method, key), vals in values.items() if len(vals) > 1]
    units: dict[str, dict[str, list[str]]] = defaultdict(dict)  # param -> unit -> methods
    for method, key in swept:
        units[key].setdefault(unit[(method, key)], []).append(method)
    return [
        Column(key if len(found) == 1 else f"{key} [{unit or ', '.join(methods)}]", key, unit, tuple(methods))
        for key, found in units.items()
        for unit, methods in found.items()
    ]


def cell(row: dict[str, Any], column: Column) -> Any:
    """The row's value in a parameter column ('' when the column is not swept for its method)."""
    if row["method"] not in column.methods:
        return ""
    return row["params"].get(column.param, "")


def key_of(identity: dict[str, Any], pool: tuple[str, ...]) -> str:
    return json.dumps({k: v for k, v in identity.items() if k not in pool}, sort_keys=True, default=str)


def group_of(row: dict[str, Any]) -> tuple[str, ...]:
    """Rows compared with each other: same data file (and content), split, variant and reference image."""
    return tuple(str(row[k]) for k in GROUP)


def _pooled(members: list[Run]) -> tuple[dict[Any, dict[str, float]], dict[Any, Any] | None, int]:
    """{item: {name: value}} averaged over the runs of a row, {item: unit} (None when items are
    their own units) and the number of distinct slices."""
    values: dict[Any, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    units: dict[Any, Any] | None = {}
    for run in members:
        for k, item in enumerate(run.items.tolist()):
            for name, arr in run.values.items():
                values[item][name].append(float(arr[k]))
            if run.units is None:
                units = None
            elif units is not None:
                units[item] = run.units[k].item()
    slices = len({int(s) for run in members for s in run.slices})
    return {i: {n: float(np.mean(v)) for n, v in d.items()} for i, d in values.items()}, units, slices


def _row(members: list[Run], level: str, pool: tuple[str, ...]) -> dict[str, Any]:
    """One table row from the runs that share it."""
    first = members[0]
    row: dict[str, Any] = {**first.identity, "level": level}
    if "seed" in pool:
        row["seed"] = ", ".join(sorted({r.identity["seed"] for r in members}, key=lambda s: (len(s), s)))
    items, units, slices = _pooled(members)
    order = sorted(items)
    names = (*METRICS, "seconds", "R", *(n for n in uncertainty.NAMES if n in first.values))
    column = {name: np.array([items[i].get(name, np.nan) for i in order]) for name in names}
    labels = None if units is None else np.array([units[i] for i in order])
    has_reference = bool(first.summary.get("has_reference", True))
    failed = int(np.sum(~np.isfinite(np.stack([column[m] for m in METRICS])).all(axis=0))) if has_reference else 0
    row.update(
        runs=len(members),
        run_dirs="; ".join(str(r.dir) for r in members),
        slices=slices,
        subjects=("" if level == "slice" else len(items)) if units is None else len(set(units.values())),
        unit="subjects" if units is not None else "volumes" if level == "volume" else "slices",
        failed=failed if has_reference else "",
        R=float(np.nanmean(column["R"])) if np.isfinite(column["R"]).any() else np.nan,
        mask=str(first.summary.get("mask", "")),
        seconds_mean=float(np.mean(column["seconds"])),
        **budgets.of(first),
    )
    for name in METRICS:
        values = column[name]
        mean, low, high = (
            stats.mean_interval(values, labels, bounds=RANGES.get(name, stats.UNBOUNDED))
            if failed == 0
            else (np.nan,) * 3
        )
        std = float(np.std(values, ddof=1)) if failed == 0 and len(values) > 1 else np.nan
        row.update({f"{name}_mean": mean, f"{name}_std": std, f"{name}_low": low, f"{name}_high": high})
    _uncertainty(row, column, labels)
    row["best"] = "no reference" if not has_reference else f"failed ({failed})" if failed else ""
    row["warnings"] = list(dict.fromkeys(w for r in members for w in r.warnings))
    row["warning"] = " | ".join(row["warnings"])
    row["items"], row["unit_of"], row["members"] = items, units, members
    return row


def _uncertainty(row: dict[str, Any], column: dict[str, np.ndarray], labels: np.ndarray | None) -> None:
    """A sampling method's row: per uncertainty measure (std_spearman, std_coverage) the mean,
    sample std and interval over the units as for the metrics (NaN when any item's is NaN, e.g. a
    constant std); `has_std`. Rows of other methods get has_std False and no such keys."""
    row["has_std"] = all(name in column for name in uncertainty.NAMES)
    for name in uncertainty.NAMES if row["has_std"] else ():
        values = column[name]
        mean, low, high = stats.mean_interval(values, labels, bounds=uncertainty.RANGES[name])
        std = float(np.std(values, ddof=1)) if np.isfinite(mean) and len(values) > 1 else np.nan
        row.update({f"{name}_mean": mean, f"{name}_std": std, f"{name}_low": low, f"{name}_high": high})


def summarize(runs: list[Run], level: str = "slice", pool: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per distinct run identity (less the `pool`ed fields) with runs, slices, subjects,
    failed (items with a non-finite metric), R, seconds_mean and per metric the mean, sample std
    (ddof 1), and interval over the units (`<metric>_low/_high`; subjects when recorded), all NaN
    when any item failed. Sorted by group, then mean PSNR (best first)."""
    rows: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        rows[key_of(run.identity, pool)].append(run)
    table = [_row(members, level, pool) for members in rows.values()]
    table.sort(key=lambda r: (group_of(r), -np.nan_to_num(r[f"{RANK_BY}_mean"], nan=-np.inf)))
    _warn_selection_on_test(table)
    budgets.warn_unequal(table, group_of)
    return table


SELECTION_SPLITS = ("test", "all")  # splits that include the test split


def _series_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """Rows of one series: same group, method, checkpoint, seed and version (a sweep varies the rest)."""
    return (group_of(row), row["method"], row["checkpoint"], row["checkpoint_id"], row["seed"], row["version"])


def _warn_selection_on_test(table: list[dict[str, Any]]) -> None:
    """Warn every row of a series whose method parameters take several values on a split that
    includes the test split: a setting picked from these rows is picked on the data that report it."""
    series: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        series[_series_key(row)].append(row)
    for rows in series.values():
        split = rows[0]["split"]
        keys = sorted({k for r in rows for k in r["params"] if k != "name"})
        swept = [k for k in keys if len({json.dumps(r["params"].get(k), sort_keys=True) for r in rows}) > 1]
        if split not in SELECTION_SPLITS or not swept:
            continue
        names = ", ".join(f"method.{k}" for k in swept)
        warning = (
            f"{len(rows)} settings of {names} evaluated on data.split={split}: a setting chosen from them was "
            "chosen on the split that reports it, an optimistic estimate (choose it on data.split=val, then report "
            "that setting on test)"
        )
        for row in rows:
            row["warnings"].append(warning)
            row["warning"] = " | ".join(row["warnings"])


def compare(row: dict[str, Any], reference: dict[str, Any], metric: str) -> stats.Paired:
    """Paired difference row - reference of `metric` over the items both were run on, decided
    over the units (subjects when both record them)."""
    common = sorted(set(row["items"]) & set(reference["items"]))
    a = np.array([row["items"][i][metric] for i in common])
    b = np.array([reference["items"][i][metric] for i in common])
    units = None
    if row["unit_of"] is not None and reference["unit_of"] is not None:
        units = np.array([row["unit_of"][i] for i in common])
    lo, hi = RANGES.get(metric, stats.UNBOUNDED)
    unit = "subjects" if units is not None else "volumes" if row["level"] == "volume" else "slices"
    return stats.paired(a, b, units, unit, (lo - hi, hi - lo))


# ------------------------------------------------------------------------------------------ labels
def short_paths(paths: list[str]) -> dict[str, str]:
    """The shortest trailing part of each path (in folders) that tells it apart from the others."""
    unique = sorted({p for p in paths if p})
    out = {}
    for p in unique:
        parts = Path(p).parts
        out[p] = p
        for k in range(1, len(parts) + 1):
            if all(Path(q).parts[-k:] != parts[-k:] for q in unique if q != p):
                out[p] = str(Path(*parts[-k:]))
                break
    return out


def _versions(rows: list[dict[str, Any]], path_key: str, id_key: str) -> dict[tuple[str, str], str]:
    """A label per (path, content id): the short path, plus the id where one path held several."""
    shorts = short_paths([r[path_key] for r in rows])
    ids: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        ids[r[path_key]].add(r[id_key])
    return {
        (r[path_key], r[id_key]): shorts.get(r[path_key], "")
        + (f" #{r[id_key][:6]}" if len(ids[r[path_key]]) > 1 else "")
        for r in rows
    }


def label_rows(table: list[dict[str, Any]], columns: list[Column]) -> None:
    """Set each row's `data_label` (the data file, told apart from the others in the table) and
    `label` (method, parameters, checkpoint, and the seed, version or convention where they vary
    within its group): what the row is, in the tables, comparisons and figures."""
    data = _versions(table, "data", "data_id")
    checkpoints = _versions([r for r in table if r["checkpoint"]], "checkpoint", "checkpoint_id")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        row["data_label"] = data[(row["data"], row["data_id"])] or "(data path not recorded)"
        groups[group_of(row)].append(row)
    for rows in groups.values():
        varying = [k for k in ("seed", "version", "convention") if len({r[k] for r in rows}) > 1]
        conventions = sorted({r["convention"] for r in rows})
        for row in rows:
            params = [f"{c.param}={_fmt(cell(row, c))}" for c in columns if cell(row, c) != ""]
            extra = []
            if row["checkpoint"]:
                model = f"{row['model_config']} " if row["model_config"] else ""
                extra.append(f"checkpoint {model}{checkpoints[(row['checkpoint'], row['checkpoint_id'])]}")
            if "seed" in varying or "," in str(row["seed"]):
                extra.append(f"seed {row['seed'] or '?'}" if "," not in str(row["seed"]) else f"seeds {row['seed']}")
            if "version" in varying:
                extra.append(f"v{row['version'] or '?'}")
            if "convention" in varying:
                extra.append(f"metric convention {conventions.index(row['convention']) + 1}")
            text = row["method"] + (f" ({', '.join(params)})" if params else "")
            row["label"] = text + "".join(f" · {e}" for e in extra)


def _fmt(value: Any) -> str:
    return f"{value:g}" if _numeric(value) else str(value)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def sort_key(value: Any) -> tuple[Any, ...]:
    """Order of parameter values: numbers by value, then other values (e.g. auto) by their text."""
    return (0, float(value), "") if _numeric(value) else (1, 0.0, str(value))


# ------------------------------------------------------------------------------------------ comparisons
def comparisons(table: list[dict[str, Any]], baseline: str | None) -> list[dict[str, Any]]:
    """Every row against the best row of its group (by mean PSNR) and, if given, against the
    best row of method `baseline` in its group; one entry per (row, reference, metric). Sets
    each row's `best` from the PSNR comparisons with the best row (see _mark_best)."""
    by_group: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        by_group[group_of(row)].append(row)
    out = []
    for rows in by_group.values():
        ranked = [r for r in rows if np.isfinite(r[f"{RANK_BY}_mean"])]  # sorted best first
        if not ranked:
            continue
        references = [("best", ranked[0])]
        base = [r for r in ranked if r["method"] == baseline]
        if base:
            references.append(("baseline", base[0]))
        entries = [
            _entry(row, ref, kind, metric)
            for kind, ref in references
            for row in ranked
            if row is not ref
            for metric in METRICS
        ]
        _mark_best(ranked, [c for c in entries if c["reference"] == "best" and c["metric"] == RANK_BY])
        out += entries
    return out


def _entry(row: dict[str, Any], ref: dict[str, Any], kind: str, metric: str) -> dict[str, Any]:
    return {
        **{k: row[k] for k in (*GROUP, "data_label", "method", "label", "level")},
        "row": row,
        "reference": kind,
        "reference_label": ref["label"],
        "metric": metric,
        "result": compare(row, ref, metric),
        "p_holm": np.nan,
    }


def _mark_best(ranked: list[dict[str, Any]], decided: list[dict[str, Any]]) -> None:
    """The `best` cells of a group of k rows from the PSNR comparisons with its best row, at
    family-wise level ALPHA: the best row is chosen from the data, so any of the k(k-1)/2 pairs
    could be the one compared, and Holm's step-down runs over the k-1 comparisons made as part of
    that family (each entry's `p_holm`). Rows: '' when resolved worse than the best row, 'tied'
    when not, 'too few <units>' when even Holm's last step (ALPHA / (k(k-1)/2 - k + 2)) is below
    the smallest p their units allow; the best row: '*' when every other row is resolved."""
    if len(ranked) < 2:
        return
    k = len(ranked)
    family = k * (k - 1) // 2
    adjusted = stats.holm([c["result"].p for c in decided], family)
    cells = {}
    for entry, p in zip(decided, adjusted):
        result = entry["result"]
        entry["p_holm"] = float(p)
        if stats.smallest_p(result.units) >= stats.ALPHA / (family - k + 2) or result.decision.startswith("too few"):
            cells[id(entry["row"])] = f"too few {result.unit}"
        else:
            cells[id(entry["row"])] = "" if p < stats.ALPHA else "tied"
    for row in ranked[1:]:
        row["best"] = cells.get(id(row), "")
    found = {r["best"] for r in ranked[1:]}
    ranked[0]["best"] = "*" if found == {""} else "tied" if "tied" in found else sorted(found - {""})[0]


# ------------------------------------------------------------------------------------------ sweeps
@dataclass
class Sweep:
    """Rows of one series that differ in `column` only: numeric values (sorted) and the rows whose
    value is not a number (e.g. auto: the value chosen per slice, `chosen`, when recorded)."""

    column: Column
    name: str
    numeric: list[dict[str, Any]]
    other: list[tuple[dict[str, Any], float | None]]


def sweeps(
    table: list[dict[str, Any]], columns: list[Column]
) -> tuple[list[Sweep], list[tuple[Column, Column, list[dict[str, Any]]]]]:
    """Sweeps in the table: for each group, method and fixed checkpoint, seed and version, the
    parameter columns that vary among its rows. One: a line; two: a grid (p1, p2, rows). Series
    varying in three or more are left out."""
    lines: list[Sweep] = []
    grids: list[tuple[Column, Column, list[dict[str, Any]]]] = []
    series: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        series[_series_key(row)].append(row)
    for rows in series.values():
        varying = [c for c in columns if len({json.dumps(cell(r, c)) for r in rows}) > 1]
        if len(varying) == 1:
            c = varying[0]
            numeric = sorted((r for r in rows if _numeric(cell(r, c))), key=lambda r: float(cell(r, c)))
            other = [(r, _chosen(r, c.param)) for r in rows if not _numeric(cell(r, c))]
            lines.append(Sweep(c, f"{rows[0]['method']} on {rows[0]['variant']}", numeric, other))
        elif len(varying) == 2:
            grids.append((varying[0], varying[1], rows))
    return lines, grids


def _chosen(row: dict[str, Any], param: str) -> float | None:
    """The mean value a data-driven setting (param: auto) took in the row's runs, if recorded."""
    recorded = [((r.summary.get("chosen") or {}).get(param) or {}).get("mean") for r in row["members"]]
    means = [float(m) for m in recorded if isinstance(m, (int, float)) and not isinstance(m, bool)]
    return float(np.mean(means)) if means else None
