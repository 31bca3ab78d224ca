"""One writer at a time: a lock held by another process refuses with its holder named; what a
killed writer left is removed, and only mrirecon's own temporary names."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mrirecon.errors import UserError
from mrirecon.io.locks import Lock, file_lock, folder_lock, held, remove_run_dir_temporaries, remove_temporaries

HOLD = """
import sys
from pathlib import Path
from mrirecon.io.locks import Lock
lock = Lock(Path(sys.argv[1]), "mrirecon train")
lock.acquire("hydra.run.dir", sys.argv[1])
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin
lock.release()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, Path]]:
    """Another process holding the lock of tmp_path/run (as a running `mrirecon train` does)."""
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder_lock(run))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    yield proc, run
    proc.communicate("", timeout=30)


def test_a_held_lock_refuses_naming_its_holder(holder) -> None:
    proc, run = holder
    with pytest.raises(UserError) as refused:
        Lock(folder_lock(run), "mrirecon reconstruct").acquire("hydra.run.dir", str(run))
    line = str(refused.value)
    assert line.startswith(f"hydra.run.dir: {run} is being written by another process (mrirecon train, pid {proc.pid}")
    assert f"on {socket.gethostname()}" in line and "choose another hydra.run.dir" in line


def test_the_lock_goes_with_its_holder(tmp_path: Path) -> None:
    """Released: the lock file is removed and the next writer takes it; a holder killed with
    SIGKILL leaves its file but holds nothing."""
    path = folder_lock(tmp_path)
    with held(path, "mrirecon evaluate", "hydra.run.dir", str(tmp_path)):
        assert '"command": "mrirecon evaluate"' in path.read_text() and f'"pid": {os.getpid()}' in path.read_text()
    assert not path.exists()
    code = f"from mrirecon.io.locks import Lock; from pathlib import Path; import os; Lock(Path({str(path)!r}), 'x').acquire('k', 'w'); os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9 and path.exists()
    with held(path, "mrirecon evaluate", "hydra.run.dir", str(tmp_path)):
        pass
    assert not path.exists()


def test_a_file_lock_is_shared_by_the_names_of_one_file(tmp_path: Path) -> None:
    (tmp_path / "real.h5").write_bytes(b"")
    (tmp_path / "link.h5").symlink_to(tmp_path / "real.h5")
    assert file_lock(tmp_path / "link.h5") == file_lock(tmp_path / "real.h5") == tmp_path / ".real.h5.lock"


def test_only_mrirecon_temporaries_are_removed(tmp_path: Path) -> None:
    """A killed run's `.X.mrirecon-XXXXXXXX.tmp` files and `.staged.mrirecon-*` folders go; the
    user's look-alikes and another writer's (a lock file beside) stay."""
    ours = [".recon.h5.mrirecon-k3j2h1g0.tmp", ".metrics.csv.mrirecon-abcdefgh.tmp"]
    theirs = [".notes.abcdefgh.tmp", "draft.tmp", ".staged.mine", "keep.h5"]
    busy = ".data.h5.mrirecon-zzzzzzzz.tmp"  # data.h5 is being written: its lock is there
    for name in [*ours, *theirs[:2], busy, "keep.h5", ".data.h5.lock"]:
        (tmp_path / name).write_text("x")
    (tmp_path / ".staged.mine").mkdir()
    (tmp_path / ".staged.mrirecon-q1w2e3r4").mkdir()
    (tmp_path / ".staged.mrirecon-q1w2e3r4" / "report.html").write_text("half")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".last.pt.mrirecon-a1b2c3d4.tmp").write_text("half")
    remove_run_dir_temporaries(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == sorted([*theirs, busy, ".data.h5.lock", "checkpoints"])
    assert remove_temporaries(tmp_path, "data.h5") == [tmp_path / busy]  # the writer of data.h5 removes it
