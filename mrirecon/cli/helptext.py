"""`mrirecon <subcommand> --help`: the subcommand's config groups and keys, described by the
comments of the configs themselves (the `# ...` after a key, or the lines just above it, in
conf/*.yaml and the group files), so the help cannot drift from the configs.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mrirecon.cli.configs import config_dir, config_file, group_options
from mrirecon.cli.overrides import Problem, compose, first_point, parse

WIDTH = 100
NO_MULTIRUN = ("study",)  # subcommands that refuse -m (a study runs the sweeps its stages declare)
# sections a subcommand composes but never reads (conf/base.yaml; a learned method's network)
HIDDEN = {"evaluate": ("seed",), "reconstruct": ("model",)}
SWEEPS = (
    "Sweeps (-m): key=a,b | key=choice(a,b) | key=range(1,4) | group=glob(cs_*); every point runs even if "
    "another fails (its error.txt, a summary at the end, exit 2). hydra/launcher=joblib (parallel), "
    "submitit_local or slurm (conf/hydra/launcher/slurm.yaml) place the points."
)

TAILS = {
    "study": "A study runs the sweeps its stages declare (no -m), each stage's with the launcher given here "
    "(hydra/launcher=joblib, slurm); stages, references and the skip rule: docs/studies.md."
}


@dataclass
class Comments:
    """What a config file says about itself: its header and each key's description."""

    header: str = ""
    keys: dict[str, str] = field(default_factory=dict)


_KEY = re.compile(r"^(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


def comments(path: Path, prefix: str = "") -> Comments:
    """The comments of a YAML config: its header (the comment lines before its first entry) and,
    per dotted key (with `prefix`), the comment after the key plus its continuation lines (comment
    lines indented deeper, just below), or else the comment lines just above it."""
    found = Comments()
    header: list[str] = []
    pending: list[str] = []
    stack: list[tuple[int, str]] = []
    last: tuple[str, int] | None = None  # the key whose trailing comment may continue below
    started = False
    for raw in path.read_text().splitlines():
        line = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if not line:
            pending, last = [], None
            continue
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            if last is not None and indent > last[1]:
                found.keys[last[0]] += " " + text
            elif started:
                pending.append(text)
            else:
                header.append(text)
            continue
        started = True
        match = _KEY.match(line)
        if match is None:  # a list entry (defaults: - base)
            pending, last = [], None
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([prefix] * bool(prefix) + [k for _, k in stack] + [match["key"]])
        trailing = match["rest"].partition(" #")[2].strip() if " #" in match["rest"] else ""
        text = " ".join([*pending, trailing]).strip()
        if text:
            found.keys[key] = text
        stack.append((indent, match["key"]))
        pending, last = [], (key, indent) if trailing else None
    found.header = " ".join(header)
    return found


def _first_sentence(text: str, limit: int = 80) -> str:
    """The first sentence of `text`, cut at a word with '...' beyond `limit` characters."""
    sentence = re.split(r"(?<=\.)\s+(?=[A-Z(`])", text, maxsplit=1)[0]
    return sentence if len(sentence) <= limit else textwrap.shorten(sentence, limit, placeholder="...")


def _allowed(subcommand: str, group: str, options: list[str]) -> list[str]:
    """The options of `group` that `subcommand` accepts: reconstruct takes the registered
    methods and no model (a checkpoint holds it); train the methods a family trains."""
    if subcommand == "reconstruct" and group == "model":
        return []
    if group != "method" or subcommand not in ("reconstruct", "train"):
        return options
    from mrirecon.methods import REGISTRY

    if subcommand == "reconstruct":
        return [o for o in options if o in REGISTRY]
    from mrirecon.training.trainables import family_for

    models = group_options("model")
    aliases = {m for m in models if all(family_for(o, m) is not None for o in options)}  # model=flow
    return [o for o in options if any(family_for(o, m) is not None for m in models if m not in aliases)]


def _groups(subcommand: str) -> list[str]:
    """The config groups in the subcommand's defaults list, in order."""
    primary = OmegaConf.load(config_dir() / f"{subcommand}.yaml")
    out: list[str] = []
    defaults = primary.get("defaults", []) if isinstance(primary, DictConfig) else []
    for entry in defaults:
        if isinstance(entry, DictConfig):
            out += [str(k) for k in entry if group_options(str(k))]
    return out


def _group_lines(subcommand: str, group: str, chosen: str) -> list[str]:
    options = _allowed(subcommand, group, group_options(group))
    width = max(len(o) for o in options) + 2
    lines = [f"  {group}=<option>"]
    for option in options:
        about = _first_sentence(comments(config_file(group, option)).header)
        mark = "*" if option == chosen else " "
        lines.append(f"    {option:<{width}}{mark} {about}".rstrip())
    return lines


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a config node, values resolved where they can be."""
    if isinstance(node, DictConfig):
        out = []
        for key in node:
            try:
                value = node[key]
            except Exception:  # an interpolation only Hydra's run resolves
                value = OmegaConf.to_container(node, resolve=False)[key]  # type: ignore[index]
            full = f"{prefix}.{key!s}" if prefix else str(key)
            out += _leaves(value, full) if isinstance(value, DictConfig) and len(value) else [(full, value)]
        return out
    return [(prefix, node)]


def _shown(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _key_lines(subcommand: str, cfg: DictConfig, groups: list[str], choices: dict[str, str]) -> list[str]:
    described = comments(config_dir() / "base.yaml").keys
    described.update(comments(config_dir() / f"{subcommand}.yaml").keys)
    for group in (g for g in groups if choices.get(g) not in (None, "None")):  # a group chosen (dataset: null)
        described.update(comments(config_file(group, choices[group]), group).keys)
    hidden = HIDDEN.get(subcommand, ())
    lines: list[str] = []
    shown_sections: set[str] = set()
    for key, value in _leaves(cfg):
        top, _, rest = key.partition(".")
        if top in hidden or (top in groups and rest == "name"):
            continue
        if ".train_defaults." in f".{key}." and subcommand != "train":
            continue
        parts = key.split(".")
        for depth in range(1, len(parts)):  # a section's own comment, before its first key
            section = ".".join(parts[:depth])
            if section in described and section not in shown_sections and section not in groups:
                shown_sections.add(section)
                lines += [f"  {section}.*", *_wrapped(described[section])]
        lines.append(f"  {key}={_shown(value)}")
        lines += _wrapped(described.get(key, ""))
    return lines


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)


def subcommand_help(subcommand: str, summary: str, overrides: list[str]) -> str:
    """The help text of `mrirecon <subcommand>` with `overrides` applied (e.g. `method=cs_tv
    --help` describes cs_tv's keys); Problem when they do not compose."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose(subcommand, first_point(parse(overrides)), hydra=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise Problem(f"invalid override: {' '.join(str(exc).split())}") from None
    choices = {str(k): str(v) for k, v in cfg.hydra.runtime.choices.items()}
    groups = [g for g in _groups(subcommand) if _allowed(subcommand, g, group_options(g))]
    cfg = OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"])
    sweep = "" if subcommand in NO_MULTIRUN else " [-m]"
    lines = [f"usage: mrirecon {subcommand} [key=value ...]{sweep} [hydra flags]", f"  {summary}", ""]
    if groups:
        lines.append("Config groups (group=option; * the current choice):")
        for group in groups:
            lines += _group_lines(subcommand, group, choices.get(group, ""))
        lines.append("")
    lines.append("Keys (key=value; the current values):")
    lines += _key_lines(subcommand, cfg, groups, choices)
    lines += ["", *textwrap.wrap(TAILS.get(subcommand, SWEEPS), WIDTH)]
    lines.append("Hydra's own flags: --hydra-help; the composed config: --cfg job.")
    return "\n".join(lines)
