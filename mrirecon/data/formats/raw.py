"""Raw multi-coil k-space without maps: .npy (C, X, Y) / (N, C, X, Y), or HDF5 `ksp` without `maps`."""

from __future__ import annotations

from pathlib import Path

from mrirecon.data.completion import ReadOptions
from mrirecon.data.source import Format, Source, file_keys, is_npy, register_format


@register_format("raw")
class RawKspace(Format):
    """Read by `data.raw.RawKspaceSource` (ESPIRiT maps, `data.transpose`)."""

    description = "raw k-space HDF5 (ksp without maps) or .npy (C, X, Y) / (N, C, X, Y)"
    priority = 30

    @classmethod
    def detect(cls, path: Path) -> bool:
        keys = file_keys(path)
        return is_npy(path) or ("ksp" in keys and "maps" not in keys)

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        from mrirecon.data.raw import RawKspaceSource

        return RawKspaceSource(path, options.transpose, options.calib_width, options.thresh, options.crop)
