"""fastMRI multi-coil HDF5: `kspace` (slices, coils, H, W) complex, `ismrmrd_header` (XML),
optionally `reconstruction_rss` (slices, h, w) float and, in the test and challenge sets,
`mask` (W,) of the sampled columns.

Geometry as fastMRI's own loader derives it (`fastmri/data/mri_data.py`): the header's
encodedSpace, reconSpace and encodingLimits/kspace_encoding_step_1 give the phase-encode padding,
`padding_left = encoded_y // 2 - center` and `padding_right = padding_left + maximum + 1`;
columns outside [padding_left, padding_right) are zero padding, never measured: zero in every
mask, outside the slice's `acquired` region (so not counted in the acceleration and not used
by the noise estimate). Each slice is read lazily; the fully sampled readout (H, 2x oversampled)
is cropped to the recon x in image space, which is exact (the padding stays exactly zero); the
phase-encode width W is kept as acquired, so reconstructions are made on (recon_x, W) and cropped
to the recon size (e.g. 320x320) for metrics and outputs (`recon_size`), as fastMRI crops its
reconstructions. Fully sampled files (train / val) get a generated mask of whole phase-encode
lines (the scans are 2D; `masks.resolve_kind`), one per volume (`masks.volume_seed`), and `reconstruction_rss` as a second reference `rss` (embedded in the
grid: its centre crop is the file's array). Undersampled files (`mask`) keep it; no reference.
The subject is the file; its recorded `patient_id` attribute (if any) joins files of one patient.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mrirecon.data.completion import MapEstimator, OneSubjectFile, ReadOptions, complete_slice, mask_label
from mrirecon.data.h5 import Slice
from mrirecon.data.hdf5_input import open_hdf5
from mrirecon.data.masks import volume_seed
from mrirecon.data.source import Format, Source, file_keys, register_format
from mrirecon.data.transforms import center_crop, fft1c_numpy, ifft1c_numpy
from mrirecon.errors import UserError
from mrirecon.io.memory import require


@dataclass(frozen=True)
class Header:
    """What the ISMRMRD XML header of a fastMRI file says: encoded and recon matrix (x, y) and
    the phase-encode limits (center, maximum) of kspace_encoding_step_1 (None when absent)."""

    encoded: tuple[int, int]
    recon: tuple[int, int]
    limits: tuple[int, int] | None

    def padding(self, width: int) -> tuple[int, int]:
        """fastMRI's (padding_left, padding_right): the acquired columns of `width` are
        [left, right). ValueError when the limits place them outside the k-space."""
        if self.limits is None:
            return 0, width
        center, maximum = self.limits
        left = self.encoded[1] // 2 - center
        right = left + maximum + 1
        if not 0 <= left < right <= width:
            raise ValueError(
                f"encodingLimits/kspace_encoding_step_1 (center {center}, maximum {maximum}) with encoded y "
                f"{self.encoded[1]} place the acquired columns at [{left}, {right}), outside the {width} columns"
            )
        return left, right


def _find(root: ET.Element, path: tuple[str, ...]) -> ET.Element | None:
    """The first element at `path` (local names, each a descendant of the previous; any namespace)."""
    nodes = [root]
    for name in path:
        nodes = [el for node in nodes for el in node.iter() if el is not node and el.tag.rsplit("}", 1)[-1] == name]
        if not nodes:
            return None
    return nodes[0]


def _ints(root: ET.Element, path: tuple[str, ...], keys: tuple[str, ...]) -> tuple[int, ...] | None:
    node = _find(root, path)
    if node is None:
        return None
    values = {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in node}
    try:
        return tuple(int(values[k]) for k in keys)
    except (KeyError, ValueError):
        return None


def parse_header(header: bytes | str) -> Header:
    """The geometry of a fastMRI ISMRMRD XML header (any namespace).

    Raises ValueError when the XML does not parse or lacks encodedSpace or reconSpace matrixSize.
    """
    try:
        root = ET.fromstring(header)
    except ET.ParseError as exc:
        raise ValueError(f"header: not XML ({exc})") from None
    recon = _ints(root, ("encoding", "reconSpace", "matrixSize"), ("x", "y"))
    if recon is None:
        raise ValueError("header: no encoding/reconSpace/matrixSize x and y")
    encoded = _ints(root, ("encoding", "encodedSpace", "matrixSize"), ("x", "y"))
    if encoded is None:
        raise ValueError("header: no encoding/encodedSpace/matrixSize x and y")
    limits = _ints(root, ("encoding", "encodingLimits", "kspace_encoding_step_1"), ("center", "maximum"))
    return Header((encoded[0], encoded[1]), (recon[0], recon[1]), None if limits is None else (limits[0], limits[1]))


class FastMRISource(OneSubjectFile):
    """Read a fastMRI multi-coil file slice by slice (see the module docstring).

    Args:
        path: the .h5 file.
        options: ESPIRiT and mask settings (`ReadOptions`).
    """

    def __init__(self, path: str | os.PathLike[str], options: ReadOptions) -> None:
        self.path = Path(path)
        self.options = options
        self._estimate = MapEstimator(options, str(self.path))
        self._file = open_hdf5(self.path)
        try:
            self._open(self._file)
        except BaseException:
            self._file.close()
            raise
        f = self._file
        patient = str(f.attrs.get("patient_id", "")).strip()
        self.attrs: dict[str, Any] = {
            "format": "fastmri",
            "subject_id": patient or self.path.stem,
            "acquisition": str(f.attrs.get("acquisition", "")),
            "acquired_columns": f"{self.acquired[2]}:{self.acquired[3]}",
            "mask": mask_label(options, True, self.has_reference),
        }
        if patient:
            self.attrs["patient_id"] = patient

    def _open(self, f: h5py.File) -> None:
        """Check the keys and read the geometry (shape, acquired region, recon size, mask, rss)."""
        if not isinstance(f.get("kspace"), h5py.Dataset):
            raise UserError(f"{self.path}: key 'kspace' is not an array (fastMRI: (slices, coils, H, W) complex)")
        for key in ("ismrmrd_header", "mask", "reconstruction_rss"):
            if key in f and not isinstance(f[key], h5py.Dataset):
                raise UserError(f"{self.path}: key '{key}' is a group, expected an array")
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
        require(
            2 * 8 * c * h * w,
            f"{self.path}: key 'kspace' declares {n} slices of {c} coils x {h}x{w} (one slice's k-space and maps)",
        )
        try:
            header = parse_header(f["ismrmrd_header"][()])
            left, right = header.padding(w)
        except ValueError as exc:
            raise UserError(f"{self.path}: key 'ismrmrd_header' {exc}") from None
        self._mask = self._stored_mask(f, w)
        self.has_reference = self._mask is None
        self.num_slices, self.num_coils = n, c
        self.shape = (min(header.recon[0], h), w)
        self.acquired = (0, self.shape[0], left, right)
        crop = (self.shape[0], min(header.recon[1], w))
        self.recon_size = crop if crop != self.shape else None
        self._rss = f.get("reconstruction_rss")
        self.has_rss = bool(
            self.has_reference and isinstance(self._rss, h5py.Dataset) and self._rss.shape == (n, *crop)
        )

    def _stored_mask(self, f: h5py.File, width: int) -> np.ndarray | None:
        """The file's `mask` (W,) float32 (test and challenge sets), checked; None when absent."""
        if "mask" not in f:
            return None
        mask = np.asarray(f["mask"][()]).reshape(-1)
        if mask.shape != (width,) or not np.all((mask == 0) | (mask == 1)):
            raise UserError(
                f"{self.path}: key 'mask' has shape {mask.shape} or values other than 0 and 1, "
                f"expected ({width},) in {{0, 1}}"
            )
        return mask.astype(np.float32)

    def __len__(self) -> int:
        return self.num_slices

    def _embedded_rss(self, i: int) -> np.ndarray:
        """`reconstruction_rss` of slice i placed at the centre of the (X, W) grid, zero around it."""
        rss = np.asarray(self._rss[i], np.float32)
        out = np.zeros(self.shape, np.float32)
        top, left = ((n - m) // 2 for n, m in zip(self.shape, rss.shape))
        out[top : top + rss.shape[0], left : left + rss.shape[1]] = rss
        return out

    def read(self, i: int) -> Slice:
        """Slice i on the (recon x, W) grid with ESPIRiT maps, the volume's mask and `rss` when kept."""
        try:
            k = np.asarray(self._ksp[i]).astype(np.complex64)
        except OSError as exc:
            raise UserError(f"{self.path}: key 'kspace' slice {i} cannot be read ({exc})") from None
        if not np.all(np.isfinite(k)):
            raise UserError(f"{self.path}: key 'kspace' slice {i} has non-finite values (NaN or Inf)")
        ksp = fft1c_numpy(center_crop(ifft1c_numpy(k, axis=-2), self.shape), axis=-2)
        if self._mask is not None:
            ksp = ksp * self._mask  # the readout crop spreads nothing across columns: keep zeros exact
        try:
            maps = self._estimate(ksp)
        except ValueError as exc:
            raise UserError(f"{self.path}: slice {i}: {exc}") from None
        return complete_slice(
            ksp,
            i,
            self.options,
            maps=maps,
            rss=self._embedded_rss(i) if self.has_rss else None,
            acquired=self.acquired,
            seed=volume_seed(self.options.seed, self.path.name),
            reference=self.has_reference,
            two_d=True,  # fastMRI's scans are 2D: whole phase-encode lines
        )

    def close(self) -> None:
        self._file.close()


@register_format("fastmri")
class FastMRI(Format):
    """Read by `FastMRISource`."""

    description = "fastMRI multi-coil HDF5 (kspace, ismrmrd_header)"
    priority = 20

    @classmethod
    def detect(cls, path: Path) -> bool:
        return "kspace" in file_keys(path)

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        return FastMRISource(path, options)
