"""Downloading public raw data sets with pooch: resume, size and checksum checks, a manifest.

Each file is fetched with `pooch.retrieve` (the cache logic: a file already in the folder is not
fetched again; the download goes to a temporary name, its SHA-256 is checked against the known
one when there is one, and only then is it moved into place). The transfer itself is a pooch
downloader, `ResumingDownloader` (requests, the library pooch uses): bytes are appended to
`<name>.part`, so an interrupted download continues where it stopped (an HTTP Range request),
and a finished transfer must have exactly the size the server announced. After a download the
content is checked (`check`, e.g. "is an ISMRMRD file") and the file's size and SHA-256 go to
`manifest.json` in the folder: later runs compare every present file's size with it
(`verify=True`: its SHA-256 too) and fetch again what does not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

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

    Args:
        part: the partial file (kept when the transfer stops, for the next run).
        timeout: seconds to wait for the server (connect and each read).
        progress: a callable (name, done_bytes, total_bytes) -> None, called per chunk.
    """

    def __init__(self, part: Path, timeout: float, progress: Callable[[str, int, int], None] | None = None) -> None:
        self.part, self.timeout, self.progress = part, timeout, progress

    def __call__(self, url: str, output_file: Any, pooch: Any, check_only: bool = False) -> bool | None:
        import requests

        done = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={done}-"} if done else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as response:
            if check_only:
                return response.ok
            if done and response.status_code == 416:  # nothing left to send: the part is complete
                total = done
            else:
                response.raise_for_status()
                if done and response.status_code != 206:  # the server ignored the range: start over
                    done = 0
                total = _total_size(response, done)
                self._stream(response, done, total)
        size = self.part.stat().st_size
        if total and size != total:
            raise DownloadError(f"{url}: the transfer stopped at {size} of {total} bytes")
        os.replace(self.part, output_file)
        return None

    def _stream(self, response: Any, done: int, total: int) -> None:
        with open(self.part, "ab" if done else "wb") as fh:
            for block in response.iter_content(chunk_size=CHUNK):
                fh.write(block)
                done += len(block)
                if self.progress is not None:
                    self.progress(self.part.name[: -len(".part")], done, total)


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
    path = folder / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _write_manifest(folder: Path, manifest: dict[str, dict[str, Any]]) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)


def _present(path: Path, entry: dict[str, Any] | None, known: str | None, verify: bool) -> bool:
    """A file already in the folder that needs no download: its size (and with verify its
    SHA-256) matches the manifest; a known checksum must match its recorded one."""
    if not path.is_file() or entry is None or path.stat().st_size != entry.get("bytes"):
        return False
    if known is not None and entry.get("sha256") != known:
        return False
    return not verify or sha256(path) == entry.get("sha256")


def fetch(
    file: RemoteFile,
    folder: Path,
    timeout: float = 60.0,
    verify: bool = False,
    check: Callable[[Path], str | None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> bool:
    """Make `folder / file.name` a complete, checked copy; True when it was downloaded now.

    Raises DownloadError (network, interruption: the partial file stays for the next run; size,
    checksum or content `check` failures: nothing is left)."""
    import pooch
    import requests

    pooch.get_logger().setLevel(logging.WARNING)  # our progress bar and log say what happens
    target = folder / file.name
    manifest = read_manifest(folder)
    if _present(target, manifest.get(file.name), file.sha256, verify):
        return False
    target.unlink(missing_ok=True)  # pooch would otherwise take the stale file as cached
    part = folder / f"{file.name}.part"
    host = urlparse(file.url).netloc or file.url
    try:
        pooch.retrieve(
            file.url,
            known_hash=f"sha256:{file.sha256}" if file.sha256 else None,
            fname=file.name,
            path=folder,
            downloader=ResumingDownloader(part, timeout, progress),
        )
    except requests.exceptions.RequestException as exc:
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
        part.unlink(missing_ok=True)
        raise DownloadError(f"{file.name}: corrupt download, {str(exc).splitlines()[0]}") from None
    problem = check(target) if check is not None else None
    if problem:
        target.unlink(missing_ok=True)
        raise DownloadError(f"{file.name}: corrupt download ({problem}); removed, run again to fetch it anew")
    log.info("%s: %d bytes, checked", file.name, target.stat().st_size)
    manifest[file.name] = {"bytes": target.stat().st_size, "sha256": sha256(target), "url": file.url}
    _write_manifest(folder, manifest)
    return True


def _reason(exc: BaseException) -> str:
    """The innermost cause of a requests exception, one line."""
    while exc.__context__ is not None and str(exc.__context__):
        exc = exc.__context__
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return text[:160]
