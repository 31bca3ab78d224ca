"""Rendering of results: CSV and markdown tables, and one self-contained HTML report page
(inline CSS, PNGs embedded as base64, no scripts, nothing fetched from the network)."""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrirecon.metrics import CONVENTION
from mrirecon.metrics import NAMES as METRICS

COMPARISON_COLUMNS = (
    "slices",
    "subjects",
    "mean_diff",
    "ci_low",
    "ci_high",
    "ci_low_subjects",
    "ci_high_subjects",
    "p",
    "resolved",
)
TABLE_NOTE = (
    f"Metrics: {CONVENTION}. Mean and sample std (ddof=1) over slices; slices, subjects: numbers of slices and of "
    "subjects (empty: the data file records none); R: mean effective acceleration (pixels / measured k-space "
    "locations); seconds_mean: mean reconstruction time per slice. best: * = best mean PSNR of its data file, "
    "split and variant, and its paired PSNR difference to every other row is resolved; tied = the best row and "
    "every row whose difference to it is not resolved."
)
COMPARISON_NOTE = (
    "Paired differences (method minus reference) over the slices both were run on: mean, 95 % bootstrap interval "
    "(expanded percentile, 10,000 resamples of slices; of subjects, as clusters, when the data file records "
    "them: then the interval shown and the decision are over subjects) and the two-sided Wilcoxon signed-rank p-value over slices (nan: fewer than 2 "
    "slices; 1: all differences 0). Bold: resolved, the interval excludes 0 and p < 0.05. The smallest two-sided "
    "p is 2 / 2^slices, so fewer than 6 slices resolve nothing (3 slices: p >= 0.25)."
)


def results_columns(params: Sequence[str]) -> list[str]:
    """The columns of results.csv and results.md."""
    return [
        "data",
        "split",
        "variant",
        "method",
        *params,
        "slices",
        "subjects",
        "R",
        *(f"{m}_{a}" for m in METRICS for a in ("mean", "std")),
        "seconds_mean",
        "best",
    ]


def fmt(key: str, value: Any) -> str:
    """A table cell: PSNR 2 decimals, other metrics 4, seconds and parameters 4 significant digits."""
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return ""
        if key.startswith("psnr"):
            return f"{value:.2f}"
        if key.startswith(METRICS):
            return f"{value:.4f}"
        if key == "R":
            return f"{value:.2f}"
        return f"{value:.4g}"  # seconds and swept parameters (lam 3e-05, not 0.0000)
    return "" if value is None else str(value)


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


def comparison_rows(
    comparisons: Sequence[dict[str, Any]], params: Sequence[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and flat rows of comparisons.csv."""
    columns = [
        "data",
        "split",
        "variant",
        "method",
        *params,
        "reference",
        "reference_label",
        "metric",
        *COMPARISON_COLUMNS,
    ]
    rows = []
    for c in comparisons:
        r = c["result"]
        rows.append(
            {
                **c,
                "slices": r.slices,
                "subjects": "" if r.subjects is None else r.subjects,
                "mean_diff": r.mean,
                "ci_low": r.low,
                "ci_high": r.high,
                "ci_low_subjects": r.low_subjects,
                "ci_high_subjects": r.high_subjects,
                "p": r.p,
                "resolved": str(r.resolved).lower(),
            }
        )
    return columns, rows


def _diff_cell(metric: str, r: Any) -> tuple[str, bool]:
    """'+1.23 [+0.80, +1.70] p=0.25' (the interval over subjects when recorded), and resolved."""
    digits = 2 if metric == "psnr" else 4
    low, high = (r.low, r.high) if r.subjects is None else (r.low_subjects, r.high_subjects)
    if not np.isfinite(r.mean):
        return "", False
    return f"{r.mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}] p={r.p:.2g}", r.resolved


def _comparison_table(comparisons: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """One line per (row, reference): variant, split, method, vs, slices, subjects, a cell per metric."""
    head = ["variant", "split", "method", "vs", "slices", "subjects", *(f"{m} difference" for m in METRICS)]
    lines: dict[tuple, list[tuple[str, bool]]] = {}
    for c in comparisons:
        key = (c["data"], c["split"], c["variant"], c["label"], c["reference"], c["reference_label"])
        r = c["result"]
        if key not in lines:
            vs = f"{c['reference']}: {c['reference_label']}"
            subjects = "" if r.subjects is None else str(r.subjects)
            lines[key] = [
                (c["variant"], False),
                (c["split"], False),
                (c["label"], False),
                (vs, False),
                (str(r.slices), False),
                (subjects, False),
                *[("", False)] * len(METRICS),
            ]
        lines[key][6 + METRICS.index(c["metric"])] = _diff_cell(c["metric"], r)
    return head, list(lines.values())


def markdown(table: Sequence[dict[str, Any]], params: Sequence[str], comparisons: Sequence[dict[str, Any]]) -> str:
    """results.md: the results table, its note, and the paired comparisons."""
    cols = results_columns(params)
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(fmt(c, row[c]) for c in cols) + " |" for row in table]
    md += ["", TABLE_NOTE, ""]
    if comparisons:
        head, lines = _comparison_table(comparisons)
        md += ["## Paired comparisons", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        md += ["| " + " | ".join(f"**{t}**" if bold else t for t, bold in line) + " |" for line in lines]
        md += ["", COMPARISON_NOTE, ""]
    return "\n".join(md)


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


def _html_table(head: Sequence[str], lines: Sequence[Sequence[tuple[str, bool]]]) -> str:
    out = ["<div class='wide'><table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for line in lines:
        cells = (f"<td><b>{html.escape(t)}</b></td>" if bold else f"<td>{html.escape(t)}</td>" for t, bold in line)
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
div.wide { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #eef; } td:nth-child(-n+4) { text-align: left; }
p.note { font-size: 0.8em; color: #555; max-width: 75em; }
figure { margin: 0.8em 0; } figcaption { font-size: 0.8em; color: #555; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def html_report(
    title: str,
    table: Sequence[dict[str, Any]],
    params: Sequence[str],
    comparisons: Sequence[dict[str, Any]],
    figures: Sequence[tuple[str, str, Path]],
) -> str:
    """report.html: the results table, the paired comparisons, and figures (section, caption, PNG
    path) embedded as base64; one file, readable offline."""
    parts = [
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if table:
        cols = results_columns(params)
        parts += [
            "<h2>Results</h2>",
            _html_table(cols, [[(fmt(c, row[c]), c == "best" and row[c] == "*") for c in cols] for row in table]),
            f"<p class='note'>{html.escape(TABLE_NOTE)}</p>",
        ]
    if comparisons:
        head, lines = _comparison_table(comparisons)
        parts += [
            "<h2>Paired comparisons</h2>",
            _html_table(head, lines),
            f"<p class='note'>{html.escape(COMPARISON_NOTE)}</p>",
        ]
    section = None
    for name, caption, path in figures:
        if name != section:
            parts.append(f"<h2>{html.escape(name)}</h2>")
            section = name
        parts.append(f"<figure>{_img(path)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
