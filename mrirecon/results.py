"""Results tables from per-slice rows: one row per method setting, paired comparisons, sweeps.

A run is a dict with keys data, split, variant, method, params (the method's settings), slices
(slice indices), subjects (the subject of each slice, or None) and per_slice ({name: array}
for METRICS, "seconds" and "R", the effective acceleration). Nothing is recomputed from images.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from mrirecon import stats
from mrirecon.metrics import NAMES as METRICS

HIGHER_IS_BETTER = {"nrmse": False, "psnr": True, "ssim": True}
RANK_BY = "psnr"


def swept_params(runs: list[dict[str, Any]]) -> list[str]:
    """Method parameters that take more than one value among runs of the same method, in the
    order of the methods' configs (lam before beta)."""
    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    for run in runs:
        for key, value in run["params"].items():
            if key != "name":
                values[(run["method"], key)].add(json.dumps(value))
    return list(dict.fromkeys(key for (_, key), vals in values.items() if len(vals) > 1))


def group_of(row: dict[str, Any]) -> tuple[str, str, str]:
    """Rows compared with each other: same data file, split and variant."""
    return row["data"], row["split"], row["variant"]


def label(row: dict[str, Any], params: list[str]) -> str:
    """The method and its swept settings, e.g. 'cg_sense (lam=0.01)'."""
    extra = ", ".join(f"{p}={row[p]:g}" if _numeric(row[p]) else f"{p}={row[p]}" for p in params if row[p] != "")
    return row["method"] + (f" ({extra})" if extra else "")


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _per_slice(members: list[dict[str, Any]]) -> tuple[dict[int, dict[str, float]], dict[int, Any] | None]:
    """{slice: {name: value}} over the runs of a row (repeated slices averaged), and
    {slice: subject} (None when any run does not record subjects)."""
    values: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    subjects: dict[int, Any] | None = {}
    for run in members:
        for k, s in enumerate(run["slices"]):
            for name, arr in run["per_slice"].items():
                values[s][name].append(float(arr[k]))
            if run["subjects"] is None:
                subjects = None
            elif subjects is not None:
                subjects[s] = run["subjects"][k]
    return {s: {n: float(np.mean(v)) for n, v in d.items()} for s, d in values.items()}, subjects


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]  # NaN: data without a reference image, or not recorded
    return float(finite.mean()) if finite.size else float("nan")


def _std(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std(ddof=1)) if finite.size > 1 else float("nan")


def summarize(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per (data file, split, variant, method, swept params) with slices, subjects, R,
    mean and sample std of each metric over slices, seconds_mean, a bootstrap interval of each
    metric's mean (`<metric>_low/_high`), sorted by mean PSNR within each group. Runs on
    different files or splits are never pooled."""
    params = swept_params(runs)
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        key = (
            run["data"],
            run["split"],
            run["variant"],
            run["method"],
            *(json.dumps(run["params"].get(p)) for p in params),
        )
        groups[key].append(run)
    table = []
    for key, members in groups.items():
        row: dict[str, Any] = {"data": key[0], "split": key[1], "variant": key[2], "method": key[3]}
        row.update({p: members[0]["params"].get(p, "") for p in params})
        per_slice, subjects = _per_slice(members)
        order = sorted(per_slice)
        row["slices"] = len(order)
        row["subjects"] = len(set(subjects.values())) if subjects is not None else ""

        def column(name: str, per_slice: dict = per_slice, order: list = order) -> np.ndarray:
            return np.array([per_slice[s].get(name, np.nan) for s in order])

        row["R"] = _mean(column("R"))
        clusters = None if subjects is None else np.array([subjects[s] for s in order])
        for name in METRICS:
            values = column(name)
            row[f"{name}_mean"], row[f"{name}_std"] = _mean(values), _std(values)
            keep = np.isfinite(values)
            row[f"{name}_low"], row[f"{name}_high"] = stats.bootstrap_ci(
                values[keep], None if clusters is None else clusters[keep]
            )
        row["seconds_mean"] = _mean(column("seconds"))
        row["best"] = ""
        row["per_slice"], row["subject_of"], row["runs"] = per_slice, subjects, members
        table.append(row)
    table.sort(key=lambda r: (*group_of(r), -np.nan_to_num(r[f"{RANK_BY}_mean"], nan=-np.inf)))
    return table, params


def compare(row: dict[str, Any], reference: dict[str, Any], metric: str) -> stats.Paired:
    """Paired difference row - reference of `metric` over the slices both were run on."""
    common = sorted(set(row["per_slice"]) & set(reference["per_slice"]))
    a = np.array([row["per_slice"][s][metric] for s in common])
    b = np.array([reference["per_slice"][s][metric] for s in common])
    subjects = None
    if row["subject_of"] is not None and reference["subject_of"] is not None:
        subjects = np.array([row["subject_of"][s] for s in common])
    return stats.paired(a, b, subjects)


def comparisons(table: list[dict[str, Any]], params: list[str], baseline: str | None) -> list[dict[str, Any]]:
    """Every row against the best row of its group (by mean PSNR) and, if given, against the
    best row of method `baseline` in its group; one entry per (row, reference, metric). Also
    sets each row's `best`: '*' on the best row when its PSNR difference to every other row is
    resolved, else 'tied' on the best row and on each row not resolved from it."""
    by_group: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
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
        for kind, ref in references:
            for row in ranked:
                if row is ref:
                    continue
                for metric in METRICS:
                    result = compare(row, ref, metric)
                    out.append(
                        {
                            "data": row["data"],
                            "split": row["split"],
                            "variant": row["variant"],
                            "method": row["method"],
                            **{p: row[p] for p in params},
                            "label": label(row, params),
                            "reference": kind,
                            "reference_label": label(ref, params),
                            "metric": metric,
                            "result": result,
                        }
                    )
                    if kind == "best" and metric == RANK_BY and not result.resolved:
                        row["best"] = ref["best"] = "tied"
        if ranked[0]["best"] != "tied" and len(ranked) > 1:
            ranked[0]["best"] = "*"
    return out


def sweeps(
    table: list[dict[str, Any]], params: list[str]
) -> tuple[dict[str, list[list[dict[str, Any]]]], list[tuple[str, str, list[dict[str, Any]]]]]:
    """Sweeps in the table: for each (data, split, variant, method) the swept params that vary
    among its rows. One varying param: a line (rows sorted by its value), collected per param
    name; two: a grid (param1, param2, rows). Methods varying in three or more are left out."""
    lines: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    grids: list[tuple[str, str, list[dict[str, Any]]]] = []
    series: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        series[(*group_of(row), row["method"])].append(row)
    for rows in series.values():
        varying = [p for p in params if len({json.dumps(r[p]) for r in rows}) > 1]
        if len(varying) == 1:
            lines[varying[0]].append(sorted(rows, key=lambda r: sort_key(r[varying[0]])))
        elif len(varying) == 2:
            grids.append((varying[0], varying[1], rows))
    return dict(lines), grids


def sort_key(value: Any) -> tuple:
    """Order of parameter values: numbers by value, then other values by their text."""
    return (0, float(value), "") if _numeric(value) else (1, 0.0, str(value))
