"""ISMRMRD raw HDF5 (dataset/data, dataset/xml): 3D Cartesian and 2D multi-slice acquisitions.

Own setting: `data.ismrmrd_buffer_mb` (conf/base.yaml), the memory for the slab of slices the
reader makes at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrirecon.data.completion import ReadOptions
from mrirecon.data.source import Format, Source, file_keys, register_format

BUFFER_KEY = "ismrmrd_buffer_mb"


@dataclass(frozen=True)
class IsmrmrdOptions:
    """buffer_mb: memory for the reader's slab of slices (MB, > 0)."""

    buffer_mb: float = 256.0


@register_format("ismrmrd")
class Ismrmrd(Format):
    """Read by `data.ismrmrd_raw.IsmrmrdSource`."""

    description = "ISMRMRD raw HDF5 (dataset/data, dataset/xml)"
    priority = 10

    @classmethod
    def detect(cls, path: Path) -> bool:
        keys = file_keys(path)
        return "dataset/data" in keys or "dataset/xml" in keys

    @classmethod
    def options(cls, data: Mapping[str, Any]) -> IsmrmrdOptions:
        value = data.get(BUFFER_KEY, IsmrmrdOptions.buffer_mb)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"{BUFFER_KEY}: {value!r} must be a number > 0 (MB)")
        return IsmrmrdOptions(float(value))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        from mrirecon.data.ismrmrd_raw import IsmrmrdSource

        return IsmrmrdSource(path, options, options.of(IsmrmrdOptions).buffer_mb)
