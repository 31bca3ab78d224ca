"""Atomic writes: complete files only, readable as the umask allows (not mkstemp's 0600), written
through a symbolic link, under temporary names marked as mrirecon's; best.pt as a hard link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mrirecon.errors import UserError
from mrirecon.io.files import atomic_path, staged_outputs, write_text


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
    from mrirecon.io.files import link_or_copy, write_text

    write_text(tmp_path / "last.pt", "epoch 3")
    link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    write_text(tmp_path / "last.pt", "epoch 4")  # atomic rewrite: a new file
    assert (tmp_path / "best.pt").read_text() == "epoch 3" and (tmp_path / "last.pt").read_text() == "epoch 4"
    link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_text() == "epoch 4"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_link_or_copy_is_a_hard_link_where_the_file_system_allows(tmp_path):
    """best.pt is last.pt's file, not a second copy on disk (the link's name was taken by the
    temporary file, so os.link failed and it always copied)."""
    from mrirecon.io.files import link_or_copy, write_text

    write_text(tmp_path / "last.pt", "weights")
    (tmp_path / "best.pt").write_text("an older best")
    link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    last, best = (tmp_path / "last.pt").stat(), (tmp_path / "best.pt").stat()
    assert best.st_ino == last.st_ino and last.st_nlink == 2
    write_text(tmp_path / "last.pt", "next epoch")  # a new file: best.pt keeps its content alone
    assert (tmp_path / "best.pt").read_text() == "weights" and (tmp_path / "best.pt").stat().st_nlink == 1


def test_link_or_copy_copies_when_linking_fails(tmp_path, monkeypatch):
    from mrirecon.io import files as io

    io.write_text(tmp_path / "last.pt", "weights")

    def no_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(io.os, "link", no_links)
    io.link_or_copy(tmp_path / "last.pt", tmp_path / "best.pt")
    assert (tmp_path / "best.pt").read_text() == "weights" and (tmp_path / "last.pt").stat().st_nlink == 1


def test_a_symlinked_destination_is_written_through(tmp_path):
    """The link stays a link; its target gets the new content (a dangling link's is created)."""
    store = tmp_path / "big_disk"
    store.mkdir()
    (store / "data.h5").write_text("old")
    (tmp_path / "data.h5").symlink_to(store / "data.h5")
    write_text(tmp_path / "data.h5", "new")
    assert (tmp_path / "data.h5").is_symlink() and (store / "data.h5").read_text() == "new"
    (tmp_path / "later.h5").symlink_to(store / "later.h5")  # dangling
    write_text(tmp_path / "later.h5", "made")
    assert (tmp_path / "later.h5").is_symlink() and (store / "later.h5").read_text() == "made"
    assert sorted(p.name for p in store.iterdir()) == ["data.h5", "later.h5"]  # no temporary left


def test_temporary_names_are_marked_as_mrirecon_s(tmp_path):
    from mrirecon.io.files import temporary_sibling, temporary_target

    tmp = temporary_sibling(tmp_path / "recon.h5")
    assert tmp.name.startswith(".recon.h5.mrirecon-") and temporary_target(tmp.name) == "recon.h5"
    assert temporary_target(".recon.h5.abcdefgh.tmp") is None and temporary_target("notes.tmp") is None


class Claims:
    """A stand-in for ownership.Outputs: refuses `foreign`, records what was committed."""

    def __init__(self, foreign: str = "") -> None:
        self.foreign, self.committed = foreign, []

    def claim(self, names):
        if self.foreign in names:
            raise UserError(f"{self.foreign}: not ours")

    def commit(self, names):
        self.committed = names


def test_staged_outputs_are_written_together_and_claimed_first(tmp_path):
    (tmp_path / "report.html").write_text("old")
    with pytest.raises(RuntimeError), staged_outputs(tmp_path, Claims()) as stage:
        write_text(stage / "report.html", "new")
        raise RuntimeError("a figure failed")
    assert (tmp_path / "report.html").read_text() == "old"
    refusing = Claims(foreign="report.html")
    with pytest.raises(UserError), staged_outputs(tmp_path, refusing) as stage:
        write_text(stage / "report.html", "new")
        write_text(stage / "sweep_beta.png", "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"] and not refusing.committed
    claims = Claims()
    with staged_outputs(tmp_path, claims) as stage:
        write_text(stage / "report.html", "new")
        write_text(stage / "sweep_beta.png", "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "sweep_beta.png"]
    assert (tmp_path / "report.html").read_text() == "new" and claims.committed == ["report.html", "sweep_beta.png"]
