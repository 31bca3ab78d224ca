"""Checks of the arrays of a DeepInPy file, run when it is opened: its four arrays (keys, shapes,
dtypes) and the per-slice keys (`noise_std`, `subject`, `volume`, `acquired`, `rss`), so that a
malformed file is one error naming the file and the key, never a traceback at the slice that
reads it. Its attributes are checked where they are parsed, in data/header.py.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from mrirecon.errors import UserError

KEYS = ("imgs", "maps", "ksp", "masks")
PER_SLICE = ("noise_std", "subject", "volume", "acquired")  # every file of preprocess has them


def expected_shapes(n: int, c: int, x: int, y: int) -> dict[str, tuple[int, ...]]:
    """The shapes of the four arrays of N slices of C coils, (X, Y) pixels."""
    return {"imgs": (n, x, y), "maps": (n, c, x, y), "ksp": (n, c, x, y), "masks": (n, x, y)}


def check_arrays(path: Path, f: h5py.File) -> tuple[int, int, int, int]:
    """(N, C, X, Y) of the four arrays of `f`, checked: present, arrays, shapes that agree, no
    empty dimension, complex maps and k-space, numeric images and masks (UserError)."""
    missing = [k for k in KEYS if k not in f]
    if missing:
        raise UserError(f"{path}: missing key '{missing[0]}' (a DeepInPy file needs {', '.join(KEYS)})")
    for key in KEYS:
        if not isinstance(f[key], h5py.Dataset):
            raise UserError(f"{path}: key '{key}' is a group, expected an array")
    if f["maps"].ndim != 4:
        raise UserError(f"{path}: key 'maps' has shape {f['maps'].shape}, expected (N, C, X, Y)")
    n, c, x, y = (int(v) for v in f["maps"].shape)
    for key, shape in expected_shapes(n, c, x, y).items():
        if f[key].shape != shape:
            raise UserError(
                f"{path}: key '{key}' has shape {f[key].shape}, expected {shape} to match 'maps' {f['maps'].shape}"
            )
    if min(n, c, x, y) == 0:
        raise UserError(f"{path}: key 'maps' has an empty dimension {f['maps'].shape}")
    for key in ("maps", "ksp"):
        if f[key].dtype.kind != "c":
            raise UserError(f"{path}: key '{key}' has dtype {f[key].dtype}, expected complex64 or complex128")
    for key in ("imgs", "masks"):
        if f[key].dtype.kind not in "cfiub":
            raise UserError(f"{path}: key '{key}' has dtype {f[key].dtype}, expected a numeric array")
    return n, c, x, y


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


def check_per_slice_keys(path: Path, f: h5py.File, n: int, x: int, y: int, processed: bool) -> None:
    """noise_std (N,) numbers, subject and volume (N,) integers, acquired (N, 4) integers and rss
    (N, X, Y) numbers where present; with `processed` (a file of preprocess) the first four must
    be (UserError)."""
    if processed:
        missing = [key for key in PER_SLICE if key not in f]
        if missing:
            raise UserError(
                f"{path}: key '{missing[0]}' is missing (every file of mrirecon preprocess has it: remake the "
                "file with mrirecon preprocess)"
            )
    per_slice_key(path, f, "noise_std", (n,), "fiu")
    per_slice_key(path, f, "subject", (n,), "iu")
    per_slice_key(path, f, "volume", (n,), "iu")
    per_slice_key(path, f, "acquired", (n, 4), "iu")
    per_slice_key(path, f, "rss", (n, x, y), "fiu")
