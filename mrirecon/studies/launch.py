"""A stage's runs: `mrirecon <subcommand> -m <overrides> hydra.sweep.dir=<folder>` in a child process,
the same code path as a user's command. Every stage runs as a Hydra multirun (a single run is a
sweep of one point), so the configured launcher places every run: in the process (basic),
in parallel processes (joblib), or as SLURM jobs (submitit) while the study waits. Ctrl-C or
SIGTERM stops the child the way it stops a user's run (SIGTERM: training saves last.pt)."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("mrirecon.study")


def command(run: str, overrides: list[str], sweep_dir: Path) -> list[str]:
    """The child's argument list: this Python running mrirecon's CLI."""
    return [sys.executable, "-m", "mrirecon", run, "-m", *overrides, f"hydra.sweep.dir={sweep_dir}"]


def shown(argv: list[str]) -> str:
    """The command as a user would type it."""
    return "mrirecon " + " ".join(shlex.quote(a) for a in argv[3:])


def execute(argv: list[str]) -> int:
    """Run `argv` (its output goes to this process's); its exit code. On Ctrl-C or SIGTERM here
    the child gets SIGTERM, is waited for, and the interrupt goes on."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    child = subprocess.Popen(argv, env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        child.wait()
        raise
