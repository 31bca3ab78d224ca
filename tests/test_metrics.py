"""metrics.py: the convention (magnitudes, no rescaling, data range = the reference's max), the
per-volume convention of fastMRI's evaluate.py, and undefined values (zero or non-finite
references, a diverging reconstruction) as NaN."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mrirecon.evaluation import metrics


def blob(shape: tuple[int, int] = (24, 20), peak: float = 2.0) -> np.ndarray:
    u, v = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    return peak * np.exp(-3 * (u**2 + v**2))


def test_known_values():
    ref = np.full((8, 8), 2.0)
    rec = ref + 0.2
    assert metrics.nrmse(rec, ref) == pytest.approx(0.1)
    assert metrics.psnr(rec, ref) == pytest.approx(10 * np.log10(2.0**2 / 0.2**2))  # 20 dB
    assert metrics.nrmse(2 * ref, ref) == pytest.approx(1.0)  # no rescaling of the reconstruction


def test_magnitudes_of_complex_images():
    ref = blob().astype(np.complex64) * np.exp(1j * 0.3)
    rec = np.abs(ref) * np.exp(-1j * 1.2)  # the same magnitude, another phase
    values = metrics.slice_metrics(rec, ref)
    assert values["nrmse"] < 1e-6 and values["psnr"] > 100 and values["ssim"] == pytest.approx(1.0)
    assert metrics.psnr(np.abs(ref), ref) == float("inf")  # exact: infinite PSNR, not NaN


def test_data_range_is_the_reference_max_and_matches_scikit_image():
    ref = blob()
    rec = np.abs(ref + np.random.default_rng(0).normal(0, 0.05, ref.shape))
    rec[3, 3] = 10.0  # a hot pixel in the reconstruction does not change the data range
    peak = float(ref.max())
    assert metrics.psnr(rec, ref) == pytest.approx(peak_signal_noise_ratio(ref, rec, data_range=peak))
    assert metrics.ssim(rec, ref) == pytest.approx(structural_similarity(ref, rec, data_range=peak))
    assert metrics.ssim(rec, ref) != pytest.approx(structural_similarity(ref, rec, data_range=float(rec.max())))


@pytest.mark.parametrize(
    "case",
    ["zero reference", "nan reference", "nan recon", "inf recon"],
)
def test_undefined_metrics_are_nan(case):
    ref, rec = blob(), blob() * 0.9
    if case == "zero reference":
        ref = np.zeros_like(ref)
    elif case == "nan reference":
        ref[2, 2] = np.nan
    elif case == "nan recon":
        rec[5, 5] = np.nan
    else:
        rec[5, 5] = np.inf
    values = metrics.slice_metrics(rec, ref)
    assert all(np.isnan(v) for v in values.values()), values
    assert np.isnan(metrics.nrmse(rec, ref)) and np.isnan(metrics.psnr(rec, ref)) and np.isnan(metrics.ssim(rec, ref))


def test_refusals():
    with pytest.raises(ValueError, match="recon: shape"):
        metrics.slice_metrics(np.ones((8, 8)), np.ones((8, 9)))
    with pytest.raises(ValueError, match="reference: images of at least 7x7"):
        metrics.slice_metrics(np.ones((5, 5)), np.ones((5, 5)))
    with pytest.raises(ValueError, match="reference: a volume"):
        metrics.volume_metrics(np.ones((8, 8)), np.ones((8, 8)))


def fastmri_volume(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """fastMRI's fastmri/evaluate.py on magnitude volumes (S, X, Y): NMSE, PSNR and SSIM with
    maxval = gt.max() (its code, with NRMSE = sqrt(NMSE))."""
    maxval = gt.max()
    nmse = np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2
    ssim = sum(structural_similarity(gt[s], pred[s], data_range=maxval) for s in range(gt.shape[0])) / gt.shape[0]
    return {"nrmse": float(np.sqrt(nmse)), "psnr": peak_signal_noise_ratio(gt, pred, data_range=maxval), "ssim": ssim}


def test_volume_metrics_follow_fastmri():
    rng = np.random.default_rng(1)
    ref = np.stack([blob(peak=p) for p in (1.0, 2.0, 4.0)])  # slices of different maxima
    rec = np.abs(ref + rng.normal(0, 0.05, ref.shape))
    got, expected = metrics.volume_metrics(rec, ref), fastmri_volume(ref, rec)
    assert got == pytest.approx(expected, rel=1e-10)
    per_slice = np.mean([metrics.psnr(rec[s], ref[s]) for s in range(3)])
    assert abs(got["psnr"] - per_slice) > 1.0  # the level matters: a per-slice mean is another number
    rec[1, 0, 0] = np.nan  # one failed slice fails the volume
    assert all(np.isnan(v) for v in metrics.volume_metrics(rec, ref).values())
