"""SIGTERM handled as SIGINT (Ctrl-C): a `kill`, a scheduler's time limit (SLURM sends SIGTERM)
or a container stop raises KeyboardInterrupt, so every temporary file is removed on the way out
(io.atomic_path, staged outputs, the HDF5 writers) and training saves last.pt after its current
step (callbacks.Interrupt); the CLI prints one line and exits with 128 + the signal number
(130 for SIGINT, 143 for SIGTERM)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

RECEIVED: list[int] = []  # the signals received during this process's current run


def note(signum: int) -> None:
    """Record that `signum` arrived (the exit code and the error line name the last one)."""
    RECEIVED.append(int(signum))


def _raise(signum: int, frame: Any) -> None:
    note(signum)
    raise KeyboardInterrupt


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """For the block, SIGTERM raises KeyboardInterrupt as SIGINT does (main thread only; the
    previous handler is restored after)."""
    RECEIVED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def name() -> str:
    """The signal that interrupted the run: SIGTERM, or SIGINT (Ctrl-C, the default)."""
    return signal.Signals(RECEIVED[-1]).name if RECEIVED else "SIGINT"


def exit_code() -> int:
    """128 + the signal number, as a shell reports a process ended by it."""
    return 128 + (RECEIVED[-1] if RECEIVED else int(signal.SIGINT))
