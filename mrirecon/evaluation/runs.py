"""Run dirs as `evaluate` reads them: found under the given folders, checked whole, and loaded.

A reconstruct run dir holds summary.json, metrics.csv (one row per slice) and recon.h5; a train
run dir holds a metrics.csv of epochs. A run that cannot be used whole (metrics.csv without
summary.json, a truncated or empty metrics.csv, a corrupt recon.h5, ...) raises `Damaged` with
the reason: evaluate lists it as skipped (or refuses it with strict=true), it never guesses.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.data.hdf5_input import HDF5InputError, open_hdf5
from mrirecon.errors import UserError
from mrirecon.evaluation import metrics, uncertainty
from mrirecon.io import provenance
from mrirecon.io.memory import require

METRIC_COLUMNS = ("slice", "subject", "method", *metrics.NAMES, "seconds")  # and `volume` since it is recorded
VALUES = (*metrics.NAMES, "seconds", "R")  # per slice (or volume): the metrics, seconds, acceleration R
# and, where metrics.csv has their columns (a sampling method), uncertainty.NAMES: per slice from
# metrics.csv (against the SENSE reference, whatever `reference`), per volume the mean of its slices'
REFERENCES = ("auto", "rss", "sense")  # evaluate's `reference`: what the metrics compare with
CROPS = ("fastmri",)  # evaluate's `crop` (null: none): fastMRI evaluate.py's square crop


class Damaged(Exception):
    """A run dir that cannot be used; the message is the reason."""


@dataclass(frozen=True)
class Skipped:
    """A run dir left out, and why."""

    path: Path
    reason: str


@dataclass
class Run:
    """One reconstruct run: what it is (identity) and its values per item (slice or volume).

    items: (n,) item ids (slice indices at level slice, volume ids at level volume); units:
    (n,) the independent unit of each item (its subject) or None; values: {name: (n,)} for
    VALUES; slices: the slice indices of the run, in metrics.csv order; volumes: (slices,) the
    source volume (file) of each slice (the subject where metrics.csv records no volume) or None;
    per_slice: {name: (slices,)} as in metrics.csv; recon: recon.h5 or None; reference: the image
    the values compare with ('sense', or 'rss': fastMRI's reconstruction_rss), with ', fastMRI
    crop' where evaluate crops as fastMRI's evaluate.py does.
    """

    dir: Path
    summary: dict[str, Any]
    identity: dict[str, Any]
    slices: np.ndarray
    subjects: np.ndarray | None
    items: np.ndarray
    units: np.ndarray | None
    values: dict[str, np.ndarray]
    per_slice: dict[str, np.ndarray]
    recon: Path | None
    warnings: list[str] = field(default_factory=list)
    volumes: np.ndarray | None = None
    reference: str = "sense"


# ------------------------------------------------------------------------------------------ discovery
def discover(paths: list[str]) -> tuple[list[Path], list[Path], list[Skipped]]:
    """Reconstruct run dirs, train run dirs and dirs that look like runs but are incomplete,
    under each path (a run dir itself or a folder of them, e.g. a multirun dir), sorted."""
    recon: list[Path] = []
    train: list[Path] = []
    skipped: list[Skipped] = []
    for text in paths:
        path = Path(text)
        if not path.is_dir():
            raise UserError(f"runs: {path} is not a folder")
        found = sorted({p.parent for name in ("summary.json", "metrics.csv") for p in path.rglob(name)})
        kinds = [(d, _kind(d)) for d in found]
        if not kinds:
            raise UserError(
                f"runs: {path} holds no reconstruct run (summary.json with metrics.csv) and no train "
                "run (metrics.csv of epochs)"
            )
        for d, kind in kinds:
            target = recon if kind == "recon" else train if kind == "train" else None
            if target is not None and d not in target:
                target.append(d)
            elif target is None and all(s.path != d for s in skipped):
                skipped.append(Skipped(d, kind))
    return recon, train, skipped


def _kind(path: Path) -> str:
    """'recon', 'train', or the reason the dir is not a complete run."""
    summary, table = (path / "summary.json").is_file(), (path / "metrics.csv").is_file()
    if summary and table:
        return "recon"
    if summary:
        return "summary.json without metrics.csv (an incomplete reconstruct run)"
    try:
        with open(path / "metrics.csv", newline="") as fh:
            head = fh.readline()
    except OSError as exc:
        return f"metrics.csv is unreadable ({exc.strerror or exc})"
    if head.startswith("epoch,"):
        return "train"
    if head.startswith("slice,"):
        return "metrics.csv without summary.json (the reconstruct run did not finish)"
    return "metrics.csv is empty" if not head.strip() else "metrics.csv of unknown columns and no summary.json"


# ------------------------------------------------------------------------------------------ loading
def load(path: Path, level: str, reference: str = "auto", crop: str | None = None) -> Run:
    """The reconstruct run in `path`, its items at `level` ('slice' or 'volume'), its metrics
    against `reference` (REFERENCES) with `crop` (None or 'fastmri'); raises Damaged."""
    summary = _summary(path)
    rows = _metric_rows(path)
    if summary.get("num_slices", len(rows)) != len(rows):
        raise Damaged(f"metrics.csv has {len(rows)} slice rows, summary.json says {summary['num_slices']}")
    methods = {r["method"] for r in rows}
    if methods != {summary["method"]}:
        raise Damaged(f"metrics.csv names method {', '.join(sorted(methods))}, summary.json {summary['method']}")
    slices = np.array([_number(r, "slice", k, int) for k, r in enumerate(rows)], dtype=np.int64)
    if len(set(slices.tolist())) != len(slices):
        raise Damaged("metrics.csv lists a slice twice")
    subjects = _int_column(rows, "subject")
    volumes = _int_column(rows, "volume")
    values = {name: np.array([_number(r, name, k, float) for k, r in enumerate(rows)]) for name in VALUES[:-1]}
    accel = (summary.get("acceleration") or {}).get("per_slice") or []
    values["R"] = np.array(accel, dtype=float) if len(accel) == len(rows) else np.full(len(rows), np.nan)
    if all(name in rows[0] for name in uncertainty.NAMES):  # a sampling method's std, measured per slice
        values.update({n: np.array([_number(r, n, k, float) for k, r in enumerate(rows)]) for n in uncertainty.NAMES})
    recon = _recon_file(path, slices)
    run = Run(path, summary, identity(summary), slices, subjects, slices, subjects, values, dict(values), recon)
    run.volumes = volumes
    warning = provenance.selection_warning(summary.get("checkpoint_info"), run.identity["split"])
    if warning:
        run.warnings.append(warning)
    run.reference = _reference_of(run, reference) + (", fastMRI crop" if crop else "")
    run.identity["reference_image"] = run.reference
    if level == "volume":
        _to_volumes(run, crop)
    elif run.reference != "sense":
        _remeasure_slices(run, crop)
    return run


def _reference_of(run: Run, reference: str) -> str:
    """'rss' or 'sense': `reference`, with auto = rss where recon.h5 holds fastMRI's
    reconstruction_rss (the run's data carry it), else sense."""
    has_rss = False
    if run.recon is not None:
        with h5py.File(run.recon, "r") as h5:
            has_rss = "rss" in h5 and h5["rss"].shape == h5["recon"].shape
    if reference == "rss" and not has_rss:
        raise Damaged(
            "reference=rss: recon.h5 holds no rss (only runs on data preprocessed from fastMRI files with "
            "reconstruction_rss have it; reference=auto uses sense there)"
        )
    return "rss" if reference == "rss" or (reference == "auto" and has_rss) else "sense"


def _targets(run: Run, h5: h5py.File, rows: list[int], crop: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(|recon|, reference) of recon.h5's rows (S, X, Y), against the run's reference, cropped."""
    recon = np.abs(np.stack([h5["recon"][i] for i in rows]))
    key = "rss" if run.reference.startswith("rss") else "imgs"
    target = np.abs(np.stack([h5[key][i] for i in rows]))
    return (metrics.square_crop(recon), metrics.square_crop(target)) if crop else (recon, target)


def _remeasure_slices(run: Run, crop: str | None) -> None:
    """Per-slice metrics of recon.h5's images against the run's reference (rss, or a crop of
    sense), in place of metrics.csv's."""
    if not bool(run.summary.get("has_reference", True)):
        return
    if run.recon is None:
        raise Damaged(f"reference {run.reference} is measured from recon.h5, and the run has none")
    with h5py.File(run.recon, "r") as h5:
        position = {int(s): k for k, s in enumerate(h5["slices"][()])}
        _check_images(run, 0, h5["recon"][position[int(run.slices[0])]], h5["imgs"][position[int(run.slices[0])]])
        for k, s in enumerate(run.slices):
            recon, target = _targets(run, h5, [position[int(s)]], crop)
            for name, value in metrics.slice_metrics(recon[0], target[0]).items():
                run.values[name][k] = value
    run.per_slice = dict(run.values)


SUMMARY_KEYS = ("method", "variant", "seed", "param_units")  # what evaluate needs of a summary.json


def _summary(path: Path) -> dict[str, Any]:
    try:
        summary = json.loads((path / "summary.json").read_text())
    except OSError as exc:
        raise Damaged(f"summary.json is unreadable ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise Damaged(f"summary.json is not valid JSON ({exc})") from None
    missing = [k for k in SUMMARY_KEYS if not isinstance(summary, dict) or k not in summary]
    if missing:
        raise Damaged(f"summary.json has no {' or '.join(missing)} (a run of an older mrirecon: reconstruct it again)")
    if not isinstance(summary["param_units"], dict):
        raise Damaged("summary.json: param_units is not a mapping of parameter to unit")
    return summary


def _metric_rows(path: Path) -> list[dict[str, str]]:
    """The slice rows of metrics.csv, each complete; raises Damaged for an empty, truncated or
    malformed file."""
    try:
        text = (path / "metrics.csv").read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise Damaged(f"metrics.csv is unreadable ({exc})") from None
    if not text.strip():
        raise Damaged("metrics.csv is empty")
    if not text.endswith("\n"):
        raise Damaged("metrics.csv: the last line is incomplete (no line end: the run was cut off while writing)")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    missing = [c for c in METRIC_COLUMNS if c not in header]
    if missing:
        raise Damaged(f"metrics.csv has no column {', '.join(missing)}")
    rows = []
    for line, cells in enumerate(reader, start=2):
        if len(cells) != len(header):
            raise Damaged(f"metrics.csv line {line} has {len(cells)} of {len(header)} fields")
        rows.append(dict(zip(header, cells)))
    if not rows:
        raise Damaged("metrics.csv has no slice rows")
    return rows


def _number(row: dict[str, str], key: str, k: int, kind: type) -> Any:
    try:
        return kind(row[key])
    except ValueError:
        raise Damaged(f"metrics.csv line {k + 2}: {key} '{row[key]}' is not a number") from None


def _int_column(rows: list[dict[str, str]], key: str) -> np.ndarray | None:
    """metrics.csv's whole-number column `key` (subject, volume) of each slice row; None when
    it is empty on every row (the data record none)."""
    given = [r.get(key, "") for r in rows]
    if not any(given):
        return None
    try:
        return np.array([int(s) for s in given], dtype=np.int64)
    except ValueError:
        raise Damaged(f"metrics.csv: the {key} column is filled on some rows only or not a whole number") from None


def _recon_file(path: Path, slices: np.ndarray) -> Path | None:
    """recon.h5 when present, checked: datasets recon, imgs and slices matching metrics.csv."""
    file = path / "recon.h5"
    if not file.exists():
        return None
    try:
        with open_hdf5(file) as h5:
            arrays = {k: h5.get(k) for k in ("recon", "imgs", "slices")}
            missing = [k for k, a in arrays.items() if not isinstance(a, h5py.Dataset)]
            if missing:
                raise Damaged(f"recon.h5 is incomplete (no array '{missing[0]}')")
            shapes = {k: a.shape for k, a in arrays.items()}
            kinds = {k: a.dtype.kind for k, a in arrays.items()}
            stored = np.asarray(arrays["slices"][()])
            std = h5.get("std")  # a sampling method's per-pixel std
            std_shape = None if std is None else (std.shape if isinstance(std, h5py.Dataset) else ())
            std_kind = "" if std is None else str(getattr(std, "dtype", np.dtype("O")).kind)
    except HDF5InputError as exc:
        raise Damaged(f"recon.h5 is unreadable ({exc.reason})") from None
    except (OSError, KeyError) as exc:
        raise Damaged(f"recon.h5 is unreadable or incomplete ({str(exc).splitlines()[0]})") from None
    if shapes["recon"] != shapes["imgs"] or len(shapes["recon"]) != 3 or shapes["recon"][0] != len(slices):
        raise Damaged(f"recon.h5: recon {shapes['recon']} and imgs {shapes['imgs']} do not hold {len(slices)} slices")
    if kinds["recon"] not in "cfiu" or kinds["imgs"] not in "cfiu" or kinds["slices"] not in "iu":
        raise Damaged(f"recon.h5: recon, imgs and slices have dtypes {kinds}, expected images and slice indices")
    if std_shape is not None and (std_shape != shapes["recon"] or std_kind not in "fiu"):
        raise Damaged(f"recon.h5: std {std_shape} is not a real array of recon's shape {shapes['recon']}")
    if sorted(stored.reshape(-1).tolist()) != sorted(slices.tolist()):
        raise Damaged("recon.h5 holds other slices than metrics.csv")
    _, x, y = shapes["recon"]
    try:
        require(2 * 8 * x * y, f"{file}: declares images of {x}x{y} (one slice's recon and reference)")
    except UserError as exc:
        raise Damaged(str(exc)) from None
    return file


def identity(summary: dict[str, Any]) -> dict[str, Any]:
    """Everything that makes two runs differ, from a summary.json (empty strings where a run
    recorded before these fields has none): data (absolute path) and data_id (content id), split,
    variant, method, params (the method config), checkpoint, checkpoint_id, model_config (the
    model config name of the checkpoint), seed, version, convention (the metric convention),
    reference_image (the image evaluate measures against: sense until `load` resolves it)."""
    info = summary.get("checkpoint_info") or {}
    return {
        "data": str(summary.get("data_path", "")),
        "data_id": str(summary.get("data_id", "")),
        "split": str(summary.get("split", "")),
        "variant": str(summary["variant"]),
        "method": str(summary["method"]),
        "params": summary.get("method_config") or {},
        "checkpoint": str(info.get("path") or summary.get("checkpoint") or ""),
        "checkpoint_id": str(info.get("id", "")),
        "model_config": str(info.get("model_config_name", "")),
        "seed": str(summary["seed"]),
        "version": str(summary.get("mrirecon_version", "")),
        "convention": str(summary.get("metric_convention", "")),
        "reference_image": "sense",  # set by `load`: what evaluate measured against
    }


def _to_volumes(run: Run, crop: str | None = None) -> None:
    """Replace the run's per-slice items by per-volume ones (one per source volume, i.e. file,
    slices in index order; its unit the volume's subject), with metrics computed from recon.h5's
    images the fastMRI way, against the run's reference."""
    if run.subjects is None or run.volumes is None:
        raise Damaged("level=volume: the data file records no subjects, so the run's volumes are unknown")
    has_reference = bool(run.summary.get("has_reference", True))
    if run.recon is None and has_reference:
        raise Damaged("level=volume computes per-volume metrics from recon.h5, and the run has none")
    volumes = np.unique(run.volumes)
    members = [np.flatnonzero(run.volumes == v) for v in volumes]
    members = [m[np.argsort(run.slices[m])] for m in members]
    values = {name: np.full(len(volumes), np.nan) for name in VALUES}
    averaged = ("seconds", "R", *(n for n in uncertainty.NAMES if n in run.values))  # as SSIM: the slices' mean
    for j, m in enumerate(members):
        for name in averaged:
            values.setdefault(name, np.full(len(volumes), np.nan))[j] = float(np.mean(run.values[name][m]))
    if has_reference and run.recon is not None:
        with open_hdf5(run.recon) as h5:
            position = {int(s): k for k, s in enumerate(h5["slices"][()])}
            for j, m in enumerate(members):
                rows = [position[int(s)] for s in run.slices[m]]
                if j == 0:
                    _check_images(run, m[0], h5["recon"][rows[0]], h5["imgs"][rows[0]])
                for name, value in metrics.volume_metrics(*_targets(run, h5, rows, crop)).items():
                    values[name][j] = value
    units = np.array([run.subjects[m[0]] for m in members], dtype=np.int64)
    run.items, run.units, run.values = volumes, units, values


def _check_images(run: Run, k: int, recon: np.ndarray, reference: np.ndarray) -> None:
    """recon.h5 must hold the images metrics.csv was computed on (NRMSE of one slice agrees)."""
    recorded = float(run.values["nrmse"][k])
    computed = metrics.nrmse(recon, reference)
    if np.isfinite(recorded) and not np.isclose(computed, recorded, rtol=1e-4, atol=1e-7):
        raise Damaged(
            f"recon.h5's images give slice {int(run.slices[k])} NRMSE {computed:.6g}, metrics.csv {recorded:.6g}: "
            "not the images the metrics were computed on"
        )


# ------------------------------------------------------------------------------------------ train runs
def load_training(path: Path) -> tuple[str, np.ndarray, dict[str, np.ndarray]]:
    """A train run's label, epochs and per-epoch columns (train_loss and val_*) of metrics.csv;
    raises Damaged."""
    try:
        text = (path / "metrics.csv").read_text()
        rows = list(csv.DictReader(io.StringIO(text)))
        if not rows:
            raise Damaged("metrics.csv has no epoch rows")
        if not text.endswith("\n") or any(None in r.values() or None in r for r in rows):
            raise Damaged("metrics.csv: the last line is incomplete")
        epochs = np.array([int(r["epoch"]) for r in rows])
        names = [k for k in rows[0] if k == "train_loss" or k.startswith("val_")]
        columns = {k: np.array([float(r[k]) if r[k] != "" else np.nan for r in rows]) for k in names}
    except (OSError, ValueError, KeyError) as exc:
        raise Damaged(f"metrics.csv is unreadable ({exc})") from None
    return f"{_training_label(path)} ({path.parent.name}/{path.name})", epochs, columns


def _training_label(path: Path) -> str:
    """What a train run trained, from its training.json."""
    try:
        return str(json.loads((path / "training.json").read_text())["trains"])
    except FileNotFoundError:
        raise Damaged("no training.json (a run of an older mrirecon, or not a training run)") from None
    except (OSError, ValueError, KeyError) as exc:
        raise Damaged(f"training.json is unreadable ({exc})") from None
