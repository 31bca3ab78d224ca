"""Atomic writes: complete files only, and outputs readable as the umask allows (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mrirecon.io import atomic_path, write_text


def test_atomic_write_has_the_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o644


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "results.csv"
    dest.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert dest.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_link_or_copy_keeps_its_content_when_the_source_is_rewritten(tmp_path):
    from mrirecon.io import link_or_copy, write_text

    write_text(tmp_path / "last.pt", "epoch 3")
    link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    write_text(tmp_path / "last.pt", "epoch 4")  # atomic rewrite: a new file
    assert (tmp_path / "best.pt").read_text() == "epoch 3" and (tmp_path / "last.pt").read_text() == "epoch 4"
    link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_text() == "epoch 4"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
