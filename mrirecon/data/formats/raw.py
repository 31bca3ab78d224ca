"""Raw multi-coil k-space without coil maps (acquired, possibly undersampled data).

Accepted: an .npy array (C, X, Y) or (N, C, X, Y) complex, or an HDF5 file with 'ksp'
(N, C, X, Y) and optionally 'masks' (N, X, Y) and 'imgs' (N, X, Y), but no 'maps'. Coil maps
are estimated per slice with ESPIRiT (sigpy's maps, computed in torch: physics/coils.py) from the fully sampled calibration region; the
mask is where any coil has data unless 'masks' is given. Without 'imgs' there is no reference
image: `has_reference` is False and `read` returns zeros as the image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.data.completion import ReadOptions, espirit_maps
from mrirecon.data.h5 import Slice
from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.data.source import Format, Source, file_keys, is_npy, register_format
from mrirecon.errors import UserError
from mrirecon.io.memory import require


class RawKspaceSource:
    """Read raw k-space slice by slice and complete it to a DeepInPy slice.

    Args:
        path: .npy or .h5 file.
        transpose: swap the last two axes on read.
        calib_width: side of the calibration square used by ESPIRiT (pixels).
        thresh, crop: ESPIRiT's eigenvalue threshold and eigenvalue crop.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        transpose: bool = False,
        calib_width: int = 24,
        thresh: float = 0.02,
        crop: float = 0.95,
    ) -> None:
        self.path = Path(path)
        self.transpose = transpose
        self.espirit = (int(calib_width), float(thresh), float(crop))
        if not self.path.is_file():
            raise UserError(f"{self.path}: file not found")
        self._imgs = self._masks = None
        if self.path.suffix == ".npy":
            try:
                ksp = np.load(self.path, mmap_mode="r")
            except ValueError as exc:
                raise UserError(f"{self.path}: not a readable .npy array ({exc})") from None
            self._ksp = ksp[None] if ksp.ndim == 3 else ksp
        else:
            f = open_hdf5(self.path)
            if "ksp" not in f:
                raise UserError(f"{self.path}: missing key 'ksp' (raw k-space of shape (N, C, X, Y))")
            for key in ("ksp", "imgs", "masks"):
                if key in f and not isinstance(f[key], h5py.Dataset):
                    raise UserError(f"{self.path}: key '{key}' is a group, expected an array")
            self._ksp = f["ksp"]
            self._imgs = f.get("imgs", None)
            self._masks = f.get("masks", None)
        if self._ksp.ndim != 4 or min(self._ksp.shape) == 0:
            raise UserError(f"{self.path}: k-space has shape {self._ksp.shape}, expected (C, X, Y) or (N, C, X, Y)")
        if self._ksp.dtype.kind != "c":
            raise UserError(f"{self.path}: k-space has dtype {self._ksp.dtype}, expected complex64 or complex128")
        n, c, x, y = self._ksp.shape
        require(
            2 * 8 * c * x * y,
            f"{self.path}: k-space declares {n} slices of {c} coils x {x}x{y} (one slice's k-space and maps)",
        )
        for key, arr in (("imgs", self._imgs), ("masks", self._masks)):
            if arr is not None and arr.shape != (n, x, y):
                raise UserError(f"{self.path}: key '{key}' has shape {arr.shape}, expected {(n, x, y)} to match 'ksp'")
            if arr is not None and arr.dtype.kind not in "cfiub":
                raise UserError(f"{self.path}: key '{key}' has dtype {arr.dtype}, expected a numeric array")
        self.num_slices, self.num_coils = int(n), int(c)
        self.shape = (int(y), int(x)) if transpose else (int(x), int(y))
        self.has_reference = self._imgs is not None
        self.has_rss = False
        self.recon_size: tuple[int, int] | None = None
        self.attrs: dict[str, Any] = {}

    def __len__(self) -> int:
        return self.num_slices

    def _get(self, arr: Any, key: str, i: int, dtype: type) -> np.ndarray:
        out: np.ndarray = np.asarray(arr[i]).astype(dtype)
        if not np.all(np.isfinite(out)):
            raise UserError(f"{self.path}: key '{key}' slice {i} has non-finite values (NaN or Inf)")
        return np.ascontiguousarray(np.swapaxes(out, -1, -2)) if self.transpose else out

    def read(self, i: int) -> Slice:
        """Slice i with ESPIRiT maps; k-space is returned as measured (zeros where not sampled)."""
        ksp = self._get(self._ksp, "ksp", i, np.complex64)
        if self._masks is not None:
            mask = self._get(self._masks, "masks", i, np.float32)
            if not np.all((mask == 0) | (mask == 1)):
                raise UserError(f"{self.path}: key 'masks' slice {i} has values other than 0 and 1")
        else:
            mask = (np.abs(ksp).sum(0) > 0).astype(np.float32)
        img = (
            self._get(self._imgs, "imgs", i, np.complex64)
            if self._imgs is not None
            else np.zeros(ksp.shape[1:], np.complex64)
        )
        maps = espirit_maps(ksp * mask, *self.espirit)
        return Slice(img=img, maps=maps, ksp=ksp, mask=mask)

    def splits(self) -> None:
        return None

    def subjects(self) -> None:
        """Raw k-space records no subjects (see data.slices_per_subject)."""
        return

    def close(self) -> None:
        if isinstance(self._ksp, h5py.Dataset):
            self._ksp.file.close()


@register_format("raw")
class RawKspace(Format):
    """Read by `RawKspaceSource` (ESPIRiT maps, `data.transpose`)."""

    description = "raw k-space HDF5 (ksp without maps) or .npy (C, X, Y) / (N, C, X, Y)"
    priority = 30

    @classmethod
    def detect(cls, path: Path) -> bool:
        keys = file_keys(path)
        return is_npy(path) or ("ksp" in keys and "maps" not in keys)

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        return RawKspaceSource(path, options.transpose, options.calib_width, options.thresh, options.crop)
