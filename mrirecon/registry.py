"""Plug-ins that register themselves: one `Registry` per kind (methods, networks, trainable
families, data formats), filled by decorators in the plug-ins' own modules.

A registry imports, on first use, every module of its package (so a module dropped into
`mrirecon/methods/` is found with no list to edit) and the external plug-ins: the modules or
packages named in the environment variable MRIRECON_PLUGINS (comma-separated, importable from
sys.path, e.g. through PYTHONPATH; a package's own modules are imported too). A plug-in's
configs live in the folder `conf/` beside its module (in a package: inside it), laid out as
mrirecon's conf/ (`method/<name>.yaml`, `model/<name>.yaml`); the CLI appends these folders to
Hydra's config search path, after mrirecon's own (`plugin_conf_dirs`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar, cast

PLUGINS_ENV = "MRIRECON_PLUGINS"
T = TypeVar("T")
S = TypeVar("S")  # a decorated object (a subclass of the registry's entries keeps its own type)

_imported: set[str] = set()  # plug-in modules imported so far (by name)


class PluginError(ValueError):
    """A plug-in named in MRIRECON_PLUGINS that cannot be found."""


def plugin_names() -> list[str]:
    """The module or package names listed in MRIRECON_PLUGINS (comma-separated; blanks ignored)."""
    return [name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(",") if name.strip()]


def plugin_conf_dirs() -> list[Path]:
    """The `conf/` folders of the plug-ins named in MRIRECON_PLUGINS that have one, found
    without importing the plug-ins (PluginError when one cannot be found)."""
    folders = []
    for name in plugin_names():
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin is None:
            raise PluginError(
                f"{PLUGINS_ENV}: no module named '{name}' (expected comma-separated module or package "
                "names importable from sys.path, e.g. through PYTHONPATH)"
            )
        conf = Path(spec.origin).parent / "conf"
        if conf.is_dir():
            folders.append(conf)
    return folders


def import_package(package: str) -> None:
    """Import `package` and every module in it (not below; names starting with '_' skipped)."""
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(getattr(module, "__path__", []), prefix=f"{package}."):
        if not info.name.rpartition(".")[2].startswith("_"):
            importlib.import_module(info.name)


def load_plugins() -> None:
    """Import the plug-ins named in MRIRECON_PLUGINS that are not imported yet (a package with its
    modules); their decorators register what they define."""
    plugin_conf_dirs()  # one clear error for a name that cannot be found
    for name in plugin_names():
        if name not in _imported:
            _imported.add(name)
            import_package(name)


def _origin(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


class Registry(Mapping[str, T]):
    """Name -> plug-in (a class) of one kind, read like a dict.

    Args:
        kind: what the entries are, for messages ('method', 'network', ...).
        package: the package whose modules define them; every module of it, and the external
            plug-ins, are imported on the first lookup, listing or iteration.
    """

    def __init__(self, kind: str, package: str) -> None:
        self.kind, self.package = kind, package
        self._entries: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str, set_name: bool = False) -> Callable[[S], S]:
        """Decorator: register the decorated object under `name` (with `set_name`, also set its
        `name` attribute to it: the name a config selects it by)."""

        def add(obj: S) -> S:
            self.add(name, cast(T, obj))
            if set_name:
                setattr(obj, "name", name)  # noqa: B010  (S is any class: no attribute to type)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        """Register `obj` under `name`; ValueError when another object already has the name (the
        same class defined again, as by a re-imported module, replaces it)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: {name!r} must be a non-empty string ({self.kind} {_origin(obj)})")
        known = self._entries.get(name)
        if known is not None and _origin(known) != _origin(obj):
            raise ValueError(f"{self.kind} '{name}' is registered twice: by {_origin(known)} and {_origin(obj)}")
        self._entries[name] = obj

    def discover(self) -> None:
        """Import the package's modules and the external plug-ins (once)."""
        if self._discovered:
            return
        self._discovered = True  # first, so that a module importing the registry does not recurse
        try:
            import_package(self.package)
            load_plugins()
        except BaseException:
            self._discovered = False
            raise

    def lookup(self, name: object) -> T:
        """The entry `name`; ValueError listing the known names when there is none."""
        self.discover()
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(f"unknown {self.kind} '{name}' (expected one of {', '.join(sorted(self._entries))})")
        return self._entries[name]

    def __getitem__(self, name: str) -> T:
        self.discover()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        self.discover()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self.discover()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {sorted(self._entries)})"
