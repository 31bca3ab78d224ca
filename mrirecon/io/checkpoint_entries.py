"""The entries of an mrirecon checkpoint and their types, checked when it is loaded.

What `train` writes (mrirecon/training/trainer.py `Trainer._checkpoint`, each family's
`checkpoint_state`, the task's extra entries) is read back by `reconstruct` (rebuild from the
checkpoint alone, provenance) and by `train.resume`. A file whose entry has another type (a
list where a dict belongs, a string subject list, ...) or whose weights are not finite (a
diverged or damaged run: NaN weights reconstruct nothing, and CG stops at once on a NaN
residual, returning the zero-filled image) is refused here, with one error naming the entry,
instead of a traceback, or a wrong result, where the entry is used. Entries that are absent
are left to the reader. `FORMAT` numbers the layout: a change of the entries a family writes
bumps it, and a checkpoint of another format is refused when loaded (mrirecon/io/files.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mrirecon.errors import UserError

# the layout of the checkpoints this version writes and reads (1: the run config only; 2: the
# Trainable path's own entries; 3: losses apart (`loss`), every network in the model group)
FORMAT = 3


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _dict(v: Any) -> bool:
    return isinstance(v, Mapping)  # a trusted (pickled) checkpoint may hold an OmegaConf DictConfig


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _list(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, (str, bytes))


def _integers(v: Any) -> bool:
    return _list(v) and all(_integer(i) for i in v)


def _flags(v: Any) -> bool:
    return _dict(v) and all(isinstance(k, str) and isinstance(f, bool) for k, f in v.items())


def _shape(v: Any) -> bool:
    return _integers(v) and len(v) in (2, 3) and all(i >= 1 for i in v)


def _splits(v: Any) -> bool:
    return _dict(v) and all(isinstance(k, str) and _integers(s) for k, s in v.items())


# entry -> (check, what is expected); `model` (the weights) is checked by `check_weights`
ENTRIES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "config": (_dict, "a mapping (the run config)"),
    "optimizer": (_dict, "a mapping (an optimizer state)"),
    "scheduler": (lambda v: v is None or _dict(v), "a mapping or null"),
    "state": (_dict, "a mapping (the loop state)"),
    "kind": (_text, "a string"),
    "format": (_integer, "an integer"),
    "method": (_text, "a string"),
    "method_config": (_dict, "a mapping (the method config)"),
    "model_config": (lambda v: v is None or _dict(v), "a mapping (the model config)"),
    "model_config_name": (_text, "a string"),
    "loss": (lambda v: _dict(v) and isinstance(v.get("loss"), str), "a mapping with the loss's name (loss)"),
    "sample_temperature": (_number, "a number"),
    "augmentations": (_flags, "a mapping of augmentation names to true or false"),
    "shape": (_shape, "the image shape, a list of 2 or 3 integers >= 1"),
    "bits": (lambda v: _integer(v) and v in (4, 8), "4 or 8"),
    "splits": (_splits, "a mapping of split names to slice indices"),
    "data_path": (_text, "a string"),
    "source_id": (_text, "a string"),
    "train_subjects": (_integers, "a list of integers"),
}

# state entry -> (check, what is expected): the loop position Trainer.resume adopts
STATE: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{name: (lambda v: _integer(v) and v >= 0, "an integer >= 0") for name in ("epoch", "batch", "step")},
    "world_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "loss_count": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "best": (_number, "a number"),
    "loss_sum": (_number, "a number"),
    "best_by": (_text, "a string"),
    "history": (lambda v: _list(v) and all(_dict(r) for r in v), "a list of mappings (epoch rows)"),
}


def check_entries(ckpt: dict[str, Any], path: Path, key: str) -> None:
    """Raise a UserError naming the config `key` that gave `path` and the first entry of `ckpt`
    whose type is not what mrirecon writes, or whose weights are not finite."""
    sections: list[tuple[str, dict[str, tuple[Callable[[Any], bool], str]], Any]] = [
        ("", ENTRIES, ckpt),
        ("state.", STATE, ckpt.get("state")),
    ]
    for group, table, found in sections:
        for name, (ok, expected) in table.items():
            if _dict(found) and name in found and not ok(found[name]):
                shown = repr(found[name])[:60]
                raise UserError(f"{key}: {path}: entry '{group}{name}' is {shown}, expected {expected}")
    problem = weights_problem(ckpt.get("model"))
    if problem:
        raise UserError(f"{key}: {path}: {problem}")


def weights_problem(weights: Any) -> str | None:
    """Why the `model` entry is not a set of usable weights (a mapping of names to finite
    tensors), or None."""
    if not _dict(weights):
        return f"entry 'model' is a {type(weights).__name__}, expected the weights (a mapping of names to tensors)"
    for name, tensor in weights.items():
        if not isinstance(tensor, torch.Tensor):
            return f"weight '{name}' is a {type(tensor).__name__}, not a tensor"
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            return (
                f"weight '{name}' holds non-finite values (NaN or Inf): the training diverged or the file is "
                "damaged, and such weights reconstruct nothing"
            )
    return None
