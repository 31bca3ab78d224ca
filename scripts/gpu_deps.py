#!/usr/bin/env python
"""Print, one per line, the requirements of mrirecon (pyproject.toml, torch left out) and of
its dependencies' own needs that this Python lacks: what scripts/gpu_check installs next to a
machine's own CUDA torch. Nothing is printed when all are there."""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import tomllib

# what the dependencies themselves need (their wheels are installed without dependencies)
TRANSITIVE = [
    "antlr4-python3-runtime==4.9.*",
    "PyWavelets",
    "xsdata",
    "platformdirs",
    "requests",
    "packaging",
    "tqdm",
    "numba",
    "pytest",
    "pytest-xdist",
]


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]


def main() -> None:
    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    wanted = [r for r in project["dependencies"] if name_of(r) != "torch"] + TRANSITIVE
    missing = []
    for requirement in wanted:
        try:
            metadata.distribution(name_of(requirement))
        except metadata.PackageNotFoundError:
            missing.append(requirement.replace(" ", ""))
    sys.stdout.write("".join(f"{r}\n" for r in missing))


if __name__ == "__main__":
    main()
