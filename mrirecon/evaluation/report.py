"""Rendering of results: CSV tables, results.md and one self-contained HTML report page (inline
CSS, PNGs embedded as base64, no scripts, nothing fetched from the network). Tables are grouped by
data file, split and variant; every table names its level (slice or volume)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mrirecon.evaluation import budgets, stats, uncertainty
from mrirecon.evaluation.metrics import CONVENTION, VOLUME_CONVENTION
from mrirecon.evaluation.metrics import NAMES as METRICS
from mrirecon.evaluation.results import Column, cell, group_of
from mrirecon.evaluation.runs import Run, Skipped

HEADS = {"nrmse": "NRMSE", "psnr": "PSNR (dB)", "ssim": "SSIM"}
UNCERTAINTY_HEADS = {"std_spearman": "std-error Spearman", "std_coverage": "coverage (2 std)"}
CONVENTIONS = {"slice": CONVENTION, "volume": VOLUME_CONVENTION}


@dataclass
class Report:
    """Everything a report shows: the table rows, parameter columns, paired comparisons, level,
    pooled fields, runs read, runs skipped, train-run labels and figures (section, caption, PNG)."""

    title: str
    level: str
    table: list[dict[str, Any]]
    columns: list[Column]
    comparisons: list[dict[str, Any]]
    runs: list[Run]
    skipped: list[Skipped]
    pool: tuple[str, ...] = ()
    figures: list[tuple[str, str, Path]] = field(default_factory=list)
    summary_figure: Path | None = None


def table_note(level: str) -> str:
    unit = "volume" if level == "volume" else "slice"
    return (
        f"Level: {level}. Metrics: {CONVENTIONS[level]}. Mean: over the independent units of each unit's mean "
        f"(subjects when the file records them, each weighted equally; else {unit}s); std: sample std (ddof 1) over "
        f"{unit}s; 95 % CI: the means that neither a sign-flip test nor a bootstrap-t test over the units rejects, "
        f"clipped to the metric's range (SSIM [-1, 1], NRMSE >= 0); none with fewer than {stats.MIN_UNITS} units. "
        f"slices, subjects: numbers of each (empty: the file records no subjects); failed: {unit}s with a non-finite "
        "metric (a diverging method's NaN, an all-zero reference): when any failed the row has no mean, never a mean "
        "over the rest; R: mean effective acceleration; mask: the kind of the data's masks (lines, poisson, fastmri_*: "
        "drawn by preprocess; acquired: the file's own); s/slice: mean reconstruction time per slice. best, at "
        f"family-wise level {stats.ALPHA} over the PSNR comparisons with the best row (Holm, counting all k(k-1)/2 "
        "pairs of the group's k rows, since the best row is chosen from the data): * = best mean PSNR of its group "
        "and resolved from every other row; blank = resolved worse than the best row; tied = not resolved from it "
        "(and then on the best row); too few subjects = with n units the test's smallest p is 2/2^n, below what "
        "the correction asks."
    )


REFERENCE_NOTE = (
    "Reference (each group's heading names it): sense = the SENSE combination of the fully sampled k-space "
    "(zero outside the coil maps' support); rss = fastMRI's reconstruction_rss of the source file, the target of "
    "fastMRI's evaluate.py and of published numbers (evaluate reference=auto uses it where the data carry it); "
    "fastMRI crop = both images cropped to the target's width, as fastMRI's evaluate.py does."
)
COMPARISON_NOTE = (
    "Paired differences (row minus reference) of each metric over the items both were run on: the mean over the "
    "units of each unit's mean difference, its 95 % interval (the differences that neither test rejects, within "
    "the metric's range) and the two-sided p over the units, the larger of the sign-flip permutation p (exact up "
    "to 16 units, else 10,000 random sign assignments) and the bootstrap-t p (9,999 resamples): subjects when the "
    "file records them (slices of one subject are not independent), volumes at level volume, else slices. Bold: "
    f"resolved, p < {stats.ALPHA}, each comparison on its own (the best column corrects for multiplicity). With n "
    f"units the smallest p is 2/2^n: 'too few' below {stats.MIN_UNITS} units, whatever the data."
)

UNCERTAINTY_NOTE = (
    "Uncertainty (rows of methods that sample a posterior and write the mean of their samples with their per-pixel "
    "std; blank for the others), per slice, and per volume the mean of its slices', then averaged like the metrics: "
    f"{uncertainty.DEFINITION}."
)


# ------------------------------------------------------------------------------------------ CSV
# the columns that say which table a row belongs to (results.csv and comparisons.csv)
IDENTITY_COLUMNS = ["level", "reference_image", "data", "data_id", "split", "variant", "method"]


def result_columns(columns: Sequence[Column], has_std: bool = False) -> list[str]:
    """The columns of results.csv; `has_std` (some row is a sampling method's): also the
    uncertainty measures' mean, std and interval, after the metrics' (empty for other rows)."""
    return [
        *IDENTITY_COLUMNS,
        *(c.title for c in columns),
        "checkpoint",
        "checkpoint_id",
        "model_config",
        *budgets.COLUMNS,
        "seed",
        "version",
        "label",
        "runs",
        "run_dirs",
        "slices",
        "subjects",
        "unit",
        "failed",
        "R",
        "mask",
        *(f"{m}_{a}" for m in METRICS for a in ("mean", "std", "low", "high")),
        *(f"{m}_{a}" for m in (uncertainty.NAMES if has_std else ()) for a in ("mean", "std", "low", "high")),
        "seconds_mean",
        "best",
        "warning",
    ]


COMPARISON_COLUMNS = [
    *IDENTITY_COLUMNS,
    "label",
    "reference",
    "reference_label",
    "metric",
    "slices",
    "unit",
    "units",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p",
    "decision",
    "resolved",
    "p_holm",
]


def csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """CSV with floats to 6 significant digits (NaN as empty)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c, "")
            if isinstance(v, (float, np.floating)):
                v = f"{v:.6g}" if np.isfinite(v) else ""
            cells.append(v)
        writer.writerow(cells)
    return buf.getvalue()


def results_csv(report: Report) -> str:
    rows = [{**r, **{c.title: cell(r, c) for c in report.columns}} for r in report.table]
    return csv_text(result_columns(report.columns, any(r.get("has_std") for r in report.table)), rows)


def comparisons_csv(report: Report) -> str:
    rows = []
    for c in report.comparisons:
        r = c["result"]
        rows.append(
            {
                **c,
                "slices": r.slices,
                "unit": r.unit,
                "units": r.units,
                "mean_diff": r.mean,
                "ci_low": r.low,
                "ci_high": r.high,
                "p": r.p,
                "decision": r.decision,
                "resolved": str(r.resolved).lower(),
            }
        )
    return csv_text(COMPARISON_COLUMNS, rows)


# ------------------------------------------------------------------------------------------ cells
def fmt(key: str, value: Any) -> str:
    """A table cell: PSNR 2 decimals, other metrics 4, seconds and parameters 4 significant digits."""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        if key.startswith("psnr"):
            return f"{value:.2f}"
        if key.startswith((*METRICS, *uncertainty.NAMES)):
            return f"{value:.4f}"
        if key == "R":
            return f"{value:.2f}"
        return f"{value:.4g}"  # seconds and swept parameters (lam 3e-05, not 0.0000)
    return "" if value is None else str(value)


def _mean_std(row: dict[str, Any], metric: str) -> str:
    mean, std = fmt(f"{metric}_mean", row[f"{metric}_mean"]), fmt(f"{metric}_std", row[f"{metric}_std"])
    return f"{mean} ± {std}" if mean and std else mean  # a single item has no std


def _interval(row: dict[str, Any], metric: str) -> str:
    low, high = fmt(metric, row[f"{metric}_low"]), fmt(metric, row[f"{metric}_high"])
    return f"[{low}, {high}]" if low and high else ""


def groups(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows by group (data file, split, variant), each with a heading naming them."""
    by: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by[group_of(row)].append(row)
    out = []
    for members in by.values():
        r = members[0]
        content = f", content {r['data_id'][:8]}" if r["data_id"] else ""
        heading = f"{r['variant']} · split {r['split']} · data {r['data_label']} ({r['data']}{content})"
        out.append((f"{heading} · reference {r['reference_image']}", members))
    return out


def group_table(report: Report, rows: list[dict[str, Any]]) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """The results table of one group: its head and cells (text, bold)."""
    columns = [c for c in report.columns if any(cell(r, c) != "" for r in rows)]
    extra = any(" · " in r["label"] for r in rows)
    unit = "volumes" if report.level == "volume" else "subjects"
    head = ["method", *(c.title for c in columns), *(["run"] if extra else []), "slices", unit, "failed", "R", "mask"]
    has_std = any(r.get("has_std") for r in rows)
    head += [*HEADS.values(), *(UNCERTAINTY_HEADS.values() if has_std else ()), "PSNR 95 % CI", "s/slice"]
    trained = any(budgets.text(r) for r in rows)
    head += ["training", "best"] if trained else ["best"]
    warned = any(r["warning"] for r in rows)
    head += ["warning"] if warned else []
    lines = []
    for r in rows:
        cells = [r["method"], *(fmt("param", cell(r, c)) for c in columns)]
        cells += [r["label"].split(" · ", 1)[1] if " · " in r["label"] else ""] if extra else []
        cells += [fmt("", r["slices"]), fmt("", r["subjects"]), fmt("", r["failed"]), fmt("R", r["R"]), r["mask"]]
        cells += [_mean_std(r, m) for m in METRICS]
        cells += [_mean_std(r, m) if r.get("has_std") else "" for m in (uncertainty.NAMES if has_std else ())]
        cells += [_interval(r, "psnr"), fmt("seconds", r["seconds_mean"])]
        cells += [budgets.text(r)] if trained else []
        cells += [r["best"], *([r["warning"]] if warned else [])]
        lines.append([(text, head[k] == "best" and text == "*") for k, text in enumerate(cells)])
    return head, lines


def _signed(metric: str, value: float) -> str:
    return f"{value:+.2f}" if metric == "psnr" else f"{value:+.3g}"


def _diff_cell(metric: str, r: stats.Paired) -> tuple[str, bool]:
    """'+1.23 [+0.80, +1.70] p=0.031' (PSNR to 2 decimals, others to 3 significant digits), and
    whether it is resolved."""
    if not np.isfinite(r.mean):
        return "", False
    interval = f" [{_signed(metric, r.low)}, {_signed(metric, r.high)}]" if np.isfinite(r.low) else ""
    return f"{_signed(metric, r.mean)}{interval} p={r.p:.2g}", r.resolved


def comparison_tables(
    comparisons: Sequence[dict[str, Any]],
) -> list[tuple[str, list[str], list[list[tuple[str, bool]]]]]:
    """The paired comparisons of one group, one table per reference (its best row; the baseline):
    (caption, head, lines) with a line per row: row, slices, units, a cell per metric."""
    head = ["row", "slices", "units", *(f"{HEADS[m]} difference" for m in METRICS)]
    tables: dict[tuple[str, str], dict[str, list[tuple[str, bool]]]] = {}
    for c in comparisons:
        lines = tables.setdefault((c["reference"], c["reference_label"]), {})
        r = c["result"]
        if c["label"] not in lines:
            few = " (too few)" if r.decision.startswith("too few") else ""
            lines[c["label"]] = [
                (c["label"], False),
                (str(r.slices), False),
                (f"{r.units} {r.unit}{few}", False),
                *[("", False)] * len(METRICS),
            ]
        lines[c["label"]][3 + METRICS.index(c["metric"])] = _diff_cell(c["metric"], r)
    names = {"best": "the best row of the group", "baseline": "the baseline"}
    return [
        (f"Paired differences, each row minus {names.get(kind, kind)}: {label}", head, list(lines.values()))
        for (kind, label), lines in tables.items()
    ]


def runs_list(report: Report) -> list[str]:
    """One line per run read: folder, what it is, when and by which version, what auto chose."""
    out = []
    for run in report.runs:
        i = run.identity
        parts = [f"{run.dir}", f"{i['method']} on {i['variant']} ({i['split']}) of {i['data'] or '?'}"]
        parts.append(f"seed {i['seed'] or '? (not recorded)'}, mrirecon {i['version'] or '?'}")
        parts.append(f"made {run.summary.get('created') or '? (not recorded)'}")
        if i["checkpoint"]:
            epoch = (run.summary.get("checkpoint_info") or {}).get("epoch")
            parts.append(f"checkpoint {i['checkpoint']} ({i['model_config'] or 'model ?'}, epoch {epoch})")
        chosen = _chosen_text(run.summary)
        if chosen:
            parts.append(f"auto chose {chosen}")
        out.append("; ".join(parts))
    return out


def _chosen_text(summary: dict[str, Any]) -> str:
    """'lam 0.0123 (per slice 0.01-0.015; rule: discrepancy principle)' for each data-chosen setting."""
    texts = []
    rules: dict[str, Any] = summary["rule"] if isinstance(summary.get("rule"), dict) else {}
    for key, value in (summary.get("chosen") or {}).items():
        if not isinstance(value, dict):
            continue
        if isinstance(value.get("counts"), dict):  # labels per slice, e.g. the rule of an auto weight
            counts = ", ".join(f"{label} on {n} slice{'s' if n != 1 else ''}" for label, n in value["counts"].items())
            texts.append(f"{key}: {counts}")
            continue
        per = [float(v) for v in value.get("per_slice") or [] if isinstance(v, (int, float))]
        rule = value.get("rule") or rules.get(key) or (summary["rule"] if isinstance(summary.get("rule"), str) else "")
        details = [f"per slice {min(per):.4g}-{max(per):.4g}"] if per else []
        details += [f"rule: {rule}"] if rule else []
        mean = value.get("mean")
        text = f"{key} {mean:.4g}" if isinstance(mean, (int, float)) else f"{key} {mean}"
        texts.append(text + (f" ({'; '.join(details)})" if details else ""))
    return ", ".join(texts)


# ------------------------------------------------------------------------------------------ markdown
def _md_table(head: Sequence[str], lines: Sequence[Sequence[tuple[str, bool]]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += [
        "| " + " | ".join(f"**{t}**" if bold else t.replace("|", "\\|") for t, bold in line) + " |" for line in lines
    ]
    return out


def comparisons_by_group(report: Report) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    by: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for c in report.comparisons:
        by[group_of(c)].append(c)
    return by


def warnings(report: Report) -> list[str]:
    """Each distinct warning of the rows, with the rows it concerns."""
    found: dict[str, list[str]] = defaultdict(list)
    for row in report.table:
        for w in row["warnings"]:
            found[w].append(f"{row['label']} on {row['variant']} ({row['data_label']})")
    return [f"{w}: {', '.join(rows)}" for w, rows in found.items()]


def meta(report: Report) -> str:
    """What the report covers, in one paragraph."""
    pooled = f" Rows pooled over {', '.join(report.pool)} (pool=), per item mean over the runs." if report.pool else ""
    return (
        f"Level: {report.level} ({CONVENTIONS[report.level]}). {len(report.table)} rows from {len(report.runs)} "
        f"reconstruct runs; a row is one data file (path and content), split, variant, method and parameters, "
        f"checkpoint, seed, code version and metric convention.{pooled} Skipped: {len(report.skipped)}. "
        f"{REFERENCE_NOTE}"
    )


def markdown(report: Report) -> str:
    """results.md: per group its results table and paired comparisons; warnings, skipped runs and
    the runs covered."""
    md = [f"# {report.title}", "", meta(report), ""]
    md += [f"- warning: {w}" for w in warnings(report)] + ([""] if warnings(report) else [])
    comps = comparisons_by_group(report)
    for heading, rows in groups(report.table):
        md += [f"## {heading}", "", f"Level: {report.level}", ""]
        md += [*_md_table(*group_table(report, rows)), ""]
        for caption, head, lines in comparison_tables(comps.get(group_of(rows[0]), [])):
            md += [f"{caption}:", "", *_md_table(head, lines), ""]
    md += [table_note(report.level), "", COMPARISON_NOTE, ""]
    md += [UNCERTAINTY_NOTE, ""] if any(r.get("has_std") for r in report.table) else []
    if report.skipped:
        md += ["## Skipped", "", *(f"- {s.path}: {s.reason}" for s in report.skipped), ""]
    md += ["## Runs", "", *(f"- {line}" for line in runs_list(report)), ""]
    return "\n".join(md)


# ------------------------------------------------------------------------------------------ HTML
