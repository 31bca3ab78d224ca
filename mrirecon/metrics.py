"""Image-quality metrics, one convention for every table (README, "Metrics").

Computed per slice on magnitude images, reference |x| and reconstruction |x_hat|, with no
rescaling of the reconstruction: NRMSE = || |x_hat| - |x| ||_2 / || |x| ||_2; PSNR and SSIM from
scikit-image with data_range = max |x| of the reference.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

CONVENTION = (
    "per slice on magnitude images, no rescaling; NRMSE = || |x_hat| - |x| ||_2 / || |x| ||_2; "
    "PSNR (dB) and SSIM (skimage.metrics.structural_similarity, default 7x7 window) with "
    "data_range = max |x| of the reference"
)
NAMES = ("nrmse", "psnr", "ssim")


def nrmse(recon: np.ndarray, reference: np.ndarray) -> float:
    """Normalised RMSE of magnitudes; recon and reference (X, Y), real or complex."""
    ref, rec = np.abs(reference).astype(np.float64), np.abs(recon).astype(np.float64)
    return float(np.linalg.norm(rec - ref) / np.linalg.norm(ref))


def psnr(recon: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of magnitudes with data_range = max |reference|."""
    ref, rec = np.abs(reference).astype(np.float64), np.abs(recon).astype(np.float64)
    return float(peak_signal_noise_ratio(ref, rec, data_range=float(ref.max())))


def ssim(recon: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of magnitudes with data_range = max |reference|."""
    ref, rec = np.abs(reference).astype(np.float64), np.abs(recon).astype(np.float64)
    return float(structural_similarity(ref, rec, data_range=float(ref.max())))


def slice_metrics(recon: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """All metrics of one slice: {'nrmse', 'psnr', 'ssim'}."""
    return {"nrmse": nrmse(recon, reference), "psnr": psnr(recon, reference), "ssim": ssim(recon, reference)}
