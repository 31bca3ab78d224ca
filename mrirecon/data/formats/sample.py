"""The embedded sample (`data.source=sample`, the default): a named source, not a file.

Own settings: `data.sample.*` (conf/base.yaml): acceleration and calibration of its masks,
coils, seed and noise level (data/sample.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mrirecon.data.completion import ReadOptions
from mrirecon.data.sample import NOISE, SampleSource
from mrirecon.data.source import Format, Source, register_format

SETTINGS_KEY = "sample"


@dataclass(frozen=True)
class SampleOptions:
    """The keyword arguments of `SampleSource` (checked there)."""

    accel: float = 6.0
    calib: int = 24
    coils: int = 8
    seed: int = 723
    noise: float = NOISE


@register_format("sample")
class Sample(Format):
    """15 real knee magnitudes made into a multi-coil dataset (`SampleSource`)."""

    description = "the embedded sample (data.source=sample)"
    named = True

    @classmethod
    def options(cls, data: Mapping[str, Any]) -> SampleOptions:
        given = dict(data.get(SETTINGS_KEY) or {})
        known = [f.name for f in dataclasses.fields(SampleOptions)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"{SETTINGS_KEY}: unknown key '{unknown[0]}' (expected {', '.join(known)})")
        return SampleOptions(**given)

    @classmethod
    def open(cls, path: Path, options: ReadOptions) -> Source:
        return SampleSource(**dataclasses.asdict(options.of(SampleOptions)))
