"""HDF5 inputs opened read-only and checked to hold their own data: the one way mrirecon opens
an HDF5 file it reads (source files of every format, processed files, evaluate's recon.h5).

HDF5 can make a file read data that live elsewhere, silently: an external link (a name that
opens an object of another file), external raw storage (a dataset whose bytes are those of
other files, e.g. `/etc/passwd`) and a virtual dataset (a view of datasets in other files; a
missing source reads as the fill value, zeros, as if it were data). `open_hdf5` walks every
link of the file before anything is read (H5Lvisit: links only, never followed) and refuses
all three, and soft links that lead nowhere (dangling, or a loop): one error naming the file
and the object. Soft links within the file are followed as usual. The walk reads link and
object headers only (milliseconds for the few objects of a data file).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from mrirecon.errors import UserError


class HDF5InputError(UserError):
    """An HDF5 input that cannot be read, or refers outside itself: `reason` says why (without
    the path, which the message starts with)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def open_hdf5(path: str | os.PathLike[str]) -> h5py.File:
    """`path` opened read-only and checked (`outside_reference`); an HDF5InputError (a UserError
    naming the file) when it is not a readable HDF5 file or refers outside itself."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise HDF5InputError(
            path, f"not a readable HDF5 file ({exc.__class__.__name__}: truncated or corrupt?)"
        ) from None
    try:
        problem = outside_reference(f)
    except BaseException:
        f.close()
        raise
    if problem is not None:
        f.close()
        raise HDF5InputError(path, problem)
    return f


LOCAL_ONLY = "mrirecon reads only data stored in the file itself"


def outside_reference(f: h5py.File) -> str | None:
    """The first link or dataset of `f` that refers outside the file or leads nowhere, described
    in a phrase ("HDF5 object 'imgs' is an external link to other.h5:/imgs (...)"), or None."""
    soft: list[str] = []

    def visit(name: str, link: object) -> str | None:
        where = f"HDF5 object '{name}'"
        if isinstance(link, h5py.ExternalLink):
            return f"{where} is an external link to {link.filename}:{link.path} ({LOCAL_ONLY})"
        if isinstance(link, h5py.SoftLink):
            soft.append(name)
            return None
        if not isinstance(link, h5py.HardLink):
            return f"{where} is a user-defined link"
        return _dataset_problem(f, name, where)

    try:
        found = f.visititems_links(visit)
    except (OSError, RuntimeError, KeyError) as exc:
        return f"its links cannot be read ({exc.__class__.__name__})"
    if found is not None:
        return str(found)
    for name in soft:  # no external link anywhere: resolving a soft link stays in the file
        target = f.get(name, getlink=True).path
        try:
            f[name]
        except (KeyError, RuntimeError, OSError, ValueError):
            return f"HDF5 object '{name}' is a soft link to '{target}', which leads nowhere (dangling or a loop)"
    return None


def _dataset_problem(f: h5py.File, name: str, where: str) -> str | None:
    """Why the object behind the hard link `name` keeps data outside the file, or None."""
    try:
        obj = f[name]
    except (KeyError, RuntimeError, OSError) as exc:
        return f"{where} cannot be opened ({exc.__class__.__name__})"
    if not isinstance(obj, h5py.Dataset):
        return None
    if obj.is_virtual:
        return f"{where} is a virtual dataset, a view of data in other files ({LOCAL_ONLY})"
    if obj.external:
        return f"{where} keeps its data in external files ({os.fsdecode(obj.external[0][0])}, ...; {LOCAL_ONLY})"
    return None
