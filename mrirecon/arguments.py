"""Keyword arguments checked against a constructor's signature before the call.

A registry builds a class from a config section (`method`, `model`, ...): an unknown or missing
key, or a value whose type the annotation excludes ('abc' for an `int`), is the user's mistake
and becomes a ValueError naming the parameter. A TypeError raised inside the constructor is then
a bug and is left alone (it is never turned into a message about the config).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def parameters(target: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword parameters of `target` (a class: its __init__, following `**kwargs` up the
    base classes), annotations resolved, by name."""
    found: dict[str, inspect.Parameter] = {}
    classes = list(target.__mro__) if isinstance(target, type) else [target]
    for owner in classes:
        function = owner.__init__ if isinstance(owner, type) else owner  # type: ignore[misc]
        if function is object.__init__:
            break
        params = list(_signature(function).parameters.values())
        if isinstance(owner, type) and params and params[0].name == "self":
            params = params[1:]
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                found.setdefault(p.name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return found


def _signature(function: Callable[..., Any]) -> inspect.Signature:
    """`function`'s signature with annotations resolved; where one does not resolve (a name
    imported for type checking only), all stay strings, which `accepts` takes as Any."""
    try:
        return inspect.signature(function, eval_str=True)
    except NameError:
        return inspect.signature(function)


def accepts(annotation: Any, value: Any) -> bool:
    """Whether `value` (a plain config value) fits `annotation`; unknown annotations accept all."""
    if annotation in (Any, inspect.Parameter.empty) or isinstance(annotation, str):
        return True
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if annotation is type(None):
        return value is None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(accepts(a, value) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (tuple, list) or annotation in (tuple, list):
        return isinstance(value, (tuple, list))
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return isinstance(value, Mapping)
    return True  # a component (a network, a flow, ...): passed by code, not by a config


def describe(annotation: Any) -> str:
    """`annotation` in words: 'an integer', "'auto' or a number", ..."""
    if annotation in _NAMES:
        return _NAMES[annotation]
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return " or ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (tuple, list):
        return "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    return getattr(annotation, "__name__", str(annotation))


def check_arguments(
    target: Callable[..., Any], params: Mapping[str, Any], owner: str, components: Iterable[str] = ()
) -> None:
    """Raise ValueError('<param>: ...') unless `target(**params, **components)` matches its
    signature: every key of `params` a parameter, every parameter without a default given, every
    value of its annotated type. `components` names the arguments passed by code (a denoiser, a
    flow): they are not config keys. `owner` names the target in messages ("method cg_sense")."""
    given = set(components)
    known = {k: v for k, v in parameters(target).items() if k not in given}
    for key in params:
        if key not in known:
            has = f"has: {', '.join(known)}" if known else "has no keys"
            raise ValueError(f"{key}: unknown key ({owner} {has})")
    for name, p in known.items():
        if name not in params and p.default is p.empty:
            raise ValueError(f"{name}: missing ({owner} needs it)")
    for key, value in params.items():
        annotation = known[key].annotation
        if not accepts(annotation, value):
            raise ValueError(f"{key}: {value!r} must be {describe(annotation)}")
