"""The command line's `key=value` overrides checked against the configs before Hydra runs, so
that a mistake is one line naming the key instead of a traceback or a half-made run dir.

Checked: the override syntax (Hydra's parser, so sweeps such as `a,b`, `choice(a,b)`,
`glob(...)`, `range(...)` and `tag(log, interval(...))` pass), group options (every value of a
sweep), that the first point of the sweep composes (an unknown key lists the keys that exist),
the type of every value against the key's default (a key whose default is an integer takes
integers; `hardware.threads` >= 1), that the subcommand reads the key (`check_read`: a
preprocess key given to reconstruct is refused), and that the output folder can be written.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, Override, QuotedString, RangeSweep
from omegaconf import DictConfig, OmegaConf

import mrirecon.studies.references  # noqa: F401  (registers ${stage:...} and ${best:...}, which conf/study uses)
from mrirecon.arguments import accepts, describe
from mrirecon.cli.configs import config_dir, group_options, use_plugin_configs

# keys whose values may be of another type than their default (the task checks them): a flag or a
# checkpoint path; an integer or a fraction of a MB
OTHER_TYPES = frozenset({"train.resume", "data.ismrmrd_buffer_mb"})
MINIMUM = {"seed": 0, "hardware.threads": 1, "hardware.num_workers": 0, "figures": 0}
MAX_COMPOSED = 64  # combinations of swept group options composed before a sweep starts
# The data.* keys that the subcommands after preprocess read: the processed file (data.path, whose
# default path follows data.name) and its variant (bits, scale: checked against the file), and
# for reconstruct the split it reconstructs. Every other data.* key (source, coils, espirit,
# undersampling, noise, ..., and a format's own +data.<key>) says how preprocess makes the file.
PROCESSED_KEYS = ("path", "name", "bits", "scale")
DATA_READ = {"train": PROCESSED_KEYS, "reconstruct": (*PROCESSED_KEYS, "split"), "evaluate": ()}
# keys a subcommand does not read outside the data section, and why
SPLIT = "data.split chooses the slices that reconstruct uses"
UNREAD = {
    "preprocess": {
        "data.split": f"it writes every slice and the splits ({SPLIT}; preprocess sizes the splits by "
        "data.val_fraction and data.test_fraction)",
        "hardware.amp": "it runs no network",
    },
    "train": {"data.split": f"it trains on the train split of data.path and validates on its val split ({SPLIT})"},
    "reconstruct": {
        "model": "a learned method's checkpoint holds its network (model= chooses the network that mrirecon train trains)"
    },
    "evaluate": {"hardware.amp": "it runs no network"},
}


class Problem(Exception):
    """An override that cannot work: the message is the one line to print."""


def one_line(text: str) -> str:
    """Hydra's multi-line message as one line, its hints kept: the lines after one that ends in
    ':' become a comma-separated list; the config search path (Hydra's internals) is left out."""
    parts: list[str] = []
    listing = False
    for line in (line.strip().replace("\\'", "'") for line in str(text).splitlines()):
        if not line:
            continue
        if line.startswith("Config search path"):
            break
        if listing and not line.endswith(":"):
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
            continue
        listing = line.endswith(":")
        parts.append(line)
    joined = parts[0] if parts else ""
    for part in parts[1:]:
        joined += (" " if joined.endswith(".") else "; ") + part
    return joined


def parse(overrides: list[str]) -> list[Override]:
    """Hydra's parse of `overrides` (Problem on a syntax error)."""
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise Problem(f"invalid override: {one_line(str(exc))}") from None


def values(override: Override, options: list[str] | None = None) -> Iterator[Any]:
    """The values an override takes: one, or each point of a choice, glob or range sweep (an
    interval, which only an optimising sweeper samples, gives its two ends)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        yield from (v.text if isinstance(v, QuotedString) else v for v in value.list)
    elif isinstance(value, Glob):
        yield from value.filter(options or [])
    elif isinstance(value, RangeSweep):
        yield from value.range()
    elif isinstance(value, IntervalSweep):
        yield from (value.start, value.end)
    else:
        yield value


def _key(override: Override) -> str:
    return override.key_or_group


def check_groups(parsed: list[Override], multirun: bool) -> None:
    """Every value of a group override is one of the group's options (a sweep without -m is left
    to Hydra, whose message says to add --multirun)."""
    for override in parsed:
        group = _key(override)
        options = group_options(group)
        if not options or override.is_delete() or (override.is_sweep_override() and not multirun):
            continue
        text = override.input_line or group
        chosen = list(values(override, options))
        if not chosen:
            raise Problem(f"{text}: matches no option (expected one of: {', '.join(options)})")
        for value in chosen:
            if isinstance(value, list):
                raise Problem(f"{text}: choose one option (a sweep over several: -m {group}=a,b)")
            if str(value) not in options:
                raise Problem(f"unknown {group}={value} (expected one of: {', '.join(options)})")


def point(parsed: list[Override], chosen: dict[int, Any] | None = None) -> list[str]:
    """The overrides of one point of the sweep: override i takes `chosen[i]`, the others their
    first value, so that one config can be composed."""
    out = []
    for i, override in enumerate(parsed):
        if not override.is_sweep_override():
            out.append(override.input_line or "")
            continue
        value = (chosen or {}).get(i, next(values(override, group_options(_key(override))), None))
        if value is None:
            continue
        prefix = "+" if override.is_add() else "++" if override.is_force_add() else ""
        out.append(f"{prefix}{override.get_key_element().lstrip('+~')}={_text(value)}")
    return out


def first_point(parsed: list[Override]) -> list[str]:
    """The overrides of the sweep's first point."""
    return point(parsed)


def group_points(parsed: list[Override], limit: int = MAX_COMPOSED) -> list[list[str]]:
    """The points of every combination of the swept group options (keys exist or not by the
    group options: other sweeps take their first value), at most `limit` of them."""
    swept = {
        i: list(values(o, group_options(_key(o))))
        for i, o in enumerate(parsed)
        if o.is_sweep_override() and group_options(_key(o))
    }
    combinations = itertools.islice(itertools.product(*swept.values()), limit)
    return [point(parsed, dict(zip(swept, combination))) for combination in combinations]


def _text(value: Any) -> str:
    """A value as override text."""
    if isinstance(value, str):
        return value
    return OmegaConf.to_yaml(OmegaConf.create({"v": value})).split(":", 1)[1].strip()


def compose(subcommand: str, overrides: list[str], hydra: bool = False) -> DictConfig:
    """The config of `subcommand` with `overrides` (Hydra's exceptions propagate)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    use_plugin_configs()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return hydra_compose(config_name=subcommand, overrides=overrides, return_hydra_config=hydra)
    finally:
        GlobalHydra.instance().clear()


def group_choices(overrides: list[str]) -> list[str]:
    """The group overrides among one point's `overrides` (to compose the defaults of its keys)."""
    return [o for o in overrides if group_options(o.partition("=")[0].lstrip("+~")) or o.startswith("hydra/")]


def unknown_key(subcommand: str, full_key: str, groups: list[str]) -> str:
    """'<key>: unknown key (<where> has: ...)' listing the keys of the deepest section of
    `full_key` that exists."""
    defaults = compose(subcommand, groups)
    parts = full_key.split(".")
    depth = 0
    node: Any = defaults
    while depth < len(parts) - 1 and isinstance(node, DictConfig) and parts[depth] in node:
        node, depth = node[parts[depth]], depth + 1
    section = ".".join(parts[:depth])
    if node is None:
        return f"{full_key}: {section} is null, not a section (set it whole: {section}={{key: value, ...}})"
    if not isinstance(node, DictConfig):
        return f"{full_key}: {section} is a value ({node!r}), not a section"
    if group_options(section):
        keys = [str(k) for k in node if k not in ("name", "train_defaults")]
        where = f"{section} {node.get('name', '')}".strip()
    else:
        keys = [str(k) for k in node]
        where = section or f"mrirecon {subcommand}"
    has = f"has: {', '.join(keys)}" if keys else "has no keys"
    return f"{full_key}: unknown key ({where} {has})"


def composed(subcommand: str, parsed: list[Override], multirun: bool) -> DictConfig:
    """The first point's config with Hydra's own; every combination of swept group options is
    composed too (Problem when one does not compose). Without -m the overrides are composed as
    given, so a sweep gets Hydra's own message (add --multirun)."""
    if not multirun:
        return _compose_point(subcommand, parsed, [o.input_line or "" for o in parsed])
    first, *others = group_points(parsed)
    cfg = _compose_point(subcommand, parsed, first)
    for overrides in others:
        _compose_point(subcommand, parsed, overrides)
    return cfg


def _compose_point(subcommand: str, parsed: list[Override], overrides: list[str]) -> DictConfig:
    from hydra.errors import ConfigCompositionException, HydraException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    try:
        return compose(subcommand, overrides, hydra=True)
    except ConfigCompositionException as exc:
        cause = exc.__cause__
        key = str(cause.full_key) if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) else "hydra."
        if not key.startswith("hydra."):
            wrong = next((_key(p) for p in parsed if _key(p) == key or _key(p).startswith(f"{key}.")), key)
            raise Problem(unknown_key(subcommand, wrong, group_choices(overrides))) from None
        raise Problem(f"invalid override: {one_line(str(exc))}") from None
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise Problem(f"invalid override: {one_line(str(exc))}") from None


def _expected(default: Any) -> type | None:
    """The type a key's values must have, from its default (None: any)."""
    if isinstance(default, bool):
        return bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return None


def _shown(value: Any) -> str:
    return "null" if value is None else repr(value)


def check_types(subcommand: str, parsed: list[Override]) -> None:
    """Each value of a plain key override has the type of the key's default (and MINIMUM), the
    default of every combination of swept group options."""
    plain = [  # an interval is sampled by an optimising sweeper, which picks the type (tag(int, ...))
        o
        for o in parsed
        if not (o.is_delete() or o.is_hydra_override() or o.is_interval_sweep())
        and not (group_options(_key(o)) or _key(o) in OTHER_TYPES)
    ]
    if not plain:
        return
    for groups in {tuple(group_choices(p)) for p in group_points(parsed)}:
        defaults = compose(subcommand, list(groups))
        for override in plain:
            try:
                default = OmegaConf.select(defaults, _key(override), throw_on_missing=False)
            except Exception:  # an interpolation that needs Hydra's run (e.g. ${now:...})
                continue
            for value in values(override):
                _check_value(_key(override), _expected(default), value)


def _check_value(key: str, expected: type | None, value: Any) -> None:
    if isinstance(value, str) and "${" in value:
        return  # an interpolation: resolved later
    minimum = MINIMUM.get(key)
    bound = f" >= {minimum}" if minimum is not None else ""
    if expected is not None and not accepts(expected, value):
        raise Problem(f"{key}: {_shown(value)} must be {describe(expected)}{bound}")
    if minimum is not None and isinstance(value, (int, float)) and value < minimum:
        raise Problem(f"{key}: {_shown(value)} must be {describe(expected)}{bound}")


def check_read(subcommand: str, parsed: list[Override]) -> None:
    """Refuse a key that `subcommand` never reads: a preprocess key (`DATA_READ`) given to train,
    reconstruct or evaluate, and the keys of `UNREAD` (a section's: its keys too)."""
    for override in parsed:
        key = _key(override)
        unread = UNREAD.get(subcommand, {})
        reason = unread.get(key) or unread.get(key.partition(".")[0])
        if reason:
            raise Problem(f"{key}: not read by mrirecon {subcommand}: {reason}")
        if subcommand not in DATA_READ or not key.startswith("data.") or override.is_hydra_override():
            continue
        if subcommand == "evaluate":
            raise Problem(f"{key}: not read by mrirecon evaluate (it reads the run dirs of runs=..., not data.*)")
        if key.split(".")[1] not in DATA_READ[subcommand] and (override.is_add() or _preprocess_key(key)):
            raise Problem(
                f"{key}: a preprocess key (how 'mrirecon preprocess' makes the file); mrirecon {subcommand} "
                f"reads the processed file data.path and takes only data.{', data.'.join(DATA_READ[subcommand])}"
            )


def _preprocess_key(key: str) -> bool:
    """Whether `key` is one of preprocess's data keys (conf/preprocess.yaml: how a file is made)."""
    node: Any = compose("preprocess", [])
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node[part]
    return True


def unwritable(key: str, folder: Path) -> str | None:
    """Why `folder` cannot be created or written (None if it can): checked before Hydra
    creates it, so a read-only location gets one error line instead of a traceback."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{key}: cannot create {folder} ({existing} is a file, not a folder)"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{key}: cannot write {folder} ({existing} is not writable)"
    return None


def check(subcommand: str, overrides: list[str], multirun: bool) -> str | None:
    """The first problem of `overrides` for `mrirecon <subcommand>` as one line, or None."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = parse(overrides)
        check_groups(parsed, multirun)
        check_read(subcommand, parsed)
        cfg = composed(subcommand, parsed, multirun)
        check_types(subcommand, parsed)
    except Problem as problem:
        return str(problem)
    if multirun and "mrirecon.cli.sweeper" in sys.modules:  # hydra/sweeper=optuna: choose on val only
        refusal = sys.modules["mrirecon.cli.sweeper"].split_problem(cfg, overrides)
        if refusal:
            return str(refusal)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        out = Path(str(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir))
    except OmegaConfBaseException:  # an interpolation only Hydra's run can resolve
        return None
    return unwritable(key, out)
