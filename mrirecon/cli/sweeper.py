"""`hydra/sweeper=optuna`: Hydra's Optuna sweeper set up to choose parameters on the val split.

    mrirecon reconstruct -m hydra/sweeper=optuna method=cs_wavelet data=4bit_full \\
        'method.lam=tag(log, interval(1e-4, 1e-1))' hydra.sweeper.n_trials=20

`register()` (called by the CLI, when the `sweep` extra is installed) stores the config of
hydra-optuna-sweeper's `OptunaSweeper` as `hydra/sweeper=optuna` with mrirecon's defaults:
the TPE sampler, the direction from `objective` (maximise psnr and ssim, minimise nrmse: the
plugin's own default, minimize, would minimise PSNR), one trial at a time, and data.split=val
for every trial. `split_problem` refuses a search on the test split: parameters are chosen on
val and the chosen point is reported once on test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import DictConfig, OmegaConf

DIRECTIONS = {"psnr": "maximize", "ssim": "maximize", "nrmse": "minimize"}
CHOOSING_SPLITS = ("val", "train")  # splits an optimiser may look at
RESOLVER = "mrirecon_direction"


def direction_of(objective: str) -> str:
    """'maximize' or 'minimize' for a metric name (psnr, ssim, nrmse)."""
    if objective not in DIRECTIONS:
        raise ValueError(f"objective: '{objective}' is not one of {', '.join(DIRECTIONS)}")
    return DIRECTIONS[objective]


@dataclass
class ValSplitOptunaSweeperConf(OptunaSweeperConf):
    """The plugin's config with mrirecon's defaults: TPE (the plugin's default sampler), the
    direction from `objective`, one trial at a time (each trial sees every earlier result) and
    data.split=val for every trial (a data.split=... on the command line overrides it)."""

    direction: Any = "${" + RESOLVER + ":${objective}}"
    n_jobs: int = 1
    params: dict[str, str] | None = field(default_factory=lambda: {"data.split": "val"})


def register() -> None:
    """Store `hydra/sweeper=optuna` as `ValSplitOptunaSweeperConf`. Hydra's plugin discovery
    (once per process) re-runs the plugin's own registration, so it runs first."""
    Plugins.instance()
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, direction_of)
    ConfigStore.instance().store(
        group="hydra/sweeper", name="optuna", node=ValSplitOptunaSweeperConf, provider="mrirecon"
    )


def is_optuna(cfg: DictConfig) -> bool:
    """True when the composed config (with its hydra node) sweeps with Optuna."""
    return "optuna" in str(OmegaConf.select(cfg, "hydra.sweeper._target_", default=""))


def swept_splits(overrides: list[str], cfg: DictConfig) -> list[str]:
    """The data.split values the trials will run on: the command line's (last) data.split,
    else the sweeper's fixed params, else the config's."""
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    values = [str(params["data.split"])] if "data.split" in params else [str(cfg.data.split)]
    for parsed in OverridesParser.create().parse_overrides(overrides):
        if parsed.get_key_element().lstrip("+~") == "data.split":
            swept = parsed.is_sweep_override()
            values = [str(v) for v in parsed.sweep_string_iterator()] if swept else [parsed.get_value_element_as_str()]
    return values


def split_problem(cfg: DictConfig, overrides: list[str]) -> str | None:
    """Why an Optuna sweep may not run on its split (None when it may), e.g. data.split=test."""
    if not is_optuna(cfg):
        return None
    for split in swept_splits(overrides, cfg):
        if split not in CHOOSING_SPLITS:
            return (
                f"data.split: an Optuna sweep chooses parameters, so it runs on data.split=val (its default), "
                f"not on '{split}': choose on val, then run the chosen point once on test (docs/tuning.md)"
            )
    return None
