"""summary.json of a `mrirecon reconstruct` run: the record of one reconstructed slice
(`SliceRecord`), the facts of the run besides its slices (`RunFacts`), the per-slice values
gathered from the records (`SliceTable`) and the summary built from them (`summary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mrirecon import __version__
from mrirecon.evaluation import metrics, uncertainty
from mrirecon.io import provenance
from mrirecon.physics.model_error import FRACTION_LIMIT, RATIO_LIMIT

Chosen = float | str  # one slice's value of a setting chosen from the data (a number, or a rule's label)


@dataclass(frozen=True)
class SliceRecord:
    """One reconstructed slice, as reconstruct's batch loop yields it.

    Args:
        position: its place in the run's outputs (row of recon.h5, image of recon.cfl), 0, 1, ...
        index: the slice's index in the data file.
        subject: the slice's subject (None: the file records none).
        volume: the slice's source volume (file; None: the file records no subjects).
        recon: the reconstruction (X, Y) complex64, cropped to the run's image size.
        reference: the reference (X, Y) complex, cropped alike (the zero-filled image where the
            data have no reference).
        metrics: {'nrmse', 'psnr', 'ssim'} of recon against reference (NaN without a reference).
        seconds: reconstruction time of the slice (its batch's time / batch size).
        consistency: data consistency ||A x_hat - y||_2 / ||y||_2 on the measured samples.
        acceleration: acquired k-space locations / measured locations of the slice's mask.
        noise_std: the noise std per k-space sample the slice was reconstructed with.
        chosen: the settings the method chose from this slice's data (e.g. lam: auto, its rule).
        rss: fastMRI's reconstruction_rss (X, Y) float32 of the slice, cropped alike (None: the
            file has none).
        rss_metrics: {'nrmse', 'psnr', 'ssim'} of recon against rss (None without rss).
        model_error: the calibration check's residual / noise (physics/model_error.py; NaN:
            no fully sampled calibration square to check).
        model_error_fires: whether the check fires (the maps do not explain the data).
        std: the per-pixel std (X, Y) float32 of a sampling method's samples about recon,
            cropped alike (None: a method of one image).
        uncertainty: {'std_spearman', 'std_coverage'} of std against the error
            (evaluation/uncertainty.py; None without std or without a reference).
    """

    position: int
    index: int
    subject: int | None
    recon: np.ndarray
    reference: np.ndarray
    metrics: dict[str, float]
    seconds: float
    consistency: float
    acceleration: float
    noise_std: float
    chosen: dict[str, Chosen] = field(default_factory=dict)
    volume: int | None = None
    rss: np.ndarray | None = None
    rss_metrics: dict[str, float] | None = None
    model_error: float = float("nan")
    model_error_fires: bool = False
    std: np.ndarray | None = None
    uncertainty: dict[str, float] | None = None


@dataclass(frozen=True)
class RunFacts:
    """What summary.json, recon.h5 and the figures say about a run besides its slices."""

    method: str
    variant: str
    bits: int | None
    scale: float
    split: str
    data_path: str  # as configured (data.path); summary.json records it resolved, with its content id
    method_config: dict[str, Any]
    checkpoint: str | None  # absolute path
    checkpoint_info: dict[str, Any] | None  # provenance.checkpoint_record
    seed: int
    overrides: list[str]
    hardware: dict[str, Any]
    has_reference: bool
    shape: tuple[int, int]  # the images' (X, Y) in every output
    cropped: bool  # centre-cropped to the file's recon size (fastMRI)
    noise_definition: str  # where the noise std comes from
    prewhitened: bool
    coil_compression: str
    param_units: dict[str, str]  # Method.units: the unit of parameters named alike across methods
    mask: str = ""  # the kind of the data's masks (preprocess's `mask` attribute; '' when not recorded)
    has_rss: bool = False  # the data carry fastMRI's reconstruction_rss (recon.h5 stores it as `rss`)


class SliceTable:
    """The per-slice values summary.json needs, gathered from the records in order, and the
    first `keep` records themselves (for the figures)."""

    def __init__(self, keep: int = 0) -> None:
        self.keep = keep
        self.shown: list[SliceRecord] = []
        self.values: dict[str, list[float]] = {k: [] for k in (*metrics.NAMES, "seconds")}
        self.consistency: list[float] = []
        self.noise_std: list[float] = []
        self.acceleration: list[float] = []
        self.chosen: dict[str, list[Chosen]] = {}
        self.rss: dict[str, list[float]] = {k: [] for k in metrics.NAMES}
        self.model_error: list[float] = []
        self.model_error_fires: list[bool] = []
        self.uncertainty: dict[str, list[float]] = {}  # per slice, for a method that gives a std

    def __len__(self) -> int:
        return len(self.consistency)

    def add(self, record: SliceRecord) -> None:
        """Take in the next record."""
        for key in metrics.NAMES:
            self.values[key].append(record.metrics[key])
        self.values["seconds"].append(record.seconds)
        self.consistency.append(record.consistency)
        self.noise_std.append(record.noise_std)
        self.acceleration.append(record.acceleration)
        for key, value in record.chosen.items():
            self.chosen.setdefault(key, []).append(value)
        for key, value in (record.rss_metrics or {}).items():
            self.rss[key].append(value)
        self.model_error.append(record.model_error)
        self.model_error_fires.append(record.model_error_fires)
        for key, value in (record.uncertainty or {}).items():
            self.uncertainty.setdefault(key, []).append(value)
        if len(self.shown) < self.keep:
            self.shown.append(record)


def chosen_summary(values: list[Chosen]) -> dict[str, Any]:
    """summary.json's entry of one chosen setting: per slice, with the mean of numbers or the
    count of each value of labels (e.g. the rule that chose an auto weight)."""
    if all(isinstance(v, str) for v in values):
        return {"counts": {v: values.count(v) for v in sorted(set(values))}, "per_slice": values}
    return {"mean": float(np.mean([float(v) for v in values])), "per_slice": values}


def slice_statistics(table: SliceTable) -> dict[str, Any]:
    """Mean, sample std (ddof 1) and non-finite count of each metric and of seconds over the
    slices: NaN when any slice's value is not finite (counted in non_finite), never a mean over
    the survivors, as in evaluate's tables."""
    values = {k: np.array(v, dtype=np.float64) for k, v in table.values.items()}
    return {
        "mean": {k: float(np.mean(v)) for k, v in values.items()},
        "std": {k: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for k, v in values.items()},
        "std_ddof": 1,
        "non_finite": {k: int(np.sum(~np.isfinite(v))) for k, v in values.items()},
    }


def slice_facts(table: SliceTable, facts: RunFacts) -> dict[str, Any]:
    """summary.json's entries of what was measured or chosen per slice, with their definitions."""
    return {
        "data_consistency": {
            "mean": float(np.mean(table.consistency)),
            "max": float(np.max(table.consistency)),
            "definition": "||A x_hat - y||_2 / ||y||_2 on the measured samples",
        },
        "noise_std": {
            "mean": float(np.mean(table.noise_std)),
            "per_slice": table.noise_std,
            "definition": facts.noise_definition,
        },
        "prewhitened": facts.prewhitened,
        "coil_compression": facts.coil_compression,
        "model_error": {
            "per_slice": table.model_error,
            "fires": table.model_error_fires,
            "definition": "the calibration check of the coil maps (physics/model_error.py): residual of the fully "
            f"sampled calibration region under the maps / its noise expectation; fires above {RATIO_LIMIT:g} with "
            f"more than {FRACTION_LIMIT:.2%} of the calibration energy; NaN: no calibration square to check",
        },
        "chosen": {key: chosen_summary(v) for key, v in table.chosen.items()},
        "mask": facts.mask,
        "acceleration": {
            "mean": float(np.mean(table.acceleration)),
            "per_slice": table.acceleration,
            "definition": "acquired k-space locations (padding, e.g. fastMRI's, excluded) / measured locations of "
            "each slice's mask",
        },
    }


def uncertainty_record(table: SliceTable) -> dict[str, Any]:
    """summary.json's `uncertainty` (only for a method that gives a per-pixel std): per measure
    the mean over the slices (NaN when any slice's is NaN), its per-slice values and the
    definitions; empty otherwise."""
    if not table.uncertainty:
        return {}
    values = {k: np.array(v, dtype=np.float64) for k, v in table.uncertainty.items()}
    return {
        "uncertainty": {
            "mean": {k: float(np.mean(v)) for k, v in values.items()},
            "per_slice": table.uncertainty,
            "definition": uncertainty.DEFINITION,
        }
    }


def reference_record(table: SliceTable, facts: RunFacts) -> dict[str, Any]:
    """summary.json's `references`: the images the run was measured against (metrics.csv: the
    SENSE reference; with the data's fastMRI reconstruction_rss also `rss`, in recon.h5, with its
    mean metrics, what `evaluate reference=auto` uses)."""
    out: dict[str, Any] = {
        "sense": "metrics.csv and recon.h5 imgs: the SENSE combination of the fully sampled k-space (zero outside "
        "the maps' support)"
    }
    if facts.has_rss and table.rss["psnr"]:
        values = {k: np.array(v, dtype=np.float64) for k, v in table.rss.items()}
        out["rss"] = {
            "definition": "recon.h5 rss: the source's reconstruction_rss (fastMRI), metrics of |recon| against it",
            "mean": {k: float(np.mean(v)) for k, v in values.items()},
        }
    return out


def summary(facts: RunFacts, table: SliceTable, objective: str) -> dict[str, Any]:
    """summary.json: the run (method, data, config essentials, provenance), the statistics of the
    slices, the metric convention, and `objective` with the mean that the run returns."""
    result = {
        "method": facts.method,
        "variant": facts.variant,
        "bits": facts.bits,
        "scale": facts.scale,
        "split": facts.split,
        **provenance.data_record(facts.data_path),  # data_path (absolute) and data_id (content)
        "num_slices": len(table),
        **slice_statistics(table),
        "metric_convention": metrics.CONVENTION,
        "method_config": facts.method_config,
        "param_units": facts.param_units,
        "checkpoint": facts.checkpoint,
        "seed": facts.seed,
        "created": provenance.now(),
        "overrides": facts.overrides,
        "hardware": facts.hardware,
        "mrirecon_version": __version__,
        "checkpoint_info": facts.checkpoint_info,
        "has_reference": facts.has_reference,
        "image_size": {
            "shape": list(facts.shape),
            "definition": "images (recon.h5, metrics, figures) centre-cropped to the file's recon size (fastMRI)"
            if facts.cropped
            else "images on the whole k-space grid",
        },
        **slice_facts(table, facts),
        "references": reference_record(table, facts),
        **uncertainty_record(table),
    }
    result["objective"] = {"metric": objective, "value": result["mean"][objective]}
    return result
