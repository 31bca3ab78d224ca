"""`mrirecon download dataset=<name>`: fetch a public raw data set into `dataset.dir` (data/download.py)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from mrirecon.data.download import MANIFEST, DownloadError, RemoteFile, fetch
from mrirecon.errors import UserError
from mrirecon.io.locks import folder_lock, held, remove_temporaries

log = logging.getLogger(__name__)


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def remote_files(cfg: DictConfig) -> list[RemoteFile]:
    """The files of `dataset`, checked: a base url (file url = url + id), a non-empty list of
    ids, sha256 by id."""
    d = cfg.dataset
    url, suffix = str(d.url), str(d.get("suffix", "") or "")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"dataset.url: {url!r} must be an http(s) address (each file's is url + its id)")
    ids = _container(d.files)
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and plain_name(i) for i in ids):
        raise UserError(
            "dataset.files: expected a non-empty list of file identifiers (plain file names: no '/', not '.' or '..', "
            "not starting with '.')"
        )
    if any(c in suffix for c in "/\\\0"):
        raise UserError(f"dataset.suffix: {suffix!r} must be the end of a file name (no '/')")
    reserved = [f"{i}{suffix}" for i in ids if not plain_name(f"{i}{suffix}") or f"{i}{suffix}" == MANIFEST]
    if reserved or any(f"{i}{suffix}".endswith(".part") for i in ids):
        raise UserError(f"dataset.suffix: {suffix!r} makes file names download cannot use ({MANIFEST}, *.part)")
    known = _container(d.get("sha256")) or {}
    if not isinstance(known, dict):
        raise UserError("dataset.sha256: expected a mapping from file identifier to SHA-256 (or {})")
    limit = d.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"dataset.limit: {limit!r} must be null or an integer >= 1")
    chosen = ids[:limit] if limit else ids
    return [RemoteFile(f"{i}{suffix}", url + i, str(known[i]) if i in known else None) for i in chosen]


def plain_name(name: str) -> bool:
    """Whether `name` is a plain file name in dataset.dir: no folder part, not '.' or '..', not
    hidden (mrirecon's own names there: locks, temporary files)."""
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0")


def content_check(fmt: Any) -> Any:
    """The check of a downloaded file's content for `dataset.format` (a registered file format,
    e.g. ismrmrd, or null)."""
    if fmt is None:
        return None
    from mrirecon.data.source import detect, file_formats

    names = [f.name for f in file_formats()]
    if str(fmt) not in names:
        raise UserError(f"dataset.format: {fmt!r} must be one of {', '.join(names)} or null")

    def is_format(path: Path) -> str | None:
        try:
            found = detect(path)
        except UserError as exc:
            return str(exc).split(": ", 1)[-1]
        expected = next(f for f in file_formats() if f.name == str(fmt))
        return None if found.name == str(fmt) else f"a {found.name} file, not {expected.description}"

    return is_format


def run(cfg: DictConfig) -> Path:
    """Download every file of `dataset` into `dataset.dir` (present, checked files are kept;
    present files without a manifest entry are checked and adopted, or reported: never removed)
    holding the folder's lock; returns the folder."""
    files = remote_files(cfg)
    check = content_check(cfg.dataset.get("format"))
    folder = Path(str(cfg.dataset.dir))
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"dataset.dir: cannot create {folder} ({exc.strerror})") from None
    try:
        with held(folder_lock(folder), "mrirecon download", "dataset.dir", str(folder)):
            remove_temporaries(folder)
            fetched = fetch_all(cfg, files, folder, check)
    finally:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # made now and nothing came: nothing left behind
    log.info(
        "%s: %d files in %s (%d downloaded now, %d already there); next: mrirecon preprocess data=full "
        "data.source=%s data.path=outputs/data/%s_full.h5",
        cfg.dataset.name,
        len(files),
        folder,
        fetched,
        len(files) - fetched,
        folder,
        cfg.dataset.name,
    )
    return folder


def fetch_all(cfg: DictConfig, files: list[RemoteFile], folder: Path, check: Any) -> int:
    """Fetch each file with a progress bar; the number downloaded now. A DownloadError is the
    run's error line."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    fetched = 0
    with Progress(*columns, transient=True) as progress:
        for k, file in enumerate(files):
            bar = progress.add_task(f"{k + 1}/{len(files)} {file.name}", total=None)

            def advance(_: str, done: int, total: int, bar: Any = bar) -> None:
                progress.update(bar, completed=done, total=total or None)

            try:
                fetched += fetch(file, folder, float(cfg.dataset.timeout), bool(cfg.dataset.verify), check, advance)
            except DownloadError as exc:
                raise UserError(f"download {cfg.dataset.name}: {exc}") from None
            progress.remove_task(bar)
    return fetched
