"""`mrirecon study study=<name>`: run the stages that conf/study/<name>.yaml declares, in order, each
in its own folder under the study folder (hydra.run.dir, default outputs/study/<name>), skipping
those done earlier for the same resolved config (mrirecon/studies/). Given on the command line,
`seed`, `hardware` and `hardware.*`, `hydra/launcher` and `hydra.launcher.*` go to every stage;
`dataset=<name>` makes the study read the data set that `mrirecon download` put in dataset.dir."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from mrirecon.errors import UserError
from mrirecon.studies import identity, plan, summary
from mrirecon.studies.references import Placeholders, placeholder
from mrirecon.studies.runner import OWN, Setting, StageFailed, run_all

log = logging.getLogger("mrirecon.study")
FORWARDED = ("seed", "hardware", "hydra/launcher")  # command-line keys (and their sub-keys) every stage gets


def forwarded(given: list[str]) -> list[str]:
    """The command-line overrides among `given` that go to every stage."""
    out = []
    for text in given:
        key = text.partition("=")[0].lstrip("+~")
        if key in FORWARDED or key.startswith(("hardware.", "hydra.launcher.")):
            out.append(text)
    return out


def check_dataset(cfg: DictConfig, given: list[str]) -> None:
    """With dataset=<name>: its folder exists, and no dataset key but dataset.dir was given (the
    study reads the downloaded files, nothing else of the data set's config)."""
    if cfg.get("dataset") is None:
        return
    extra = [t for t in given if t.startswith("dataset.") and not t.startswith("dataset.dir=")]
    if extra:
        key = extra[0].partition("=")[0]
        raise UserError(
            f"{key}: not read by mrirecon study (it reads dataset.dir, where mrirecon download put the files)"
        )
    folder = Path(str(cfg.dataset.dir))
    if not folder.is_dir():
        raise UserError(
            f"dataset.dir: {folder} is not a folder: fetch the data set first with "
            f"'mrirecon download dataset={cfg.dataset.name} dataset.dir={folder}'"
        )


def check_composes(setting: Setting, stages: list[plan.Stage]) -> None:
    """The first point of every stage composes (a misspelt key or option in the last stage is
    refused before the first one runs)."""
    for stage in stages:
        listed = plan.overrides(setting.cfg, stage.name, Placeholders())
        if stage.run == "preprocess":
            listed.append(f"data.path={placeholder(stage.name)}/${{data.name}}.h5")
        if stage.each is not None:
            listed.append(f"checkpoint={placeholder(stage.each)}")
        listed = [o.replace(OWN, placeholder(stage.name)) for o in [*listed, *setting.forwarded]]
        first = identity.points(listed)
        identity.composed(stage.run, first[0] if first else listed, f"{stage.key}.overrides")


def run(cfg: DictConfig) -> None:
    hydra = HydraConfig.get()
    name = str(hydra.runtime.choices.get("study"))
    given = [*hydra.overrides.task, *hydra.overrides.hydra]
    check_dataset(cfg, list(hydra.overrides.task))
    setting = Setting(cfg, Path(str(hydra.run.dir)), forwarded(given))
    stages = plan.stages(cfg)
    check_composes(setting, stages)
    outputs = summary.claim(setting.folder, bool(cfg.get("overwrite", False)))
    try:
        done = run_all(setting, stages, lambda d, pending: summary.write(outputs, name, d, pending))
    except StageFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    ran = [d.name for d in done if not d.skipped]
    log.info(
        "study %s: %d stage(s) ran (%s), %d skipped", name, len(ran), ", ".join(ran) or "none", len(done) - len(ran)
    )
    for table in summary.results(done):
        log.info("table: %s", table)
    log.info("stages and run dirs: %s", setting.folder / "study.md")
