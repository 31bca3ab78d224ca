"""`mrirecon download`: small ISMRMRD files served by a local HTTP server (no internet).

The server (http.server in a thread, on 127.0.0.1) answers HTTP Range requests and can cut a
transfer after N bytes or serve corrupted bytes; it records every request's Range header.
Download never removes or replaces a file it did not write in the run: files present without a
manifest entry are checked and adopted, or reported and kept.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from formats_helpers import centred_fftn, phantom_coils, write_ismrmrd
from helpers import ROOT, refused, run_cli, run_main

from mrirecon.data.download import CHUNK, MANIFEST, DownloadError, RemoteFile, fetch, read_manifest

IDS = ("knee-a", "knee-b", "knee-c")


class Server:
    """Files by id under /download/<id> (mridata.org's layout); `cut[name] = n` ends that file's next transfer
    after n bytes (the connection closes); `corrupt[name]` is served instead of the file."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.cut, self.corrupt = files, {}, {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                data = server.corrupt.get(name, server.files.get(name))
                if data is None:
                    self.send_error(404)
                    return
                start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = server.cut.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/download/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    files = {}
    for k, name in enumerate(IDS):
        path = write_ismrmrd(
            tmp_path / f"{name}.src",
            centred_fftn(phantom_coils(4, (8, 24, 16), seed=60 + k), (1, 2, 3)).astype(np.complex64),
            patient=name,
        )
        files[name] = path.read_bytes()
    s = Server(files)
    yield s
    s.close()


def download(cwd: Path, server: Server, *extra: str):
    ids = "[" + ",".join(IDS) + "]"
    return run_cli(
        "download",
        f"dataset.url={server.url}",
        f"dataset.files={ids}",
        "dataset.dir=knees",
        "hydra.run.dir=dl",
        *extra,
        cwd=cwd,
    )


@pytest.mark.slow  # the CLI in subprocesses
def test_download_resume_and_preprocess(tmp_path, server):
    """Interrupted, then resumed with a Range request, then nothing to do; the folder then goes
    through preprocess with one subject per file and splits that never cut one."""
    server.cut["knee-b"] = 300_000
    res = download(tmp_path, server)
    assert res.returncode == 2 and "knee-b.h5" in res.stderr and "again to resume" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    part = tmp_path / "knees" / "knee-b.h5.part"
    got = part.stat().st_size
    assert 0 < got <= 300_000 and got % CHUNK == 0 and (tmp_path / "knees" / "knee-a.h5").is_file()
    res = download(tmp_path, server)
    assert res.returncode == 0, res.stderr
    assert ("knee-b", f"bytes={got}-") in server.requests and not part.exists()
    assert [n for n, _ in server.requests].count("knee-a") == 1  # kept, not fetched again
    for name, data in server.files.items():
        assert (tmp_path / "knees" / f"{name}.h5").read_bytes() == data
    manifest = read_manifest(tmp_path / "knees")
    assert manifest["knee-c.h5"]["sha256"] == hashlib.sha256(server.files["knee-c"]).hexdigest()
    before = len(server.requests)
    assert download(tmp_path, server).returncode == 0 and len(server.requests) == before
    res = run_cli(
        "preprocess", "data=full", "data.source=knees", "data.path=knees.h5", "data.espirit.calib_width=12",
        "data.mask=fastmri_equispaced", "data.undersampling.accel=3", "data.val_fraction=0.34",
        "data.test_fraction=0.34", "hydra.run.dir=pre", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    from mrirecon.data.h5 import DeepInPyFile

    f = DeepInPyFile(tmp_path / "knees.h5")
    assert json.loads(f.attrs["source_subject_ids"]) == list(IDS)
    splits = f.splits()
    assert [np.unique(f.subjects()[splits[s]]).tolist() for s in ("train", "val", "test")] == [[0], [1], [2]]


@pytest.mark.slow  # the CLI in subprocesses
def test_corrupt_download_is_removed(tmp_path, server):
    good = hashlib.sha256(server.files["knee-a"]).hexdigest()
    server.corrupt["knee-a"] = server.files["knee-a"][:-10] + b"x" * 10
    res = download(tmp_path, server, f"+dataset.sha256.knee-a='{good}'")
    assert res.returncode == 2 and "knee-a.h5: corrupt download" in res.stderr and "SHA256" in res.stderr.upper()
    assert not list((tmp_path / "knees").glob("knee-a*"))
    # without a known checksum the content check catches a file that is not ISMRMRD
    server.corrupt["knee-a"] = b"<html>maintenance</html>" * 40
    res = download(tmp_path, server)
    assert res.returncode == 2 and "corrupt download" in res.stderr and not (tmp_path / "knees" / "knee-a.h5").exists()
    del server.corrupt["knee-a"]
    assert download(tmp_path, server).returncode == 0


def test_a_changed_local_file_is_reported_and_kept(tmp_path, server):
    """A file whose size no longer matches the manifest (or that has none) and not the server's:
    reported, kept as it is (it was deleted and fetched again)."""
    folder = tmp_path / "dl"
    folder.mkdir()
    file = RemoteFile("knee-a.h5", server.url + "knee-a")
    assert fetch(file, folder) is True and fetch(file, folder) is False
    (folder / "knee-a.h5").write_bytes(server.files["knee-a"][:100])
    size = len(server.files["knee-a"])
    with pytest.raises(DownloadError, match=f"knee-a.h5 is in .* with 100 bytes, the server's file has {size}; kept"):
        fetch(file, folder)
    assert (folder / "knee-a.h5").read_bytes() == server.files["knee-a"][:100]


def knees(capsys, tmp_path, url: str, *extra: str) -> tuple[int, str, str]:
    """`mrirecon download` of the three test files into tmp_path/knees, in this process."""
    return run_main(capsys, "download", f"dataset.url={url}", f"dataset.files=[{','.join(IDS)}]",
                    f"dataset.dir={tmp_path / 'knees'}", f"hydra.run.dir={tmp_path / 'dl'}", *extra)  # fmt: skip


def users_copies(tmp_path, server, names=IDS) -> dict[str, bytes]:
    """The user's own copies of `names` in tmp_path/knees (no manifest): {file name: bytes}."""
    folder = tmp_path / "knees"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / f"{name}.h5").write_bytes(server.files[name])
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_files_without_a_manifest_are_kept_offline(tmp_path, server, capsys):
    """Valid files and no manifest.json, offline: one error line, every file kept (each was
    deleted before 'cannot reach')."""
    before = users_copies(tmp_path, server, IDS[:2])
    code, _, err = knees(capsys, tmp_path, "http://127.0.0.1:9/download/", "dataset.timeout=5")
    assert {p.name: p.read_bytes() for p in (tmp_path / "knees").iterdir()} == before
    refused(code, err, "knee-a.h5", "cannot reach 127.0.0.1:9", "kept as it is")


def test_files_without_a_manifest_are_adopted_when_the_server_confirms_them(tmp_path, server, capsys):
    """Checked by content and by the server's size (a one-byte request), recorded, not fetched."""
    before = users_copies(tmp_path, server, IDS[:2])
    code, _, err = knees(capsys, tmp_path, server.url)
    assert code == 0, err
    assert [r for r in server.requests if r[0] != "knee-c"] == [("knee-a", "bytes=0-0"), ("knee-b", "bytes=0-0")]
    manifest = read_manifest(tmp_path / "knees")
    assert manifest["knee-a.h5"]["adopted"] and manifest["knee-b.h5"]["bytes"] == len(server.files["knee-b"])
    assert all((tmp_path / "knees" / n).read_bytes() == data for n, data in before.items())
    assert (tmp_path / "knees" / "knee-c.h5").read_bytes() == server.files["knee-c"]


def test_a_present_file_of_other_content_is_reported_and_kept(tmp_path, server, capsys):
    folder = tmp_path / "knees"
    folder.mkdir()
    (folder / "knee-a.h5").write_bytes(b"<html>my notes</html>")
    code, _, err = knees(capsys, tmp_path, server.url)
    refused(code, err, "knee-a.h5", "without a matching manifest entry", "kept as it is")
    assert (folder / "knee-a.h5").read_bytes() == b"<html>my notes</html>"


def test_a_corrupt_manifest_is_an_error(tmp_path, server, capsys):
    """Read as empty, it let download delete every file it listed."""
    before = users_copies(tmp_path, server)
    (tmp_path / "knees" / MANIFEST).write_text('{"knee-a.h5": {"bytes": 12')
    code, _, err = knees(capsys, tmp_path, server.url)
    refused(code, err, str(tmp_path / "knees" / MANIFEST), "unreadable", "move it away")
    assert {p.name: p.read_bytes() for p in (tmp_path / "knees").iterdir() if p.name != MANIFEST} == before
    assert not server.requests


def test_a_part_is_trusted_only_when_it_is_its_own_and_the_server_confirms_it(tmp_path, server):
    """A foreign .part larger than the remote file was taken as complete on HTTP 416 and recorded
    as the download; now it is reported and kept. download's own .part that the server's size
    does not confirm is started over."""
    folder = tmp_path / "dl"
    folder.mkdir()
    file = RemoteFile("knee-a.h5", server.url + "knee-a")
    foreign = np.random.default_rng(0).bytes(len(server.files["knee-a"]) + 5000)
    (folder / "knee-a.h5.part").write_bytes(foreign)
    with pytest.raises(DownloadError, match="knee-a.h5.part .* not a partial download of mrirecon"):
        fetch(file, folder)
    assert (folder / "knee-a.h5.part").read_bytes() == foreign and not (folder / "knee-a.h5").exists()
    (folder / MANIFEST).write_text(json.dumps({"knee-a.h5.part": {"partial": True, "url": file.url}}))
    assert fetch(file, folder) is True  # its own part, 416 with another total: started over
    assert (folder / "knee-a.h5").read_bytes() == server.files["knee-a"] and not (folder / "knee-a.h5.part").exists()
    assert server.requests[-2:] == [("knee-a", f"bytes={len(foreign)}-"), ("knee-a", None)]
    assert set(read_manifest(folder)) == {"knee-a.h5"}


def test_ids_and_suffix_are_plain_file_names(tmp_path, capsys):
    """suffix=/../../x.h5 wrote outside dataset.dir."""
    for override, key in (("dataset.suffix=/../../x.h5", "dataset.suffix"), ("dataset.files=[..]", "dataset.files"),
                          ("dataset.files=[.hidden]", "dataset.files"), ("dataset.suffix=.part", "dataset.suffix")):  # fmt: skip
        code, _, err = run_main(capsys, "download", "dataset.url=http://127.0.0.1:9/", "dataset.files=[a]", override,
                                f"dataset.dir={tmp_path / 'in' / 'knees'}", f"hydra.run.dir={tmp_path / 'dl'}")  # fmt: skip
        refused(code, err, key)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # the CLI in subprocesses
def test_offline_is_one_error_line(tmp_path):
    res = run_cli(
        "download", "dataset.url=http://127.0.0.1:9/download/", "dataset.files=[a]", "dataset.dir=nothing",
        "dataset.timeout=5", "hydra.run.dir=dl", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2 and res.stderr.startswith("error: download stanford_knees: cannot reach 127.0.0.1:9")
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "nothing").exists()
    with pytest.raises(DownloadError, match="cannot reach"):
        fetch(RemoteFile("a", "http://127.0.0.1:9/a"), tmp_path, timeout=5)


def test_stanford_knee_list_is_complete():
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ROOT / "conf" / "dataset" / "stanford_knees.yaml")
    assert len(cfg.files) == 20 and len(set(cfg.files)) == 20
    assert all(len(i) == 36 and i.count("-") == 4 for i in cfg.files) and cfg.url.startswith("http")
