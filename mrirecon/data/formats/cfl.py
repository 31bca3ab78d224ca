"""BART .cfl/.hdr pairs: k-space in any 2D plane of (x, y, z), coils, ..., slices.

Own setting: `data.cfl_maps` (conf/base.yaml), BART coil maps to use instead of ESPIRiT.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrirecon.data.completion import ReadOptions
from mrirecon.data.source import Format, Source, cfl_base, register_format

MAPS_KEY = "cfl_maps"


@dataclass(frozen=True)
class CflOptions:
    """maps: BART .cfl coil maps (x, y, 1, coils, maps, ..., slices) to use (None: ESPIRiT)."""

    maps: str | None = None


@register_format("cfl")
class Cfl(Format):
    """Read by `data.cfl.CflSource`."""

    description = "BART .cfl/.hdr pair"
    priority = 50

    @classmethod
    def detect(cls, path: Path) -> bool:
        return cfl_base(path) is not None

    @classmethod
    def options(cls, data: Mapping[str, Any]) -> CflOptions:
        maps = data.get(MAPS_KEY)
        return CflOptions(None if maps is None else str(maps))

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        from mrirecon.data.cfl import CflSource

        return CflSource(cfl_base(path) or path, options, options.of(CflOptions).maps)
