"""Matplotlib figures (Agg backend, written atomically as PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mrirecon.io.files import atomic_path


def _save(fig: Figure, path: str | os.PathLike[str], tight: bool = True) -> None:
    """Write `fig` as PNG; `tight` crops to the drawn content (slow for figures of many axes)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight" if tight else None)
    plt.close(fig)


def reconstruction_figure(
    reference: np.ndarray,
    recon: np.ndarray,
    title: str,
    path: str | os.PathLike[str],
    error_gain: float = 5.0,
    reference_label: str = "reference",
    std: np.ndarray | None = None,
) -> None:
    """Reference | reconstruction | difference (x error_gain) of one slice, magnitudes (X, Y),
    and with `std` (X, Y) (a sampling method's per-pixel std; recon its samples' mean) | std x
    error_gain on the difference's grey scale."""
    ref, rec = np.abs(reference), np.abs(recon)
    vmax = float(ref.max()) or 1.0
    panels = [
        (ref, reference_label),
        (rec, "reconstruction" if std is None else "reconstruction (mean of samples)"),
        (np.abs(rec - ref) * error_gain, f"|difference| x{error_gain:g}"),
    ]
    if std is not None:
        panels.append((np.asarray(std) * error_gain, f"std of samples x{error_gain:g}"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.6 if std is None else 3.9))
    for ax, (img, label) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def _bare(ax: Axes) -> None:
    """No ticks or frame, but keep the axis labels (so that a layout engine makes room for them)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def comparison_figure(
    rows: Sequence[tuple[str, np.ndarray, Sequence[tuple[str, np.ndarray]]]],
    path: str | os.PathLike[str],
    error_gain: float | None = 5.0,
) -> None:
    """A grid: for each (row label, reference, [(column title, recon), ...]) a row of magnitudes
    and, if `error_gain`, a row of |recon - reference| x error_gain under it. Column titles may
    span several lines; the constrained layout makes room for them and the row labels."""
    ncols = 1 + max(len(cols) for _, _, cols in rows)
    per = 2 if error_gain else 1
    lines = max(title.count("\n") + 1 for _, _, cols in rows for title, _ in cols)
    size = (2.2 * ncols + 0.4, (2.4 + 0.12 * lines) * len(rows) + (2.3 * len(rows) if error_gain else 0))
    fig, axes = plt.subplots(per * len(rows), ncols, figsize=size, squeeze=False, layout="constrained")
    for r, (label, ref, cols) in enumerate(rows):
        vmax = float(np.abs(ref).max()) or 1.0
        top = axes[per * r]
        for c, (title, img) in enumerate([("reference", ref), *cols]):
            top[c].imshow(np.abs(img), cmap="gray", vmin=0, vmax=vmax)
            top[c].set_title(title, fontsize=7)
        top[0].set_ylabel(label, fontsize=8)
        if error_gain:
            bottom = axes[per * r + 1]
            bottom[0].set_ylabel(f"|error| x{error_gain:g}", fontsize=8)
            for c, (_, img) in enumerate(cols, start=1):
                bottom[c].imshow(np.abs(np.abs(img) - np.abs(ref)) * error_gain, cmap="gray", vmin=0, vmax=vmax)
    for ax in axes.flat:
        _bare(ax)
    _save(fig, path, tight=False)


def uncertainty_figure(
    rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: str | os.PathLike[str], gain: float = 5.0
) -> None:
    """One row per (label, reference, recon, std) (X, Y) of a sampling method's slice: reference |
    mean of the samples | | |mean| - |reference| | x gain | std x gain, all on the reference's grey
    scale, so that where the std is bright the error should be."""
    fig, axes = plt.subplots(len(rows), 4, figsize=(9.2, 2.6 * len(rows) + 0.4), squeeze=False, layout="constrained")
    for r, (label, reference, recon, std) in enumerate(rows):
        ref, rec = np.abs(reference), np.abs(recon)
        vmax = float(ref.max()) or 1.0
        panels = [
            (ref, "reference"),
            (rec, "mean of samples"),
            (np.abs(rec - ref) * gain, f"|error| x{gain:g}"),
            (np.asarray(std) * gain, f"std x{gain:g}"),
        ]
        for ax, (img, title) in zip(axes[r], panels):
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(title, fontsize=7)
            _bare(ax)
        axes[r][0].set_ylabel(label, fontsize=7)
    _save(fig, path, tight=False)


def axis_scale(values: Sequence[float]) -> str:
    """'log' for positive values spanning a decade or more, 'symlog' when such values also
    include 0, else 'linear'."""
    v = np.asarray([float(x) for x in values])
    positive = v[v > 0]
    if positive.size < 2 or np.any(v < 0) or positive.max() / positive.min() < 10:
        return "linear"
    return "symlog" if np.any(v == 0) else "log"


def _set_scale(ax: Axes, values: Sequence[float], axis: str = "x") -> None:
    scale = axis_scale(values)
    setter = ax.set_xscale if axis == "x" else ax.set_yscale
    if scale == "symlog":
        setter("symlog", linthresh=float(min(v for v in values if v > 0)))
    elif scale == "log":
        setter("log")


Band = tuple[np.ndarray, np.ndarray, np.ndarray]  # mean, low, high of a metric along a series


def sweep_figure(
    param: str,
    series: Sequence[tuple[str, Sequence[Any], dict[str, Band]]],
    path: str | os.PathLike[str],
    others: Sequence[tuple[str, str, float | None, dict[str, tuple[float, float, float]]]] = (),
) -> None:
    """Metric vs `param`, one panel per metric: each series (label, x values in increasing order,
    {metric: (mean, low, high)}) is a line with a band from low to high; numeric x values get a log
    axis when they span decades, non-numeric ones are placed in order as categories. `others`:
    settings that are not numbers (e.g. auto) of a series, (series label, value, the number it
    chose or None, {metric: (mean, low, high)}), drawn as a star with an error bar at the chosen
    value, or as a dashed line with a star at the right edge when the choice is not recorded."""
    names = list(series[0][2]) if series else list(others[0][3])
    fig, axes = plt.subplots(
        1,
        len(names),
        figsize=(4.2 * len(names), 3.6 + 0.16 * (len(series) + len(others))),
        squeeze=False,
        layout="constrained",
    )
    all_x = [x for _, xs, _ in series for x in xs]
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in all_x)
    categories = list(dict.fromkeys(str(x) for x in all_x))
    colours: dict[str, Any] = {}
    for ax, name in zip(axes[0], names):
        for text, xs, values in series:
            x = np.asarray(xs, dtype=float) if numeric else np.array([categories.index(str(v)) for v in xs], float)
            mean, low, high = values[name]
            (line,) = ax.plot(x, mean, marker="o", label=text, color=colours.get(text))
            colours[text] = line.get_color()
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        for text, value, chosen, bands in others:
            _other_marker(ax, f"{text}: {param}={value}", chosen if numeric else None, bands[name], colours.get(text))
        if numeric and all_x:
            _set_scale(ax, all_x + [c for _, _, c, _ in others if c is not None and c > 0])
        elif not numeric:
            ax.set_xticks(range(len(categories)), categories)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_xlabel(param)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", fontsize=7)
    fig.suptitle(
        f"sweep over {param} (bands: 95 % interval of the mean over the units; stars: {param} not a number)", fontsize=9
    )
    _save(fig, path)


def _other_marker(ax: Axes, label: str, chosen: float | None, band: tuple[float, float, float], colour: Any) -> None:
    """A non-numeric setting's result: a star at the value it chose, else a dashed level line."""
    mean, low, high = band
    yerr = [[mean - low], [high - mean]] if np.isfinite(low) and np.isfinite(high) else None
    if chosen is not None and chosen > 0:
        ax.errorbar(
            [chosen],
            [mean],
            yerr=yerr,
            marker="*",
            markersize=12,
            color=colour,
            linestyle="none",
            label=f"{label} (chose {chosen:.3g})",
        )
        return
    ax.axhline(mean, color=colour, linestyle="--", linewidth=1, label=label)
    ax.plot([1.0], [mean], marker="*", markersize=12, color=colour, transform=ax.get_yaxis_transform(), clip_on=False)


def summary_figure(
    groups: Sequence[tuple[str, Sequence[tuple[str, dict[str, tuple[float, float, float]]]]]],
    path: str | os.PathLike[str],
    higher_is_better: dict[str, bool] | None = None,
) -> None:
    """A forest plot: a row of panels (one per metric) for each group (heading, [(row label,
    {metric: (mean, low, high)})]), each panel with its own x range, showing every row's mean with
    its interval. Rows without a mean (failed, no reference) read 'no mean'."""
    names = list(groups[0][1][0][1])
    sizes = [len(rows) for _, rows in groups]
    height = sum(0.26 * n + 0.75 for n in sizes) + 0.3
    fig, axes = plt.subplots(
        len(groups),
        len(names),
        figsize=(3.0 * len(names) + 3.8, height),
        squeeze=False,
        gridspec_kw={"height_ratios": [n + 1.5 for n in sizes]},
    )
    for g, (heading, rows) in enumerate(groups):
        pos = np.arange(len(rows), dtype=float)
        for ax, name in zip(axes[g], names):
            band = np.array([v[name] for _, v in rows], dtype=float).reshape(-1, 3)
            mean, low, high = band[:, 0], band[:, 1], band[:, 2]
            ok = np.isfinite(mean)
            err = np.vstack(
                [mean - np.where(np.isfinite(low), low, mean), np.where(np.isfinite(high), high, mean) - mean]
            )
            ax.errorbar(mean[ok], pos[ok], xerr=err[:, ok], fmt="o", color="C0", markersize=4, capsize=2)
            for p in pos[~ok]:
                ax.text(0.02, p, "no mean", transform=ax.get_yaxis_transform(), va="center", fontsize=7, color="#a30")
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_yticks(pos, [label for label, _ in rows] if ax is axes[g][0] else [], fontsize=7)
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="x", labelsize=7)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
            ax.ticklabel_format(axis="x", useOffset=False, style="plain")
            better = (
                ""
                if higher_is_better is None
                else " (higher is better)"
                if higher_is_better[name]
                else " (lower is better)"
            )
            ax.set_title(f"{name}{better}" if g == 0 else name, fontsize=8)
        axes[g][0].set_title(heading, fontsize=8, fontweight="bold", loc="right", x=-0.02)
    fig.tight_layout()
    _save(fig, path)


def heatmap_figure(
    row_param: str,
    col_param: str,
    row_values: Sequence[Any],
    col_values: Sequence[Any],
    grids: dict[str, tuple[np.ndarray, tuple[int, int] | None]],
    title: str,
    path: str | os.PathLike[str],
) -> None:
    """One heat map per metric: grids maps a metric to (values (rows, cols), best cell or None),
    rows are `row_param` values, columns `col_param` values; the best cell is outlined."""
    size = (max(4.0, 1.5 + 0.9 * len(col_values)) * len(grids), 1.6 + 0.6 * len(row_values))
    fig, axes = plt.subplots(1, len(grids), figsize=size, squeeze=False)
    fmt = lambda v: f"{v:g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)  # noqa: E731
    for ax, (name, (values, best)) in zip(axes[0], grids.items()):
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(len(col_values)), [fmt(v) for v in col_values], fontsize=8)
        ax.set_yticks(range(len(row_values)), [fmt(v) for v in row_values], fontsize=8)
        ax.set_xlabel(col_param)
        ax.set_ylabel(row_param)
        ax.set_title(name, fontsize=10)
        finite = values[np.isfinite(values)]
        middle = float(np.median(finite)) if finite.size else 0.0
        for (i, j), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(
                    j, i, f"{v:.4g}", ha="center", va="center", fontsize=7, color="black" if v > middle else "white"
                )
        if best is not None:
            i, j = best
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5))
    fig.suptitle(f"{title} (red: best cell)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def training_figure(
    curves: Sequence[tuple[str, np.ndarray, dict[str, np.ndarray]]], path: str | os.PathLike[str]
) -> None:
    """Per-epoch curves: one panel per column name, one line per run (label, epochs, {column: values})."""
    names = list(dict.fromkeys(name for _, _, cols in curves for name in cols))
    fig, axes = plt.subplots(1, len(names), figsize=(3.8 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for text, epochs, cols in curves:
            if name in cols:
                ax.plot(epochs, cols[name], marker="." if len(epochs) < 50 else None, label=text)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
