"""What makes a stage the same stage: the resolved config of every point it runs.

A stage's overrides (placeholders for the stages it reads, whose identity enters as their
records' tokens instead: `references.Placeholders`) are expanded into the points of its sweep as
Hydra's basic sweeper does; each point is composed with Hydra's compose API (the running app's
config search path: mrirecon's conf/ and the plug-ins') and resolved; the hash covers the
subcommand, those configs and the upstream tokens. A sweep only an optimising sweeper samples
(Optuna's intervals) enters as its override text. Keys that say where and how fast a run goes,
not what it computes (`HOW`), are left out: a study run with hardware.threads=1 after one with 2
threads skips every stage.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from omegaconf import OmegaConf

from mrirecon.errors import UserError

HOW = ("threads", "num_workers", "device", "distributed")  # hardware.* keys left out of the hash
UNREAD = {"evaluate": ("data",)}  # sections a subcommand composes (conf/base.yaml) but never reads


def points(overrides: list[str]) -> list[list[str]] | None:
    """The overrides of each point of the sweep `overrides` (Hydra's own overrides left out), in
    the basic sweeper's order; None when it cannot be expanded (an interval, a glob)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    job = [o for o in parsed if not o.is_hydra_override()]
    try:
        return [list(p) for p in BasicSweeper.split_arguments(job, None)[0]]
    except Exception:
        return None


def is_sweep(overrides: list[str]) -> list[str]:
    """The keys that `overrides` sweep (group names or dotted keys)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed if o.is_sweep_override() and not o.is_hydra_override()]


def keys(overrides: list[str]) -> set[str]:
    """The keys (or groups) that `overrides` set."""
    return {o.partition("=")[0].lstrip("+~") for o in overrides}


def composed(run: str, overrides: list[str], key: str) -> dict[str, Any]:
    """The resolved job config of `mrirecon <run>` with `overrides` (one point), without the keys
    of `HOW`; UserError naming `key` when it does not compose. Composed once per process (the
    configs do not change while it runs)."""
    try:
        return dict(json.loads(_composed(run, tuple(overrides))))
    except UserError as exc:
        raise UserError(f"{key}: {exc}") from None


@functools.lru_cache(maxsize=1024)
def _composed(run: str, overrides: tuple[str, ...]) -> str:
    from hydra import compose
    from omegaconf import open_dict

    try:
        cfg = compose(config_name=run, overrides=list(overrides))
        with open_dict(cfg):
            for section in UNREAD.get(run, ()):
                cfg.pop(section, None)
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # Hydra's and OmegaConf's errors: the overrides do not compose
        raise UserError(_line(exc)) from None
    assert isinstance(plain, dict)
    hardware = plain.get("hardware")
    if isinstance(hardware, dict):
        for name in HOW:
            hardware.pop(name, None)
    return json.dumps(plain, sort_keys=True, default=str)


def _line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else exc.__class__.__name__


def configs(run: str, overrides: list[str], key: str) -> list[Any]:
    """The resolved config of each point of `overrides`, or, for a sweep that cannot be expanded,
    the config without its sweeps and the sweeps' text."""
    expanded = points(overrides)
    if expanded is not None:
        return [composed(run, p, key) for p in expanded]
    swept = set(is_sweep(overrides))
    fixed = [o for o in overrides if o.partition("=")[0].lstrip("+~") not in swept and not o.startswith("hydra")]
    return [composed(run, fixed, key), sorted(o for o in overrides if o not in fixed and not o.startswith("hydra"))]


def digest(payload: Any) -> str:
    """SHA-256 of `payload` as canonical JSON."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
