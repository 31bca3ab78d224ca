"""BART .cfl/.hdr headers whose sizes overflow a 64-bit product: the size check uses Python
integers, so a header cannot wrap its declared size to the file's (the round trip and the
layouts are tested with the other formats in test_formats.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import refused, run_main

from mrirecon.data.formats.cfl import read_cfl


def header(path: Path, dims: list[int], cfl_bytes: int) -> Path:
    """A .hdr of `dims` (16 BART dims) and a .cfl of `cfl_bytes` zero bytes."""
    (path.parent / f"{path.name}.hdr").write_text(
        "# Dimensions\n" + " ".join(map(str, dims + [1] * (16 - len(dims)))) + "\n"
    )
    (path.parent / f"{path.name}.cfl").write_bytes(bytes(cfl_bytes))
    return path.parent / f"{path.name}.cfl"


@pytest.mark.parametrize(
    "dims, cfl_bytes",
    [
        ([2**32, 2**32, 1, 8], 0),  # the reported header: NumPy's product wraps to 0, the size of an empty file
        ([2**62 + 1, 4], 32),  # wraps to 4 elements: the 32 bytes of this file
    ],
)
def test_header_whose_size_overflows_64_bits_is_refused(tmp_path: Path, dims: list[int], cfl_bytes: int) -> None:
    path = header(tmp_path / "k", dims, cfl_bytes)
    with pytest.raises(ValueError) as info:
        read_cfl(path)
    expected = 8
    for d in dims:
        expected *= d
    assert f"{cfl_bytes} bytes, expected {expected} for dimensions" in str(info.value)


def test_preprocess_refuses_it_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    path = header(tmp_path / "k", [2**32, 2**32, 1, 8], 0)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys, "preprocess", "data=full", f"data.source={path}", f"data.path={tmp_path / 'o.h5'}",
        "hardware.threads=1", "hydra.run.dir=run",
    )  # fmt: skip
    refused(code, err, str(path), "0 bytes, expected", "4294967296")
    assert not (tmp_path / "o.h5").exists()
