"""fastMRI multi-coil HDF5 (kspace, ismrmrd_header)."""

from __future__ import annotations

from pathlib import Path

from mrirecon.data.completion import ReadOptions
from mrirecon.data.source import Format, Source, file_keys, register_format


@register_format("fastmri")
class FastMRI(Format):
    """Read by `data.fastmri.FastMRISource`."""

    description = "fastMRI multi-coil HDF5 (kspace, ismrmrd_header)"
    priority = 20

    @classmethod
    def detect(cls, path: Path) -> bool:
        return "kspace" in file_keys(path)

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        from mrirecon.data.fastmri import FastMRISource

        return FastMRISource(path, options)
