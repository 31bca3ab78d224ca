"""fastMRI multi-coil HDF5: `kspace` (slices, coils, H, W) complex, `ismrmrd_header` (XML),
optionally `reconstruction_rss` (slices, h, w) float and, in the test and challenge sets,
`mask` (W,) of the sampled columns.

Each slice is read lazily. Fully sampled files (train / val): the coil images ifft2c(kspace)
are cropped to the header's reconSpace matrix (e.g. 640x368 -> 320x320, which also removes the
2x readout oversampling) and k-space is their fft2c; `reconstruction_rss` is kept as a second
reference when its shape matches. Undersampled files (`mask`): only the readout (H, fully
sampled) is cropped to the recon size, so the measured columns stay as measured; no reference.
The subject is the file (its stem, or the `patient_id` attribute).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.data.completion import OneSubjectFile, ReadOptions, complete_slice
from mrirecon.data.h5 import Slice, open_hdf5
from mrirecon.data.transforms import center_crop, fft1c_numpy, fft2c_numpy, ifft1c_numpy, ifft2c_numpy
from mrirecon.errors import UserError


def recon_size(header: bytes | str) -> tuple[int, int]:
    """(x, y) of encoding/reconSpace/matrixSize in an ISMRMRD XML header (any namespace).

    Raises ValueError when the XML does not parse or lacks the element.
    """
    try:
        root = ET.fromstring(header)
    except ET.ParseError as exc:
        raise ValueError(f"header: not XML ({exc})") from None
    strip = {el: el.tag.rsplit("}", 1)[-1] for el in root.iter()}
    for el in root.iter():
        if strip[el] == "reconSpace":
            size = next((c for c in el if strip[c] == "matrixSize"), None)
            values = {strip[c]: (c.text or "").strip() for c in size} if size is not None else {}
            try:
                return int(values["x"]), int(values["y"])
            except (KeyError, ValueError):
                break
    raise ValueError("header: no encoding/reconSpace/matrixSize x and y")


class FastMRISource(OneSubjectFile):
    """Read a fastMRI multi-coil file slice by slice (see the module docstring).

    Args:
        path: the .h5 file.
        options: ESPIRiT and mask settings (`ReadOptions`).
    """

    def __init__(self, path: str | os.PathLike, options: ReadOptions) -> None:
        self.path = Path(path)
        self.options = options
        self._file = open_hdf5(self.path)
        f = self._file
        try:
            if not isinstance(f.get("kspace"), h5py.Dataset):
                raise UserError(f"{self.path}: key 'kspace' is not an array (fastMRI: (slices, coils, H, W) complex)")
            if "ismrmrd_header" not in f:
                raise UserError(
                    f"{self.path}: missing key 'ismrmrd_header' (fastMRI files carry the ISMRMRD XML "
                    "header with the reconstruction size)"
                )
            self._ksp = f["kspace"]
            if self._ksp.ndim != 4 or min(self._ksp.shape) == 0:
                raise UserError(
                    f"{self.path}: key 'kspace' has shape {self._ksp.shape}, expected (slices, coils, H, W) "
                    "(multi-coil; single-coil files are not supported)"
                )
            if self._ksp.dtype.kind != "c":
                raise UserError(f"{self.path}: key 'kspace' has dtype {self._ksp.dtype}, expected complex64")
            n, c, h, w = (int(v) for v in self._ksp.shape)
            try:
                rx, ry = recon_size(f["ismrmrd_header"][()])
            except ValueError as exc:
                raise UserError(f"{self.path}: key 'ismrmrd_header' {exc}") from None
            self._mask = None
            if "mask" in f:
                mask = np.asarray(f["mask"][()]).reshape(-1)
                if mask.shape != (w,) or not np.all((mask == 0) | (mask == 1)):
                    raise UserError(
                        f"{self.path}: key 'mask' has shape {mask.shape} or values other than 0 and 1, "
                        f"expected ({w},) in {{0, 1}}"
                    )
                self._mask = mask.astype(np.float32)
            self.has_reference = self._mask is None
            self.recon = (min(rx, h), min(ry, w) if self.has_reference else w)
            self._rss = f.get("reconstruction_rss")
            self.has_rss = bool(
                self.has_reference and isinstance(self._rss, h5py.Dataset) and self._rss.shape == (n, *self.recon)
            )
        except BaseException:
            f.close()
            raise
        self.num_slices, self.num_coils = n, c
        self.shape = self.recon
        self.attrs: dict[str, Any] = {
            "format": "fastmri",
            "subject_id": str(f.attrs.get("patient_id", self.path.stem)),
            "acquisition": str(f.attrs.get("acquisition", "")),
        }

    def __len__(self) -> int:
        return self.num_slices

    def read(self, i: int) -> Slice:
        """Slice i, cropped to the recon size, with ESPIRiT maps (and `rss` when kept)."""
        try:
            k = np.asarray(self._ksp[i]).astype(np.complex64)
        except OSError as exc:
            raise UserError(f"{self.path}: key 'kspace' slice {i} cannot be read ({exc})") from None
        if not np.all(np.isfinite(k)):
            raise UserError(f"{self.path}: key 'kspace' slice {i} has non-finite values (NaN or Inf)")
        if self._mask is None:
            ksp = fft2c_numpy(center_crop(ifft2c_numpy(k), self.recon))
            rss = np.asarray(self._rss[i], np.float32) if self.has_rss else None
            return complete_slice(ksp, i, self.options, rss=rss)
        ksp = fft1c_numpy(center_crop(ifft1c_numpy(k, axis=-2), (self.recon[0], k.shape[-1])), axis=-2)
        ksp = ksp * self._mask  # the readout crop spreads nothing across columns: keep zeros exact
        return complete_slice(ksp, i, self.options)

    def close(self) -> None:
        self._file.close()
