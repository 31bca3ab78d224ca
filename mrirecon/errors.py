"""The one exception type that the CLI turns into an `error:` line and exit code 2, and the CLI
layer's translation of library errors (named by parameter) into it (named by config key)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Bad input from the user (file, key, option): the message is one line that names it."""


def configured(group: str, build: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`build(*args, **kwargs)` for the CLI layer: a library ValueError, whose message starts with
    its own parameter name ("lam: -1 must be >= 0"), becomes a UserError naming the config key
    ("method.lam: -1 must be >= 0"). A TypeError is a bug, not the user's input: it propagates
    (the builders check their arguments' names and types first: mrirecon/arguments.py)."""
    try:
        return build(*args, **kwargs)
    except ValueError as exc:
        message = str(exc)
        raise UserError(
            f"{group}.{message}" if re.match(r"[A-Za-z_]\w*: ", message) else f"{group}: {message}"
        ) from None
