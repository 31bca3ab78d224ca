"""How well a sampling method's per-pixel std predicts its error (docs/statistics.md, "Uncertainty").

A method that draws several images from a posterior gives their mean x_hat and the per-pixel
std of the samples about it (Method.reconstruct_with_std). Per slice, over the pixels of the
object (`support`: the reference's magnitude at least SUPPORT_FRACTION of its max; this lies
inside the coil maps' support, where the SENSE reference is defined, and leaves out the
background, where a zero std and a zero error would agree trivially and make any std look
informative), with the error e = | |x_hat| - |x| | on magnitudes as the metrics take it:

- std_spearman: Spearman's rank correlation of std and e (ties: average ranks): 1 when the
  pixels the std ranks most uncertain are those with the largest error; NaN when either is
  constant over the support (e.g. a zero std);
- std_coverage: the fraction of the support's pixels with e <= 2 std; a calibrated Gaussian
  posterior of real images covers 0.954 (a std too small: less; too large: more).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

NAMES = ("std_spearman", "std_coverage")
SUPPORT_FRACTION = 0.1  # pixels with |reference| >= this fraction of its max form the object
COVERAGE_WIDTH = 2.0  # e <= COVERAGE_WIDTH * std counts as covered
RANGES = {"std_spearman": (-1.0, 1.0), "std_coverage": (0.0, 1.0)}
DEFINITION = (
    "over the pixels of the object (|reference| >= "
    f"{SUPPORT_FRACTION:g} x its max, inside the coil maps' support), with the error e = | |x_hat| - |reference| | "
    "(magnitudes, as the metrics) and std the per-pixel std of the method's samples about their mean x_hat: "
    "std_spearman = Spearman's rank correlation of std and e (NaN when either is constant there); "
    f"std_coverage = the fraction of those pixels with e <= {COVERAGE_WIDTH:g} std (a calibrated Gaussian "
    "posterior of real images: 0.954)"
)


def support(reference: np.ndarray) -> np.ndarray:
    """The object's pixels (X, Y) bool: |reference| >= SUPPORT_FRACTION * max |reference|
    (all False for an all-zero reference)."""
    magnitude = np.abs(np.asarray(reference))
    peak = float(magnitude.max()) if magnitude.size else 0.0
    if not peak > 0:
        return np.zeros(magnitude.shape, dtype=bool)
    return np.asarray(magnitude >= SUPPORT_FRACTION * peak)


def uncertainty_metrics(recon: np.ndarray, reference: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """{'std_spearman', 'std_coverage'} of one slice: recon and reference (X, Y) (complex or
    real), std (X, Y) real >= 0; NaN when the support is empty or a value is not finite."""
    recon, reference, std = np.asarray(recon), np.asarray(reference), np.asarray(std)
    if not recon.shape == reference.shape == std.shape:
        raise ValueError(f"std: shape {std.shape}, recon {recon.shape} and reference {reference.shape} must agree")
    inside = support(reference)
    error = np.abs(np.abs(recon) - np.abs(reference))[inside].astype(np.float64)
    spread = std[inside].astype(np.float64)
    nan = {name: float("nan") for name in NAMES}
    if not inside.any() or not (np.isfinite(error).all() and np.isfinite(spread).all()):
        return nan
    covered = float(np.mean(error <= COVERAGE_WIDTH * spread))
    if np.ptp(error) == 0 or np.ptp(spread) == 0:
        return {"std_spearman": float("nan"), "std_coverage": covered}
    rho = float(spearmanr(spread, error).statistic)
    return {"std_spearman": rho, "std_coverage": covered}
