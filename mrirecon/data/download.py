"""Downloading public raw data sets with pooch: resume, size and checksum checks, a manifest.

Each file is fetched with `pooch.retrieve` (the download goes to a temporary name, its SHA-256 is
checked against the known one when there is one, and only then is it moved into place). The
transfer itself is a pooch downloader, `ResumingDownloader` (requests, the library pooch uses):
bytes are appended to `<name>.part`, so an interrupted download continues where it stopped (an
HTTP Range request), and a finished transfer must have exactly the size the server announced.
After a download the content is checked (`check`, e.g. "is an ISMRMRD file") and the file's
size and SHA-256 go to `manifest.json` in the folder: later runs compare every present file's
size with it (`verify=True`: its SHA-256 too).

Nothing in the folder that this run did not write is ever removed or replaced. A present file
without a matching manifest entry (the user's own copy, a file changed since) is checked by
content and, when the server can be reached, by its size (and a known SHA-256): then it is
adopted into the manifest, else reported and kept. A `.part` is resumed only when the manifest
records it as this downloader's (a browser's `.part` is not) and the server's total size
(Content-Range) confirms it; an unreadable manifest is an error, never read as empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mrirecon.io.files import write_text

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
CHUNK = 1 << 16  # bytes written to the partial file at a time (what an interruption can lose)


class DownloadError(Exception):
    """A download that failed (network, interruption, size, checksum, content): one line."""


def sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class ResumingDownloader:
    """A pooch downloader that appends to `part` and resumes it with an HTTP Range request.

    A partial file is trusted only when the server confirms it: a 206 whose Content-Range
    starts where the part ends, or a 416 (nothing left) whose Content-Range total is the part's
    size; otherwise the transfer starts over (the part is this downloader's own: `fetch` checks).

    Args:
        part: the partial file (kept when the transfer stops, for the next run).
        timeout: seconds to wait for the server (connect and each read).
        progress: a callable (name, done_bytes, total_bytes) -> None, called per chunk.
        starting: called before a new part is created (to record it as this downloader's).
    """

    def __init__(
        self,
        part: Path,
        timeout: float,
        progress: Callable[[str, int, int], None] | None = None,
        starting: Callable[[], None] | None = None,
    ) -> None:
        self.part, self.timeout, self.progress, self.starting = part, timeout, progress, starting

    def __call__(self, url: str, output_file: Any, pooch: Any, check_only: bool = False) -> bool | None:
        import requests

        done = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={done}-"} if done else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if check_only:
                return response.ok
            if done and response.status_code == 416:
                total = _range(response)[1]  # nothing left to send: the part is complete if its size is the file's
            else:
                response.raise_for_status()
                total = _total_size(response, done) if not done or _resumes(response, done) else None
                if total is not None:
                    self._stream(response, done, total)
        if total is None or (done and response.status_code == 416 and total != done):
            log.warning("%s: its %d bytes are not confirmed by the server: starting over", self.part.name, done)
            self.part.unlink()
            return self(url, output_file, pooch)
        size = self.part.stat().st_size
        if total and size != total:
            raise DownloadError(f"{url}: the transfer stopped at {size} of {total} bytes")
        os.replace(self.part, output_file)
        return None

    def _stream(self, response: Any, done: int, total: int) -> None:
        if not done and self.starting is not None:
            self.starting()
        with open(self.part, "ab" if done else "wb") as fh:
            for block in response.iter_content(chunk_size=CHUNK):
                fh.write(block)
                done += len(block)
                if self.progress is not None:
                    self.progress(self.part.name[: -len(".part")], done, total)


def _range(response: Any) -> tuple[int | None, int | None]:
    """(first byte, total size) of a response's Content-Range ('bytes 100-199/200', 'bytes */200')."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+)", response.headers.get("Content-Range", "").strip())
    if match is None:
        return None, None
    return (None if match[1] is None else int(match[1])), int(match[2])


def _resumes(response: Any, done: int) -> bool:
    """Whether a response to `Range: bytes=done-` continues the part: a 206 from byte `done`."""
    return response.status_code == 206 and _range(response)[0] == done


def _total_size(response: Any, done: int) -> int:
    """The whole file's size from Content-Range (a resumed transfer) or Content-Length; 0 unknown."""
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return done + int(length) if length and length.isdigit() else 0


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its name in the folder, its URL, its SHA-256 when known."""

    name: str
    url: str
    sha256: str | None = None


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The manifest of `folder` ({} when there is none); DownloadError when it is unreadable or
    not a manifest (it is never taken as empty: its files would lose their record)."""
    path = folder / MANIFEST
    if not os.path.lexists(path):
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"not JSON: {str(exc).splitlines()[0]}"
        raise DownloadError(
            f"{path} is unreadable ({reason}): move it away to check and record the files anew"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in data.items()):
        raise DownloadError(f"{path} is not a download manifest: move it away to check and record the files anew")
    return data


def _write_manifest(folder: Path, manifest: dict[str, dict[str, Any]]) -> None:
    write_text(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _present(path: Path, entry: dict[str, Any] | None, known: str | None, verify: bool) -> bool:
    """A file already in the folder that needs no download: its size (and with verify its
    SHA-256) matches the manifest; a known checksum must match its recorded one."""
    if not path.is_file() or entry is None or path.stat().st_size != entry.get("bytes"):
        return False
    if known is not None and entry.get("sha256") != known:
        return False
    return not verify or sha256(path) == entry.get("sha256")


def remote_size(url: str, timeout: float) -> int | None:
    """The size of the file at `url` as its server says (a one-byte Range request: the total of
    Content-Range, else Content-Length of a whole answer); None when it does not say. Raises
    requests' exceptions (offline, refused)."""
    import requests

    with requests.get(url, headers={"Range": "bytes=0-0"}, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        if response.status_code == 206:
            return _range(response)[1]
        length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else None


def adopt(file: RemoteFile, folder: Path, timeout: float, check: Callable[[Path], str | None] | None) -> None:
    """Check a present file that the manifest does not record as it is (the user's own copy, or
    changed since) by content, by a known SHA-256 and by the server's size, and record it in the
    manifest; raise DownloadError (the file kept as it is) when a check fails or cannot be made."""
    import requests

    target = folder / file.name
    keep = "kept as it is: move it away to download it anew"
    problem = check(target) if check is not None else None
    if problem:
        raise DownloadError(f"{file.name} is in {folder} without a matching manifest entry and {problem}; {keep}")
    size, digest = target.stat().st_size, sha256(target)
    if file.sha256 is not None and digest != file.sha256:
        raise DownloadError(f"{file.name} is in {folder}, its SHA-256 {digest} is not the known {file.sha256}; {keep}")
    try:
        remote = remote_size(file.url, timeout)
    except requests.exceptions.RequestException as exc:
        host = urlparse(file.url).netloc or file.url
        raise DownloadError(
            f"{file.name} is in {folder} without a matching manifest entry and its size cannot be checked: cannot "
            f"reach {host} ({_reason(exc)}); it is kept as it is, run again online to check and record it"
        ) from None
    if remote is not None and remote != size:
        raise DownloadError(f"{file.name} is in {folder} with {size} bytes, the server's file has {remote}; {keep}")
    if remote is None and file.sha256 is None:
        log.warning("%s: the server does not say its size: recorded after the content check only", file.name)
    manifest = read_manifest(folder)
    manifest[file.name] = {"bytes": size, "sha256": digest, "url": file.url, "adopted": True}
    _write_manifest(folder, manifest)
    log.info("%s: %d bytes already in %s, checked and recorded in %s", file.name, size, folder, MANIFEST)


def fetch(
    file: RemoteFile,
    folder: Path,
    timeout: float = 60.0,
    verify: bool = False,
    check: Callable[[Path], str | None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> bool:
    """Make `folder / file.name` a complete, checked copy; True when it was downloaded now.

    A present file that the manifest does not record as it is gets `adopt`ed or reported, never
    replaced. Raises DownloadError (network, interruption: the partial file stays for the next
    run; size, checksum or content `check` failures of a download: nothing is left)."""
    target = folder / file.name
    manifest = read_manifest(folder)
    if os.path.lexists(target):
        if not _present(target, manifest.get(file.name), file.sha256, verify):
            adopt(file, folder, timeout, check)
        return False
    part = folder / f"{file.name}.part"
    if os.path.lexists(part) and not manifest.get(part.name, {}).get("partial"):
        raise DownloadError(
            f"{part.name} in {folder} is not a partial download of mrirecon (the manifest does not record it): "
            "kept as it is; move it away to download the file"
        )

    def starting() -> None:  # the part is this downloader's: a later run may resume it
        _write_manifest(folder, {**read_manifest(folder), part.name: {"partial": True, "url": file.url}})

    _retrieve(file, folder, ResumingDownloader(part, timeout, progress, starting))
    problem = check(target) if check is not None else None
    if problem:
        target.unlink(missing_ok=True)  # downloaded now: ours to remove
        raise DownloadError(f"{file.name}: corrupt download ({problem}); removed, run again to fetch it anew")
    log.info("%s: %d bytes, checked", file.name, target.stat().st_size)
    manifest = read_manifest(folder)
    manifest.pop(part.name, None)
    manifest[file.name] = {"bytes": target.stat().st_size, "sha256": sha256(target), "url": file.url}
    _write_manifest(folder, manifest)
    return True


def _retrieve(file: RemoteFile, folder: Path, downloader: ResumingDownloader) -> None:
    """Download `file` into `folder` with pooch and `downloader`; DownloadError on failure."""
    import pooch
    import requests

    pooch.get_logger().setLevel(logging.WARNING)  # our progress bar and log say what happens
    host = urlparse(file.url).netloc or file.url
    try:
        pooch.retrieve(
            file.url,
            known_hash=f"sha256:{file.sha256}" if file.sha256 else None,
            fname=file.name,
            path=folder,
            downloader=downloader,
        )
    except requests.exceptions.RequestException as exc:
        part = downloader.part
        got = part.stat().st_size if part.exists() else 0
        if got:
            raise DownloadError(
                f"{file.name}: the transfer from {host} stopped after {got} bytes ({_reason(exc)}); run the same "
                "command again to resume"
            ) from None
        if isinstance(exc, requests.exceptions.ConnectionError):
            raise DownloadError(f"cannot reach {host} ({_reason(exc)}): is this machine online?") from None
        raise DownloadError(f"{file.name}: download from {host} failed ({_reason(exc)})") from None
    except ValueError as exc:  # pooch: the SHA-256 does not match
        downloader.part.unlink(missing_ok=True)
        raise DownloadError(f"{file.name}: corrupt download, {str(exc).splitlines()[0]}") from None


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests exception, one line."""
    while exc.__context__ is not None and str(exc.__context__):
        exc = exc.__context__
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return text[:160]
