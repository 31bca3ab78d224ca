"""What a reconstruct run was made from, recorded in its summary.json so that `evaluate` never
pools runs that differ: the data file (absolute path and a content id), the checkpoint (path,
content id, the model config it was trained with, the split it was selected on), the seed and the
time. Cheap on a 50 GB file: only the HDF5 header is read, never the arrays."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

VALIDATION_SPLIT = "val"  # train validates every epoch on the val split and keeps the best epoch as best.pt


def _digest(parts: Any) -> str:
    """A short stable hash of a JSON-able structure."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _attr(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value.item() if isinstance(value, np.generic) else value


def content_id(path: str | os.PathLike[str]) -> str:
    """A content id of a data file: a hash of its size and, for HDF5, its root attributes (source,
    variant, split indices, version, creation time) and every dataset's name, shape and dtype. The
    same for a copy of the file; different for another preprocess run (a dataset folder: a hash
    of its index, which records its parts' sizes and times). Falls back to size and
    modification time for a file h5py cannot read."""
    path = Path(path)
    if (path / "index.json").is_file():  # a dataset folder (data/shards.py): its index lists its parts' stamps
        return _digest(["folder", (path / "index.json").read_text()])
    stat = path.stat()
    try:
        with h5py.File(path, "r") as h5:
            attrs = {k: _attr(v) for k, v in h5.attrs.items()}
            datasets: dict[str, Any] = {}
            h5.visititems(
                lambda name, obj: (
                    datasets.__setitem__(name, [obj.shape, str(obj.dtype)]) if isinstance(obj, h5py.Dataset) else None
                )
            )
        return _digest([stat.st_size, attrs, datasets])
    except OSError:
        return _digest([stat.st_size, stat.st_mtime_ns])


def data_record(path: str | os.PathLike[str]) -> dict[str, str]:
    """{'data_path': the absolute path with links resolved, 'data_id': content_id}."""
    resolved = Path(path).resolve()
    return {"data_path": str(resolved), "data_id": content_id(resolved)}


def training_budget(ckpt: dict[str, Any], parameters: int) -> dict[str, Any]:
    """What training a checkpoint cost: its network's `parameters`, the epochs and optimiser
    steps it saw, the training wall-clock seconds (resumes added; None when not recorded), and
    where it ran (device, processes, threads per process) from its config."""
    state = ckpt.get("state", {}) if isinstance(ckpt.get("state"), dict) else {}
    config = ckpt.get("config", {}) if isinstance(ckpt.get("config"), dict) else {}
    hardware: dict[str, Any] = config["hardware"] if isinstance(config.get("hardware"), dict) else {}
    seconds = state.get("seconds")
    return {
        "parameters": int(parameters),
        "epochs": state.get("epoch"),
        "steps": state.get("step"),
        "seconds": float(seconds) if isinstance(seconds, (int, float)) else None,
        "device": str(hardware.get("device", "")),
        "processes": int(state.get("world_size") or 1),
        "threads": hardware.get("threads"),
    }


def checkpoint_record(path: str | os.PathLike[str], ckpt: dict[str, Any], select: str) -> dict[str, Any]:
    """What a loaded checkpoint is: its absolute path, a content id (its config, loop position and
    file size: best.pt changes while a training runs), the model config it was trained with
    (`model_config_name`: e.g. flow or flow_student, which both build a 'flow' net), its epoch, and
    `selected_on`: the validation split when this is the epoch with the best validation `select`
    metric (best.pt, or a last.pt that is also the best), else None."""
    resolved = Path(path).resolve()
    state = ckpt.get("state", {}) if isinstance(ckpt.get("state"), dict) else {}
    history = state.get("history") or [{}]
    config = ckpt.get("config", {}) if isinstance(ckpt.get("config"), dict) else {}
    model = ckpt.get("model_config_name") or (config.get("model") or {}).get("name", "")
    best = state.get("best")
    last_score = history[-1].get(select)
    is_best = resolved.name == "best.pt" or (best is not None and last_score is not None and last_score == best)
    return {
        "path": str(resolved),
        "id": _digest([config, state.get("epoch"), state.get("step"), resolved.stat().st_size]),
        "model_config_name": str(model),
        "model_hash": _digest(config.get("model", {}))[:6],  # tells apart old checkpoints without a name
        "epoch": state.get("epoch"),
        "selected_on": VALIDATION_SPLIT if is_best else None,
        "selected_by": select if is_best else None,
    }


def selection_warning(record: dict[str, Any] | None, split: str) -> str | None:
    """A warning when the run reports on the split its checkpoint was selected on (or on all
    slices, which include it); None otherwise."""
    chosen = (record or {}).get("selected_on")
    if record is None or chosen is None or split not in (chosen, "all"):
        return None
    return (
        f"evaluated on data.split={split}, which includes the {chosen} split the checkpoint was selected on "
        f"(best {record.get('selected_by')}): an optimistic estimate (report data.split=test)"
    )


def now() -> str:
    """The local time, ISO 8601 to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
