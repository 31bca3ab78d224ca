"""Memory measurement shared by the benchmarks (not part of the package)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def vm_kb(field: str, pid: int | str = "self") -> int | None:
    """A memory field of /proc/<pid>/status in KiB (VmRSS: now, VmHWM: peak of the process),
    or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith(field + ":")), None)
    except OSError:
        return None


def fresh_process_peak_mb(module: str, args: tuple[Any, ...], device: str, threads: int) -> float:
    """Peak memory of `scripts/<module>.make_step(*args, device)` plus two calls of the step it
    returns, in a fresh process: CUDA max allocated, or on CPU the growth of peak RSS over the
    RSS after the imports. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork+exec, so a
    child of a large process would start at the parent's peak and show no growth."""
    code = (
        f"import sys, torch; sys.path.insert(0, {HERE!r}); torch.set_num_threads({threads}); "
        f"import bench_memory as m, {module} as b; d = torch.device({device!r}); r0 = m.vm_kb('VmRSS'); "
        f"s = b.make_step(*{args!r}, d); s(); s(); "
        "print(torch.cuda.max_memory_allocated() / 2**20 if d.type == 'cuda' else (m.vm_kb('VmHWM') - r0) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])
