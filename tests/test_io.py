"""Atomic writes: complete files only, and outputs readable as the umask allows (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mrirecon.io import atomic_path, staged_outputs, write_text


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


def test_staged_outputs_are_written_together_and_replace_stale_ones(tmp_path):
    (tmp_path / "report.html").write_text("old")
    (tmp_path / "sweep_lam.png").write_text("stale")
    (tmp_path / "metrics.csv").write_text("not ours")
    with pytest.raises(RuntimeError), staged_outputs(tmp_path, ("report.html", "sweep_*.png")) as stage:
        write_text(stage / "report.html", "new")
        raise RuntimeError("a figure failed")
    assert (tmp_path / "report.html").read_text() == "old" and (tmp_path / "sweep_lam.png").is_file()
    with staged_outputs(tmp_path, ("report.html", "sweep_*.png")) as stage:
        write_text(stage / "report.html", "new")
        write_text(stage / "sweep_beta.png", "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "report.html", "sweep_beta.png"]
    assert (tmp_path / "report.html").read_text() == "new" and (tmp_path / "metrics.csv").read_text() == "not ours"
