"""One stage of a study: its runs' overrides, its hash, and then either the record of the same stage
done earlier (skipped) or its runs, each a Hydra multirun in a child process (studies/launch.py).

A stage's folder is `<study folder>/<stage name>/<first 12 hex digits of its hash>`: a changed
config (or an upstream stage that ran again) is another folder, so nothing of an earlier run is
replaced or deleted. A stage interrupted before its record was written runs again in its folder
(reconstruct, evaluate and preprocess replace their own outputs; a single train run resumes from
its last.pt with train.resume=true), except a train sweep, which starts over in a new attempt
folder `<hash>-2`, ... (a train run refuses a run dir that holds an earlier one).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mrirecon.errors import UserError
from mrirecon.studies import identity, launch, records
from mrirecon.studies.plan import Stage, overrides, value_text
from mrirecon.studies.records import Done
from mrirecon.studies.references import Placeholders, placeholder

log = logging.getLogger("mrirecon.study")
OWN = "@own-folder"  # stands for the stage's folder until its hash names it
HASH_DIGITS = 12
CARRIED = ("data", "method", "data.path", "checkpoint")  # what a stage that follows a train point takes from it


class StageFailed(Exception):
    """A stage's command failed: it printed its own error; `code` is its exit code."""

    def __init__(self, stage: Stage, code: int, command: str) -> None:
        super().__init__(f"{stage.key}: `{command}` failed (exit code {code}); the study stops here")
        self.code = code


@dataclass
class Setting:
    """What every stage of one study run shares: the study's config, its folder, and the
    command-line overrides that go to every stage (seed, hardware, the launcher)."""

    cfg: DictConfig
    folder: Path
    forwarded: list[str]


@dataclass
class Invocation:
    """One command of a stage: its sweep dir below the stage folder ('' for the folder itself)
    and its overrides as run (`real`) and as hashed (`hashed`: references as placeholders)."""

    subdir: str
    real: list[str]
    hashed: list[str]


class Outputs:
    """`${stage:...}` and `${best:...}` resolved to what the finished stages made."""

    def __init__(self, done: dict[str, Done]) -> None:
        self.done = done

    def stage(self, name: str, what: str) -> str:
        d = self.done[name]
        if what == "dir" or d.run in ("reconstruct", "evaluate"):
            return str(d.dir)
        if d.run == "preprocess":
            return str(d.points[0].data_path) if len(d.points) == 1 else f"{d.dir}/${{data.name}}.h5"
        if len(d.points) != 1:
            raise UserError(
                f"${{stage:{name}}}: {name} trained {len(d.points)} networks (a sweep): follow its points with "
                f"each: {name} in a reconstruct stage, or take its folder, ${{stage:{name},dir}}"
            )
        return str(d.point_dir(d.points[0]) / "checkpoints" / "best.pt")

    def best(self, name: str, key: str) -> str:
        d = self.done[name]
        ref = f"${{best:{name},{key}}}"
        if d.run != "reconstruct":
            raise UserError(f"{ref}: {name} is a {d.run} stage (best chooses among a reconstruct stage's runs)")
        scored = [(s, p) for p in d.points if (s := _score(d.point_dir(p))) is not None]
        if not scored:
            raise UserError(f"{ref}: no run of {name} has a finite objective in its summary.json")
        point = max(scored, key=lambda sp: sp[0])[1]
        config = OmegaConf.load(d.point_dir(point) / ".hydra" / "config.yaml")
        value = OmegaConf.select(config, key, default=KeyError)
        if value is KeyError:
            raise UserError(f"{ref}: {key} is not a key of {name}'s runs")
        return value_text(value)


def _score(run_dir: Path) -> float | None:
    """The run's objective, larger = better (NRMSE negated), None if not finite."""
    import json

    try:
        objective = json.loads((run_dir / "summary.json").read_text())["objective"]
        value = float(objective["value"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not math.isfinite(value):
        return None
    return -value if objective.get("metric") == "nrmse" else value


def _merged(own: list[str], carried: list[str], forwarded: list[str]) -> list[str]:
    """`carried` (for keys `own` does not set), `own`, then `forwarded` (replacing own's keys)."""
    given = identity.keys(own)
    fixed = identity.keys(forwarded)
    kept = [o for o in carried if o.partition("=")[0] not in given | fixed]
    return [*kept, *(o for o in own if o.partition("=")[0].lstrip("+~") not in fixed), *forwarded]


def invocations(setting: Setting, stage: Stage, done: dict[str, Done]) -> list[Invocation]:
    """The commands of `stage` (one; or, following a train stage, one per point of it)."""
    outputs = Outputs(done)
    real = overrides(setting.cfg, stage.name, outputs)
    hashed = overrides(setting.cfg, stage.name, Placeholders(best=outputs.best))
    if stage.run == "preprocess":
        real.append(f"data.path={OWN}/${{data.name}}.h5")
        hashed.append(f"data.path={OWN}/${{data.name}}.h5")
    if stage.each is None:
        return [Invocation("", _merged(real, [], setting.forwarded), _merged(hashed, [], setting.forwarded))]
    followed = done[stage.each]
    path_real = [o for o in overrides(setting.cfg, stage.each, outputs) if o.startswith("data.path=")]
    path_hashed = [o for o in overrides(setting.cfg, stage.each, Placeholders()) if o.startswith("data.path=")]
    runs = []
    for point in followed.points:
        choices = [f"{k}={point.choices[k]}" for k in ("data", "method") if k in point.choices]
        checkpoint = followed.point_dir(point) / "checkpoints" / "best.pt"
        carried_real = [*choices, *path_real[-1:], f"checkpoint={checkpoint}"]
        carried_hashed = [*choices, *path_hashed[-1:], f"checkpoint={placeholder(stage.each)}/{point.dir}"]
        runs.append(
            Invocation(
                point.dir,
                _merged(real, carried_real, setting.forwarded),
                _merged(hashed, carried_hashed, setting.forwarded),
            )
        )
    return runs


def stage_hash(stage: Stage, runs: list[Invocation], upstream: dict[str, str]) -> str:
    """The hash of the stage: its subcommand, the resolved config of every point, the tokens of
    the stages it reads."""
    own = placeholder(stage.name)
    points = [
        [inv.subdir, identity.configs(stage.run, [o.replace(OWN, own) for o in inv.hashed], f"{stage.key}.overrides")]
        for inv in runs
    ]
    return identity.digest({"run": stage.run, "each": stage.each, "points": points, "upstream": upstream})


def attempts(root: Path, digest: str) -> list[Path]:
    """The folders of earlier attempts at the stage with this hash, in order."""
    name = digest[:HASH_DIGITS]
    more = [p for p in root.glob(f"{name}-*") if p.name.rpartition("-")[2].isdigit()]
    more.sort(key=lambda p: int(p.name.rpartition("-")[2]))
    return [p for p in [root / name, *more] if p.is_dir()]


def target(root: Path, digest: str, stage: Stage, runs: list[Invocation]) -> tuple[Path, bool]:
    """Where the stage runs now, and whether a single train run resumes there."""
    tried = attempts(root, digest)
    if not tried:
        return root / digest[:HASH_DIGITS], False
    last = tried[-1]
    if stage.run != "train":
        return last, False
    expanded = identity.points(runs[0].hashed) if stage.each is None else None
    if expanded is not None and len(expanded) == 1 and (last / "0" / "checkpoints" / "last.pt").is_file():
        return last, True
    if not records.points(last, 1):
        return last, False
    return root / f"{digest[:HASH_DIGITS]}-{len(tried) + 1}", False


def run_stage(setting: Setting, stage: Stage, done: dict[str, Done]) -> Done:
    """Skip `stage` if it was done for the same hash, else run it; its Done."""
    runs = invocations(setting, stage, done)
    upstream = {name: done[name].token for name in stage.needs}
    digest = stage_hash(stage, runs, upstream)
    root = setting.folder / stage.name
    for folder in attempts(root, digest):
        found = records.finished(folder, stage.name, stage.run, digest)
        if found is not None:
            log.info("stage %s: done earlier for the same config (%s): skipped", stage.name, folder)
            return found
    folder, resume = target(root, digest, stage, runs)
    result = Done(stage.name, stage.run, folder, records.new_token(), [])
    start = time.monotonic()
    for inv in runs:
        real = [o.replace(OWN, str(folder)) for o in inv.real] + (["train.resume=true"] if resume else [])
        argv = launch.command(stage.run, real, folder / inv.subdir if inv.subdir else folder)
        result.commands.append(argv[3:])
        log.info("stage %s: %s", stage.name, launch.shown(argv))
        code = launch.execute(argv)
        if code != 0:
            raise StageFailed(stage, code, launch.shown(argv))
    result.seconds = time.monotonic() - start
    result.points = records.points(folder, 1 if stage.each is None else 2)
    files = records.outputs(stage.run, folder, result.points)
    records.write(result, digest, upstream, files)
    return result


def run_all(setting: Setting, stages: list[Stage], report: Callable[[list[Done], list[str]], None]) -> list[Done]:
    """Run (or skip) `stages` in order; after each, `report(done so far, names not run yet)`.
    StageFailed propagates, after the report."""
    done: dict[str, Done] = {}
    for i, stage in enumerate(stages):
        try:
            done[stage.name] = run_stage(setting, stage, done)
        except StageFailed:
            report(list(done.values()), [s.name for s in stages[i:]])
            raise
        report(list(done.values()), [s.name for s in stages[i + 1 :]])
    return list(done.values())
