"""Matplotlib figures (Agg backend, written atomically as PNG)."""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mrirecon.io import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def reconstruction_figure(
    reference: np.ndarray, recon: np.ndarray, title: str, path: str | os.PathLike, error_gain: float = 5.0,
    reference_label: str = "reference",
) -> None:
    """Reference | reconstruction | difference (x error_gain) of one slice, magnitudes (X, Y)."""
    ref, rec = np.abs(reference), np.abs(recon)
    vmax = float(ref.max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.6))
    panels = [(ref, reference_label), (rec, "reconstruction"),
              (np.abs(rec - ref) * error_gain, f"|difference| x{error_gain:g}")]
    for ax, (img, label) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def comparison_figure(
    rows: Sequence[tuple[str, np.ndarray, Sequence[tuple[str, np.ndarray]]]], path: str | os.PathLike
) -> None:
    """A grid: one row per (row label, reference, [(column label, recon), ...]); magnitudes."""
    ncols = 1 + max(len(cols) for _, _, cols in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.4 * ncols, 2.8 * len(rows)), squeeze=False)
    for r, (label, ref, cols) in enumerate(rows):
        vmax = float(np.abs(ref).max()) or 1.0
        for c, (title, img) in enumerate([("reference", ref), *cols]):
            ax = axes[r, c]
            ax.imshow(np.abs(img), cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
        for c in range(1 + len(cols), ncols):
            axes[r, c].axis("off")
    fig.tight_layout()
    _save(fig, path)
