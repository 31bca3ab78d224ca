"""evaluate's uncertainty figure (uncertainty.png): for each row of a method that samples a
posterior (recon.h5 holds its per-pixel `std`), one slice's reference, mean of samples, |error|
and std side by side (docs/statistics.md, "Uncertainty")."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.errors import UserError
from mrirecon.evaluation.figures import uncertainty_figure

NAME = "uncertainty.png"
MAX_ROWS = 8  # rows of the figure (the first rows of the table with a std, best first per group)


def read_std_slice(path: Path, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, recon, std) (X, Y) of slice `index` of a recon.h5 holding `std` (checked by
    runs.load); a read failure is a UserError."""
    try:
        with open_hdf5(path) as h5:
            k = int(np.flatnonzero(h5["slices"][()] == index)[0])
            return h5["imgs"][k], h5["recon"][k], h5["std"][k]
    except (OSError, KeyError, IndexError) as exc:
        raise UserError(f"runs: {path} is unreadable ({str(exc).splitlines()[0] if str(exc) else exc})") from None


def std_rows(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's rows whose first run's recon.h5 holds a std (at most MAX_ROWS)."""
    shown = []
    for row in table:
        run = row["members"][0]
        if row.get("has_std") and run.recon is not None:
            with open_hdf5(run.recon) as h5:
                if "std" in h5:
                    shown.append(row)
    return shown[:MAX_ROWS]


def uncertainty_figures(table: list[dict[str, Any]], stage: Path) -> list[tuple[str, str, Path]]:
    """stage/uncertainty.png (the first slice of each sampling row's first run, with its Spearman
    and coverage on that slice) and its report entry; nothing when no row has a std."""
    rows = std_rows(table)
    if not rows:
        return []
    panels = []
    for row in rows:
        run = row["members"][0]
        index = int(run.slices[0])
        k = 0
        measures = ", ".join(
            f"{name.removeprefix('std_')} {run.per_slice[name][k]:.3f}"
            for name in ("std_spearman", "std_coverage")
            if name in run.per_slice
        )
        title = "\n".join(line for part in row["label"].split(" · ") for line in textwrap.wrap(part, 30))
        label = f"{title}\n{row['variant']} · slice {index}" + (f"\n{measures}" if measures else "")
        panels.append((label, *read_std_slice(run.recon, index)))
    path = stage / NAME
    uncertainty_figure(panels, path)
    caption = (
        "Methods that sample a posterior: per row (its first run) one slice's reference, the mean of the samples "
        "(the reconstruction), | |mean| - |reference| | x5 and the per-pixel std of the samples x5 on the same grey "
        "scale, with the slice's Spearman correlation of std and |error| and its coverage of |error| <= 2 std over "
        "the object (docs/statistics.md)"
    )
    return [("Uncertainty", caption, path)]
