"""ISMRMRD raw HDF5 (dataset/data, dataset/xml): 3D Cartesian and 2D multi-slice acquisitions.

Own settings (conf/base.yaml): `data.ismrmrd_buffer_mb`, the memory for the slab of slices the
reader makes at once; `data.ismrmrd_repetitions`, average the repetitions of a line or keep each
repetition as its own slices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrirecon.data.completion import ReadOptions
from mrirecon.data.source import Format, Source, file_keys, register_format

BUFFER_KEY = "ismrmrd_buffer_mb"
REPETITIONS_KEY = "ismrmrd_repetitions"
REPETITIONS = ("average", "slices")


@dataclass(frozen=True)
class IsmrmrdOptions:
    """buffer_mb: memory for the reader's slab of slices (MB, > 0); repetitions: 'average' or
    'slices' (each repetition of a 2D scan its own slices)."""

    buffer_mb: float = 256.0
    repetitions: str = "average"


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
        repetitions = data.get(REPETITIONS_KEY, IsmrmrdOptions.repetitions)
        if repetitions not in REPETITIONS:
            raise ValueError(f"{REPETITIONS_KEY}: {repetitions!r} must be one of {', '.join(REPETITIONS)}")
        return IsmrmrdOptions(float(value), str(repetitions))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        from mrirecon.data.ismrmrd_raw import IsmrmrdSource

        own = options.of(IsmrmrdOptions)
        return IsmrmrdSource(path, options, own.buffer_mb, own.repetitions)
