"""report.html: one self-contained page (inline CSS, PNGs embedded as base64, no scripts,
nothing fetched from the network) from evaluate's `Report`, with the tables and notes of
`report.py`."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from mrirecon.evaluation.report import (
    COMPARISON_NOTE,
    UNCERTAINTY_NOTE,
    Report,
    comparison_tables,
    comparisons_by_group,
    group_table,
    groups,
    meta,
    runs_list,
    table_note,
    warnings,
)
from mrirecon.evaluation.results import group_of

CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; background: #fff; max-width: 110em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.0em; margin: 1.2em 0 0.3em; }
div.wide { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #eef; } td.t { text-align: left; }
p.note, p.meta { font-size: 0.8em; color: #555; max-width: 75em; }
ul.warn li { color: #a30; font-size: 0.85em; } ul.runs li { font-size: 0.75em; color: #444; }
figure { margin: 0.8em 0; } figcaption { font-size: 0.8em; color: #555; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'


TEXT_COLUMNS = ("method", "run", "row", "units", "best", "warning")  # left-aligned; numbers right-aligned


def _html_table(head: Sequence[str], lines: Sequence[Sequence[tuple[str, bool]]]) -> str:
    out = ["<div class='wide'><table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for line in lines:
        cells = []
        for h, (t, bold) in zip(head, line):
            text = f"<b>{html.escape(t)}</b>" if bold else html.escape(t)
            cells.append(f"<td class='t'>{text}</td>" if h in TEXT_COLUMNS else f"<td>{text}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "\n".join(out)


def _list(items: Sequence[str], kind: str) -> str:
    return f"<ul class='{kind}'>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def _figures(figures: Sequence[tuple[str, str, Path]]) -> list[str]:
    parts, section = [], None
    for name, caption, path in figures:
        if name != section:
            parts.append(f"<h2>{html.escape(name)}</h2>")
            section = name
        parts.append(f"<figure>{_img(path)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    return parts


def html_report(report: Report) -> str:
    """report.html: what it covers, warnings and skipped runs, the summary plot, per group the
    results table and paired comparisons, the figures, and the list of runs; one offline file."""
    e = html.escape
    parts = [
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{e(report.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{e(report.title)}</h1>",
        f"<p class='meta'>{e(meta(report))}</p>",
    ]
    if warnings(report):
        parts += ["<h2>Warnings</h2>", _list(warnings(report), "warn")]
    if report.skipped:
        parts += ["<h2>Skipped runs</h2>", _list([f"{s.path}: {s.reason}" for s in report.skipped], "warn")]
    if report.summary_figure is not None:
        caption = f"Mean of each metric with its 95 % interval over the units, per row, grouped by variant and data file (level {report.level})"
        parts += [
            "<h2>Summary</h2>",
            f"<figure>{_img(report.summary_figure)}<figcaption>{e(caption)}</figcaption></figure>",
        ]
    comps = comparisons_by_group(report)
    if report.table:
        parts.append(f"<h2>Results (level {e(report.level)})</h2>")
    for heading, rows in groups(report.table):
        parts += [f"<h3>{e(heading)}</h3>", _html_table(*group_table(report, rows))]
        for caption, head, lines in comparison_tables(comps.get(group_of(rows[0]), [])):
            parts += [f"<p class='note'>{e(caption)}:</p>", _html_table(head, lines)]
    if report.table:
        parts += [f"<p class='note'>{e(table_note(report.level))}</p>", f"<p class='note'>{e(COMPARISON_NOTE)}</p>"]
    if any(r.get("has_std") for r in report.table):
        parts.append(f"<p class='note'>{e(UNCERTAINTY_NOTE)}</p>")
    parts += _figures(report.figures)
    if report.runs:
        parts += [f"<h2>Runs ({len(report.runs)})</h2>", _list(runs_list(report), "runs")]
    parts.append("</body></html>\n")
    return "\n".join(parts)
