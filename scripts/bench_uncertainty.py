#!/usr/bin/env python
"""Does a sampling run's std predict its error better than the image itself does? For each
recon.h5 given (written by `mrirecon reconstruct` of a method that samples, so holding `std`),
per slice over the object's pixels (mrirecon/evaluation/uncertainty.py): the Spearman
correlation of the std with |error| and the 2-std coverage (what reconstruct records), and for
contrast the Spearman correlation of the mean image's magnitude |x_hat| with |error| (a std
that only follows the intensity would score the same). Prints one line per slice and the means.

    .venv/bin/python scripts/bench_uncertainty.py RUN_DIR/recon.h5 [...]
"""

from __future__ import annotations

import sys

import h5py
import numpy as np

from mrirecon.evaluation.uncertainty import uncertainty_metrics


def slice_lines(path: str) -> list[tuple[float, float, float]]:
    """(std Spearman, coverage, |x_hat| Spearman) per slice of one recon.h5."""
    out = []
    with h5py.File(path, "r") as h5:
        for k in range(h5["recon"].shape[0]):
            recon, reference, std = h5["recon"][k], h5["imgs"][k], h5["std"][k]
            measured = uncertainty_metrics(recon, reference, std)
            intensity = uncertainty_metrics(recon, reference, np.abs(recon))
            out.append((measured["std_spearman"], measured["std_coverage"], intensity["std_spearman"]))
            print(f"{path} slice {int(h5['slices'][k])}: " + "  ".join(f"{v:.3f}" for v in out[-1]))
    return out


def main(paths: list[str]) -> None:
    """Print the per-slice values and their means over all slices of `paths`."""
    print("per slice: std-error Spearman, coverage (2 std), |x_hat|-error Spearman (intensity baseline)")
    rows = np.array([line for p in paths for line in slice_lines(p)])
    print("mean: " + "  ".join(f"{v:.3f}" for v in rows.mean(0)))


if __name__ == "__main__":
    main(sys.argv[1:])
