"""A study's stages, read from its config (`study.stages`: name -> {run, overrides, each}), checked
and put in the order they run: a stage runs after every stage it references, otherwise in the
order the config declares them. Unknown subcommands and keys, references to stages that do not
exist and cycles are refused before anything runs (UserError naming the key)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mrirecon.errors import UserError
from mrirecon.studies.references import Context, Placeholders, using

SUBCOMMANDS = ("preprocess", "train", "reconstruct", "evaluate")
SPEC_KEYS = ("run", "overrides", "each")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WHOLE_REF = re.compile(r"^\$\{(?P<path>[A-Za-z_][\w.]*)\}$")
WHOLE_KNOB = re.compile(r"^(?P<key>[^=]+)=\$\{(?P<path>[A-Za-z_][\w.]*)\}$")
# keys the study sets itself: where each stage writes
PLACED = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.job.chdir")


@dataclass(frozen=True)
class Stage:
    """One stage: `run` (the subcommand), `each` (a reconstruct stage following the points of a
    train stage), `needs` (the stages whose outputs it reads)."""

    name: str
    run: str
    each: str | None
    needs: tuple[str, ...]

    @property
    def key(self) -> str:
        """Its config key."""
        return f"study.stages.{self.name}"


def one_line(exc: BaseException) -> str:
    """An OmegaConf error's first line (its message without the full_key/object_type lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def overrides(cfg: DictConfig, name: str, context: Context) -> list[str]:
    """The overrides of stage `name` with `${stage:...}`, `${best:...}` and the study's own
        interpolations (`${study.<knob>}`) resolved through `context`. An override whose whole value
        is one knob (`train.max_minutes=${study.minutes}`) takes the knob's value as override text
        (null, true, [a,b]), not Python's (None, True). An entry that is a list, or one knob holding a
    list (`${study.common}`: overrides several stages share), is spliced in."""
    node = cfg.study.stages[name].get("overrides")
    if node is None:
        return []
    raw = OmegaConf.to_container(node, resolve=False)
    try:
        with using(context):
            values = OmegaConf.to_container(node, resolve=True)
            return _texts(cfg, raw, values)
    except OmegaConfBaseException as exc:
        cause = exc.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise UserError(f"study.stages.{name}.overrides: {one_line(cause or exc)}") from None


def _texts(cfg: DictConfig, raw: Any, value: Any) -> list[str]:
    """The override texts of a resolved entry `value` (`raw`: the same unresolved): a list, or a
    knob holding one, gives its entries."""
    if isinstance(value, list):
        whole = WHOLE_REF.match(raw) if isinstance(raw, str) else None
        if whole is not None:  # ${study.common}: its own entries, unresolved
            raw = OmegaConf.to_container(OmegaConf.select(cfg, whole["path"]), resolve=False)
        assert isinstance(raw, list)
        return [text for r, v in zip(raw, value) for text in _texts(cfg, r, v)]
    return [_knob(cfg, str(raw)) or str(value)]


def _knob(cfg: DictConfig, text: str) -> str | None:
    """`key=<the value as override text>` when `text` is `key=${a.plain.path}`, else None."""
    match = WHOLE_KNOB.match(text)
    if match is None:
        return None
    value = OmegaConf.select(cfg, match["path"], throw_on_missing=True)
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    return f"{match['key']}={value_text(value)}"


def value_text(value: Any) -> str:
    """A config value as override text (null, true, 0.3, [a,b]; a string as it is)."""
    if isinstance(value, str):
        return value
    return OmegaConf.to_yaml(OmegaConf.create({"v": value})).split(":", 1)[1].strip()


def _spec(name: str, spec: Any) -> tuple[str, str | None]:
    """(run, each) of one stage's entry, checked."""
    key = f"study.stages.{name}"
    if not NAME.match(name):
        raise UserError(f"{key}: a stage name is a word of letters, digits and _ (it names a folder)")
    if not isinstance(spec, DictConfig):
        raise UserError(f"{key}: expected a mapping with run: <{'|'.join(SUBCOMMANDS)}> and overrides: [...]")
    unknown = [str(k) for k in spec if k not in SPEC_KEYS]
    if unknown:
        raise UserError(f"{key}.{unknown[0]}: unknown key (a stage has: {', '.join(SPEC_KEYS)})")
    run = spec.get("run")
    if run not in SUBCOMMANDS:
        raise UserError(
            f"{key}.run: {run!r} is not a subcommand a study runs (expected one of: {', '.join(SUBCOMMANDS)})"
        )
    listed = spec.get("overrides")
    if listed is not None and not isinstance(listed, ListConfig):
        raise UserError(f"{key}.overrides: expected a list of key=value overrides, as on the command line")
    each = spec.get("each")
    if each is not None and run != "reconstruct":
        raise UserError(f"{key}.each: only a reconstruct stage follows the points of a train stage")
    return str(run), None if each is None else str(each)


def _check_placed(stage: Stage, listed: list[str]) -> None:
    """Refuse the overrides the study sets itself (where a stage writes)."""
    for text in listed:
        key = text.partition("=")[0].lstrip("+~")
        if key in PLACED or (stage.run == "preprocess" and key == "data.path"):
            where = "its processed files in its folder" if key == "data.path" else "each stage in its own folder"
            raise UserError(f"{stage.key}.overrides: {key} is set by the study (it places {where})")
        if text in ("-m", "--multirun") or text.startswith("-"):
            raise UserError(f"{stage.key}.overrides: {text}: give overrides only (a sweep needs no -m in a study)")


def stages(cfg: DictConfig) -> list[Stage]:
    """The stages of `cfg.study`, checked, in the order they run."""
    node = cfg.study.get("stages")
    if not isinstance(node, DictConfig) or len(node) == 0:
        raise UserError("study.stages: expected a mapping of stage name -> {run: <subcommand>, overrides: [...]}")
    found = []
    for name in (str(k) for k in node):
        run, each = _spec(name, node[name])
        named = Placeholders()
        listed = overrides(cfg, name, named)
        needs = tuple(dict.fromkeys([*named.named, *([each] if each else [])]))
        stage = Stage(name, run, each, needs)
        _check_placed(stage, listed)
        found.append(stage)
    by_name = {s.name: s for s in found}
    for stage in found:
        _check_needs(stage, by_name)
    return ordered(found)


def _check_needs(stage: Stage, by_name: dict[str, Stage]) -> None:
    for need in stage.needs:
        if need not in by_name:
            where = "each" if need == stage.each else "overrides"
            raise UserError(f"{stage.key}.{where}: no stage named '{need}' (the stages: {', '.join(by_name)})")
    if stage.each is not None and by_name[stage.each].run != "train":
        raise UserError(f"{stage.key}.each: '{stage.each}' is a {by_name[stage.each].run} stage, not a train stage")


def ordered(found: list[Stage]) -> list[Stage]:
    """`found` in the order they run: each after the stages it needs, else in declared order; a
    cycle is refused, naming it."""
    done: list[Stage] = []
    left = list(found)
    while left:
        ready = next((s for s in left if all(n in {d.name for d in done} for n in s.needs)), None)
        if ready is None:
            cycle = _cycle({s.name: s.needs for s in left})
            raise UserError(
                f"study.stages: {' -> '.join(cycle)}: these stages read each other's outputs (a cycle cannot run)"
            )
        done.append(ready)
        left.remove(ready)
    return done


def _cycle(needs: dict[str, tuple[str, ...]]) -> list[str]:
    """A cycle among `needs` (every stage left needs another one left), as a path a -> b -> a."""
    path = [next(iter(needs))]
    while True:
        step = next(n for n in needs[path[-1]] if n in needs)
        if step in path:
            return [*path[path.index(step) :], step]
        path.append(step)
