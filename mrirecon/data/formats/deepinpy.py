"""DeepInPy HDF5 (imgs, maps, ksp, masks): the users' own files and what preprocess writes."""

from __future__ import annotations

from pathlib import Path

from mrirecon.data.completion import ReadOptions
from mrirecon.data.source import Format, Source, file_keys, register_format


@register_format("deepinpy")
class DeepInPy(Format):
    """Read by `data.h5.DeepInPyFile` (with `data.transpose`)."""

    description = "DeepInPy HDF5 (imgs, maps, ksp, masks)"
    priority = 40  # after raw k-space, whose HDF5 files have `ksp` too

    @classmethod
    def detect(cls, path: Path) -> bool:
        return bool({"imgs", "maps", "ksp", "masks"} & file_keys(path))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        from mrirecon.data.h5 import DeepInPyFile

        return DeepInPyFile(path, transpose=options.transpose)
