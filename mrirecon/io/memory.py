"""The memory this process may still take, and refusing inputs whose declared sizes need more.

A small file can declare large arrays: an HDF5 dataset without written chunks reads as zeros of
its declared shape, an ISMRMRD header states the matrix the reader allocates, a checkpoint's
config states the network that is built before its weights are loaded. Readers call `require`
with the bytes that a declared size makes them allocate, before allocating them.

The rule: what a file makes mrirecon hold at once (e.g. one slice's k-space and coil maps)
must fit in MARGIN (half) of `available_bytes()`; the other half is left for the work done on
it (FFTs, ESPIRiT, solver vectors) and the process itself. It is a necessary condition, not a
sufficient one: it refuses a header that cannot be read here before anything is allocated,
with one line naming the file and its dimensions, instead of a MemoryError (or the kernel's
out-of-memory kill) minutes later.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from mrirecon.errors import UserError

MARGIN = 0.5  # the share of the available memory that one input may declare
_CGROUP_FILES = (  # (limit, usage): cgroup v2, then v1
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # absent, or 'max' (no limit)


def _proc_kb(path: str, field: str) -> int | None:
    """A 'Field: N kB' line of a /proc file, in bytes; None when absent."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes() -> int:
    """The memory this process may still allocate (bytes): the least of the system's available
    memory (MemAvailable of /proc/meminfo; elsewhere the free pages), the cgroup's memory limit
    less its usage, and the address-space limit (ulimit -v) less this process's size."""
    system = _proc_kb("/proc/meminfo", "MemAvailable")
    if system is None:
        system = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    found = [system]
    for limit_file, usage_file in _CGROUP_FILES:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:  # v1 reports 'no limit' as ~2^63
            found.append(limit - usage)
    address_space = resource.getrlimit(resource.RLIMIT_AS)[0]
    if address_space != resource.RLIM_INFINITY:
        found.append(address_space - (_proc_kb("/proc/self/status", "VmSize") or 0))
    return max(0, min(found))


def size_text(nbytes: float) -> str:
    """A byte count for messages: '4.6 GB', '120 MB', '361 kB'."""
    if nbytes >= 1e9:
        return f"{nbytes / 1e9:,.1f} GB"
    return f"{nbytes / 1e6:,.0f} MB" if nbytes >= 1e6 else f"{nbytes / 1e3:,.0f} kB"


def require(need: float, what: str) -> None:
    """Refuse (UserError) `need` bytes that do not fit in MARGIN of `available_bytes()`;
    `what` names the file and the declared dimensions ('x.h5: declares 15 slices of ...')."""
    available = available_bytes()
    if need > MARGIN * available:
        raise UserError(
            f"{what}, which needs {size_text(need)} at once, more than half of the {size_text(available)} of "
            "memory available (a damaged header, or a machine too small for this input: mrirecon/io/memory.py)"
        )
