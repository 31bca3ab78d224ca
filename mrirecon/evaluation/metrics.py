"""Image-quality metrics, one convention for every table (docs/data.md, "Embedded sample"; docs/statistics.md).

Per slice (what reconstruct writes into metrics.csv), on magnitude images, reference |x| and
reconstruction |x_hat|, with no rescaling of the reconstruction: NRMSE = || |x_hat| - |x| ||_2 /
|| |x| ||_2; PSNR = 10 log10(max|x|^2 / MSE) and SSIM (scikit-image, 7x7 window) with data_range =
max |x| of the reference.

Per volume (fastMRI's `fastmri/evaluate.py`, so numbers sit beside published ones): the same over
a volume's slices stacked (S, X, Y) with data_range = the *volume's* max |x|; NRMSE and PSNR over
all its pixels, SSIM the mean over its slices. The reference is the SENSE image, or where the data
carry it fastMRI's own target `reconstruction_rss` (`evaluate reference=`); `square_crop` is
evaluate.py's crop of both images to the target's width (`evaluate crop=fastmri`).

Undefined values are NaN, never an exception or a number over the survivors: a reference that is
all zero (no scale to normalise by) or an image with a non-finite pixel (a diverging method) gives
NaN for every metric. An exact reconstruction has PSNR = inf.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

CONVENTION = (
    "per slice on magnitude images, no rescaling; NRMSE = || |x_hat| - |x| ||_2 / || |x| ||_2; "
    "PSNR (dB) and SSIM (skimage.metrics.structural_similarity, default 7x7 window) with "
    "data_range = max |x| of the reference"
)
VOLUME_CONVENTION = (
    "per volume (a subject's slices stacked in slice order; fastMRI's evaluate.py) on magnitude images, no "
    "rescaling; NRMSE = || |x_hat| - |x| ||_2 / || |x| ||_2 over the volume (the square root of fastMRI's NMSE); "
    "PSNR (dB) over the volume and SSIM (skimage, 7x7 window) averaged over its slices, both with "
    "data_range = the volume's max |x|"
)
NAMES = ("nrmse", "psnr", "ssim")
SSIM_WINDOW = 7
NAN = float("nan")


def _magnitudes(recon: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """|recon|, |reference| as float64 and the data range max|reference|; None when a metric is
    undefined (a non-finite pixel, or an all-zero reference)."""
    rec, ref = np.abs(np.asarray(recon)).astype(np.float64), np.abs(np.asarray(reference)).astype(np.float64)
    if rec.shape != ref.shape:
        raise ValueError(f"recon: shape {rec.shape} differs from the reference's {ref.shape}")
    if ref.ndim < 2 or min(ref.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"reference: images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels needed, got {ref.shape}")
    if not (np.isfinite(rec).all() and np.isfinite(ref).all()):
        return None
    peak = float(ref.max())
    return (rec, ref, peak) if peak > 0 else None


def _nrmse(rec: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(rec - ref) / np.linalg.norm(ref))


def _psnr(rec: np.ndarray, ref: np.ndarray, peak: float) -> float:
    """10 log10(peak^2 / MSE) over all pixels (skimage's peak_signal_noise_ratio), inf when exact."""
    mse = float(np.mean((rec - ref) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def _ssim(rec: np.ndarray, ref: np.ndarray, peak: float) -> float:
    """Mean over slices of skimage's SSIM (7x7 window) with data_range = peak; rec, ref (..., X, Y)."""
    ref3, rec3 = ref.reshape(-1, *ref.shape[-2:]), rec.reshape(-1, *rec.shape[-2:])
    return float(np.mean([structural_similarity(r, x, data_range=peak) for r, x in zip(ref3, rec3)]))


def nrmse(recon: np.ndarray, reference: np.ndarray) -> float:
    """Normalised RMSE of magnitudes; recon and reference (X, Y), real or complex. NaN if undefined."""
    m = _magnitudes(recon, reference)
    return NAN if m is None else _nrmse(m[0], m[1])


def psnr(recon: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of magnitudes (X, Y) with data_range = max |reference|. NaN if undefined."""
    m = _magnitudes(recon, reference)
    return NAN if m is None else _psnr(*m)


def ssim(recon: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of magnitudes (X, Y) with data_range = max |reference|. NaN if undefined."""
    m = _magnitudes(recon, reference)
    return NAN if m is None else _ssim(*m)


def slice_metrics(recon: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """All metrics of one slice (X, Y): {'nrmse', 'psnr', 'ssim'} (NaN where undefined)."""
    m = _magnitudes(recon, reference)
    if m is None:
        return dict.fromkeys(NAMES, NAN)
    return {"nrmse": _nrmse(m[0], m[1]), "psnr": _psnr(*m), "ssim": _ssim(*m)}


def square_crop(images: np.ndarray) -> np.ndarray:
    """fastMRI evaluate.py's crop of a target and its reconstruction (..., h, w): the centred w x w
    square (fastmri.data.transforms.center_crop, start (n - m) // 2); where h < w, which fastMRI
    refuses, the centred h x h square."""
    h, w = int(np.shape(images)[-2]), int(np.shape(images)[-1])
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return np.asarray(images)[..., top : top + side, left : left + side]


def volume_metrics(recon: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """All metrics of one volume, recon and reference (S, X, Y) in slice order, fastMRI's way:
    data_range = the volume's max |reference|; NaN where undefined."""
    if np.ndim(reference) != 3:
        raise ValueError(f"reference: a volume (S, X, Y) expected, got shape {np.shape(reference)}")
    return slice_metrics(recon, reference)  # the same formulas over all pixels; SSIM averaged over slices
