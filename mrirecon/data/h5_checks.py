"""Checks of what a DeepInPy file holds besides its four arrays: the per-slice keys (`noise_std`,
`subject`, `acquired`, `rss`) and the attributes that train and reconstruct read (written by
preprocess: mrirecon/tasks/preprocess.py). They run when the file is opened, so a malformed
value is one error naming the file and the key, never a traceback at the slice that reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.errors import UserError

BART_DIMS = 16  # a .cfl array's dimensions (data/cfl.py)


def _is_integer(value: Any) -> bool:
    return np.ndim(value) == 0 and np.asarray(value).dtype.kind in "iu"


def _is_flag(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) or (_is_integer(value) and int(value) in (0, 1))


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def parse_cfl_axes(value: Any) -> tuple[int, int]:
    """The BART dims 'a,b' of the image plane of a .cfl source (attribute `source_cfl_axes`);
    ValueError unless it is two different integers in [0, 16) written 'a,b'."""
    parts = value.split(",") if isinstance(value, str) else []
    try:
        a, b = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"'{value}' is not two BART dimensions 'a,b'") from None
    if a == b or not (0 <= a < BART_DIMS and 0 <= b < BART_DIMS):
        raise ValueError(f"'{value}' is not two different BART dimensions in [0, {BART_DIMS})")
    return a, b


def _is_cfl_axes(value: Any) -> bool:
    try:
        parse_cfl_axes(value)
    except ValueError:
        return False
    return True


# attribute -> (check, what is expected)
ATTRIBUTES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "has_reference": (_is_flag, "true/false (or 0/1)"),
    "transpose": (_is_flag, "true/false (or 0/1)"),
    "prewhitened": (_is_flag, "0 or 1"),
    "bits": (lambda v: _is_integer(v) and int(v) in (-1, 4, 8), "-1 (complex), 4 or 8"),
    "source_cfl_axes": (_is_cfl_axes, "two BART dimensions 'a,b'"),
    **{
        name: (_is_text, "a string")
        for name in ("source", "source_id", "variant", "noise_std_definition", "coil_compression")
    },
}


def read_attributes(path: Path, f: h5py.File) -> dict[str, Any]:
    """The file's attributes, each that the tasks read checked against ATTRIBUTES (UserError)."""
    try:
        attrs = dict(f.attrs)
    except (OSError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: its attributes cannot be read ({exc.__class__.__name__})") from None
    for name, (ok, expected) in ATTRIBUTES.items():
        if name in attrs and not ok(attrs[name]):
            shown = repr(attrs[name])[:60]
            raise UserError(f"{path}: attribute '{name}' is {shown}, expected {expected}")
    return attrs


def per_slice_key(path: Path, f: h5py.File, key: str, shape: tuple[int, ...], kinds: str) -> h5py.Dataset | None:
    """The optional key `key` of `f`, checked to be an array of `shape` and dtype kind in
    `kinds` (UserError); None when absent."""
    if key not in f:
        return None
    ds = f[key]
    if not isinstance(ds, h5py.Dataset) or ds.shape != shape or ds.dtype.kind not in kinds:
        what = f"shape {ds.shape} and dtype {ds.dtype}" if isinstance(ds, h5py.Dataset) else "a group"
        names = {"iu": "integers", "fiu": "numbers"}.get(kinds, kinds)
        raise UserError(f"{path}: key '{key}' is {what}, expected {shape} {names}")
    return ds


def check_per_slice_keys(path: Path, f: h5py.File, n: int, x: int, y: int) -> None:
    """noise_std (N,) numbers, subject (N,) integers, acquired (N, 4) integers and rss (N, X, Y)
    numbers where present (UserError)."""
    per_slice_key(path, f, "noise_std", (n,), "fiu")
    per_slice_key(path, f, "subject", (n,), "iu")
    per_slice_key(path, f, "acquired", (n, 4), "iu")
    per_slice_key(path, f, "rss", (n, x, y), "fiu")
