"""Every registered plug-in built small from its own config, for the registry and config tests.

They iterate the registries and the config folders (mrirecon's conf/ and the plug-ins'), never a
list of names, so a new method, network, trainable family or data format, built in or an
external plug-in (MRIRECON_PLUGINS), is tested without an edit here (tests/test_plugins.py
checks that with a throwaway plug-in).
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mrirecon.cli.configs import config_file, group_options
from mrirecon.cli.overrides import compose
from mrirecon.methods import REGISTRY, Method, build_method
from mrirecon.training.trainables import TRAINABLES, Family, family_for

# iteration counts and widths of a unit test (applied only to keys a config already has)
SMALL = {
    "max_iter": 3,
    "iterations": 2,
    "num_unrolls": 1,
    "cg_max_iter": 2,
    "search_steps": 2,
    "conv_channels": 4,
    "channels": 4,
    "base_channels": 4,
    "num_blocks": 1,
    "depth": 2,
    "chans": 4,
    "num_pools": 2,
    "levels": 2,
    "steps": 1,
    "hidden_channels": 4,
    "bins": 4,
    "num_cascades": 1,
    "sens_chans": 4,
    "sens_pools": 2,
}


def small(cfg: dict[str, Any], keys: dict[str, Any] | None = None) -> dict[str, Any]:
    """cfg with the values of `keys` (default SMALL) for the keys it already has (nested
    sections too)."""
    keys = SMALL if keys is None else keys
    out = {k: (small(v, keys) if isinstance(v, dict) else keys.get(k, v)) for k, v in cfg.items()}
    out.pop("train_defaults", None)  # read by train.*, not an argument
    return out


def plain(node: Any) -> dict[str, Any]:
    """A resolved config section as a plain dict."""
    assert isinstance(node, DictConfig)
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def model_name(option: str) -> str:
    """The `name` in conf/model/<option>.yaml (several options may build the same model)."""
    return str(OmegaConf.load(config_file("model", option)).name)


def family_of(method: str) -> Family | None:
    """The trainable family whose checkpoints `method` needs (None: a method without one)."""
    kind = REGISTRY[method].checkpoint_kind if method in REGISTRY else None
    return None if kind is None else TRAINABLES[kind]


def reads_method(family: Family) -> bool:
    """Whether the family's training reads the method config (the flow prior's does not)."""
    return "method" in family.reads({"loss": composed("train")["train"]["loss"]}, 4)


@functools.cache
def default_model(method: str | None) -> str:
    """The model option `mrirecon train [method=<method>]` composes without model= (a method's
    config may choose its own network)."""
    cfg = compose("train", [f"method={method}"] if method else [], hydra=True)
    return str(cfg.hydra.runtime.choices["model"])


def models_for(method: str, family: Family) -> list[str]:
    """The model options `mrirecon train method=<method>` trains `family` with (for a family that
    does not read the method config: with the default method), the method's own first."""
    fit = [d for d in group_options("model") if family.trains(method, model_name(d))]
    first = default_model(method if reads_method(family) else None)
    return sorted(fit, key=lambda d: d != first)


def learned_cases() -> list[tuple[str, str]]:
    """(method, model option) of every registered method with a checkpoint and each model it
    is trained with."""
    cases = []
    for name in sorted(REGISTRY):
        family = family_of(name)
        if family is not None:
            cases += [(name, model) for model in models_for(name, family)]
    return cases


def train_targets() -> list[tuple[str | None, str]]:
    """(method, model option) that `mrirecon train` takes, one per method a family serves with
    its first model; a family that does not read the method config (the flow prior) once, with
    method None (not given: `mrirecon train model=<option>`)."""
    targets: list[tuple[str | None, str]] = []
    for kind, family in sorted(TRAINABLES.items()):
        served = sorted(m for m in REGISTRY if REGISTRY[m].checkpoint_kind == kind)
        if reads_method(family):
            targets += [(method, models_for(method, family)[0]) for method in served]
        else:
            targets.append((None, models_for(served[0], family)[0]))
    return targets


def train_overrides(method: str | None, model: str, *more: str) -> list[str]:
    """The command line of `mrirecon train` for a train target."""
    return [*([f"method={method}"] if method else []), f"model={model}", *more]


def trained_method(method: str | None) -> str:
    """The method config a train target composes (the default's when not given)."""
    return method or str(composed("train")["method"]["name"])


def composed(primary: str, *overrides: str) -> dict[str, Any]:
    """The config of `mrirecon <primary> <overrides>` (the plug-ins' configs included), resolved."""
    return copy.deepcopy(_composed(primary, *overrides))


@functools.lru_cache(maxsize=256)
def _composed(primary: str, *overrides: str) -> dict[str, Any]:
    return plain(compose(primary, list(overrides)))


def trainable(
    method: str | None, model: str, shape: tuple[int, int], keys: dict[str, Any] | None = None, loss: str | None = None
) -> Any:
    """A fresh trainable of the family that trains `method` (None: the default) with `model` (an
    option of the model group), built from their train config (its train.loss: `loss` when
    given), small (`keys`, default SMALL), for 4-bit images."""
    cfg = composed("train", *train_overrides(method, model, *([f"train.loss={loss}"] if loss else [])))
    family = family_for(trained_method(method), model_name(model))
    assert family is not None, (method, model)
    return family.from_config(
        small(cfg["method"], keys), small(cfg["model"], keys), cfg["train"], shape=shape, bits=4, seed=0, amp=False
    )


def tiny_method(
    name: str, shape: tuple[int, int], model: str | None = None, keys: dict[str, Any] | None = None
) -> Method:
    """Registered method `name` built from its own config, small (`keys`, default SMALL); a
    learned one untrained, in eval mode, made by its family as reconstruct makes it from a
    checkpoint (with `model`, default the first its family trains it with)."""
    torch.manual_seed(0)
    family = family_of(name)
    if family is None:
        return build_method(small(composed("reconstruct", f"method={name}")["method"], keys))
    model = model or models_for(name, family)[0]
    config = small(composed("train", f"method={name}", f"model={model}")["method"], keys)
    method, _ = trainable(name if reads_method(family) else None, model, shape, keys).reconstructor(config, 4, False)
    return method.eval() if isinstance(method, torch.nn.Module) else method
