"""Every documented key takes effect or is refused. The test walks every key of the composed
configs, `train.*`, `model.*` of each model config, `method.*` of each method config and
`data.*` of each subcommand, changes it alone and shows that what the subcommand builds from it
changes (the trainable, its network and settings, the optimizer and schedule, the reconstruction
method, preprocess's read options, the processed file and split read), or that the change is
refused with a message naming the key. The keys come from the configs (and the registries), so a
new key without an effect fails here; its other value comes from its type or `OTHER`.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import tiny_arrays, write_h5
from omegaconf import DictConfig, OmegaConf
from registered import (
    SMALL,
    family_of,
    model_name,
    models_for,
    small,
    train_overrides,
    train_targets,
    trained_method,
)

from mrirecon.cli.configs import group_options
from mrirecon.cli.overrides import Problem, check, check_read, compose, parse
from mrirecon.errors import UserError, configured
from mrirecon.methods import REGISTRY, build_method
from mrirecon.tasks import preprocess, preprocess_file, preprocess_shards, preprocess_subjects, reconstruct, train
from mrirecon.tasks.common import maps_option, open_processed, read_options, source_spec, variant_of
from mrirecon.tasks.settings import check_file_variant
from mrirecon.tasks.train_common import resume_path, settings_of
from mrirecon.training.trainables import family_for

REFUSED = (UserError, ValueError, Problem)
# Other values for keys whose type gives none (a choice among names, null, 'auto'); a callable
# gets the default. Every other key: a boolean is negated, a number changed.
OTHER: dict[str, Any] = {
    "train.optimizer": lambda v: "adam" if v == "rmsprop" else "rmsprop",
    "train.step_lr": {"step_size": 2, "gamma": 0.5},
    "train.grad_clip": 1.0,
    "train.max_minutes": 1.0,
    "method.lam": lambda v: 0.01 if v == "auto" else v * 2,
    "method.stdev": 0.01,  # dbp: 'auto' -> a number
    "method.levels": 2,  # cs_wavelet: 'auto' -> a number
    "method.solver": "pogm",
    "method.wavelet": "haar",
    "method.input": "cg_sense",
    "method.loss": lambda v: "mse" if v == "l1" else "l1",  # method.train_defaults.loss
    "train.loss": lambda v: "l1" if v == "mse" else "mse",
    "model.loss": lambda v: "sse",  # model.train_defaults.loss (the flow's bits_per_dim)
    "model.memory_limit_gb": 1e-6,  # a training-memory bound: this one refuses any size, naming the key
    "method.z_init": "zeros",
    "method.z_norm": "l2",
    "method.train_defaults.optimizer": lambda v: "adam" if v == "rmsprop" else "rmsprop",
    "model.padding_mode": "zeros",
    "data.source": "other.h5",
    "data.path": "other.h5",
    "data.name": "other",
    "data.split": "val",
    "data.bits": 8,
    "data.noise": 0.05,
    "data.compression": "gzip",
    "data.mask": "fastmri_random",
    "data.prewhiten": "true",
    "data.coils": 4,
    "data.coil_compression": "volume",
    "data.cfl_maps": "maps.cfl",
    "data.slices_per_subject": 3,
    "data.maps": "espirit",
    "data.ismrmrd_repetitions": "slices",
    "data.shards": 2,
    "data.shard": 1,  # alone: refused (it needs data.shards)
}
# Keys not walked, each with its reason (none today: a network is chosen by the model group, whose
# `name` is the group option).
NOT_WALKED: set[str] = set()


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a plain nested dict, `name` (the group option) left out."""
    for key, value in node.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        elif f"{prefix}{key}" != "name":
            yield f"{prefix}{key}", value


def other(full_key: str, value: Any) -> Any:
    """Another valid value of the key (`OTHER`, else by its type)."""
    section, leaf = full_key.split(".", maxsplit=1)[0], full_key.rsplit(".", maxsplit=1)[-1]
    choice = OTHER.get(full_key, OTHER.get(f"{section}.{leaf}"))
    if choice is not None:
        return choice(value) if callable(choice) else choice
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 if value else 0.5
    raise AssertionError(f"{full_key}: no other value for {value!r}: add one to OTHER")


def snapshot(obj: Any, depth: int = 0) -> Any:
    """A comparable picture of what was built: plain values, tensors (shape, dtype, sum), and the
    attributes of objects and modules, recursively."""
    if isinstance(obj, (bool, int, float, str, type(None), Path, torch.device)):
        return obj
    if isinstance(obj, torch.Tensor):
        return ("tensor", tuple(obj.shape), str(obj.dtype), float(obj.detach().to(torch.complex128).abs().sum()))
    if isinstance(obj, np.ndarray):
        return ("array", obj.shape, float(np.abs(obj).sum()))
    if isinstance(obj, (list, tuple)):
        return tuple(snapshot(v, depth) for v in obj)
    if isinstance(obj, dict):
        return tuple(sorted((str(k), snapshot(v, depth)) for k, v in obj.items()))
    if isinstance(obj, functools.partial):
        return (obj.func.__qualname__, snapshot(obj.args, depth), snapshot(obj.keywords, depth))
    if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
    if depth > 8 or not hasattr(obj, "__dict__"):
        return type(obj).__qualname__
    fields = {
        k: v for k, v in vars(obj).items() if not k.startswith("_") or k in ("_parameters", "_buffers", "_modules")
    }
    return (type(obj).__qualname__, snapshot(fields, depth + 1))


def effect(build: Callable[[], Any], key: str) -> Any:
    """snapshot(build()), or ('refused', key) when it raises an error whose message names the key."""
    try:
        return snapshot(build())
    except REFUSED as exc:
        leaf = key.rsplit(".", maxsplit=1)[-1]
        assert leaf in str(exc), f"{key}: refused for another reason: {exc}"
        return ("refused", key)


def walk(
    base: DictConfig, sections: tuple[str, ...], outcome: Callable[[DictConfig, dict[str, set[str]]], Any]
) -> None:
    """Change each key of `sections` alone (given on the command line) and assert that the outcome
    changes or the change is refused."""
    defaults = OmegaConf.to_container(base, resolve=True)
    before = effect(lambda: outcome(base, {}), "(defaults)")
    assert before[0] != "refused"
    for section in sections:
        for key, value in leaves(defaults[section]):
            full = f"{section}.{key}"
            if full in NOT_WALKED:
                continue
            changed = base.copy()
            OmegaConf.update(changed, full, other(full, value), merge=False)
            after = effect(lambda: outcome(changed, {section: {key}}), full)
            assert after != before, f"{full}={other(full, value)!r} changed nothing that was built or run"


# -- train: train.*, method.* and model.* ---------------------------------------------------------------


class Shape:
    """What the train task reads of the processed file to build: its image shape."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape


def train_outcome(cfg: DictConfig, given: dict[str, set[str]], resume: Path) -> Any:
    """What `mrirecon train` builds from `cfg` (its own functions, in its order): the family's
    key checks, loop settings, optimizer, resume checkpoint, trainable and schedule."""
    family = train._family(cfg)
    bits, _ = variant_of(cfg)
    train.check_settings(cfg, family, bits, given=lambda section: given.get(section, set()), groups=set)
    settings = settings_of(cfg)
    optimizer_class, lr = train.optimizer_of(cfg)
    shape = (64, 64) if family.kind == "flow" else (16, 16)  # a flow of levels + 1 still fits
    trainable = train.trainable_of(cfg, family, Shape(shape), bits, settings.seed, torch.device("cpu"))
    optimizer = optimizer_class(trainable.module.parameters(), lr=lr)
    scheduler = train.scheduler_of(cfg, optimizer, settings.epochs)
    rates = None if scheduler is None else [f(e) for f in scheduler.lr_lambdas for e in range(8)]
    other_state = {k: v for k, v in vars(trainable).items() if k != "module"}
    return settings, optimizer_class, lr, resume_path(cfg, resume.parent), other_state, trainable.module, rates


def train_config(method: str | None, model: str) -> DictConfig:
    """The train config of `method` (None: not given) and `model`, its networks and iterations
    made small (SMALL)."""
    variant = "4bit_quarter" if family_for(trained_method(method), model_name(model)).kind == "flow" else "quarter"
    cfg = compose("train", train_overrides(method, model, f"data={variant}"))
    for section in ("method", "model"):
        for key, value in leaves(OmegaConf.to_container(cfg[section])):
            if key.split(".")[-1] in SMALL and "train_defaults" not in key:
                OmegaConf.update(cfg, f"{section}.{key}", SMALL[key.split(".")[-1]], merge=False)
    return cfg


@functools.cache
def model_targets() -> list[tuple[str | None, str]]:
    """(method, model option) for every model option, with a method whose family builds it."""
    targets = []
    for option in group_options("model"):
        for method, model in train_targets():
            family = family_for(trained_method(method), model_name(model))
            if option in models_for(trained_method(method), family):
                targets.append((method, option))
                break
    return targets


@pytest.mark.parametrize("method, model", train_targets())
def test_every_train_and_method_key_changes_the_training_or_is_refused(method, model, tmp_path):
    """The test that catches a family ignoring train.flip or train.sample_temperature (the flow
    did), a method key dropped by its constructor, or a train key no family reads."""
    resume = tmp_path / "checkpoints" / "last.pt"
    resume.parent.mkdir()
    resume.write_bytes(b"")
    OTHER["train.resume"] = str(resume)
    walk(train_config(method, model), ("train", "method"), lambda c, g: train_outcome(c, g, resume))


@pytest.mark.parametrize("method, model", model_targets())
def test_every_model_key_changes_the_network_or_is_refused(method, model, tmp_path):
    assert {m for _, m in model_targets()} == set(group_options("model"))  # every model config is walked
    walk(train_config(method, model), ("model",), lambda c, g: train_outcome(c, g, tmp_path / "none.pt"))


def test_the_flow_prior_refuses_method_keys_and_a_method_choice():
    """The flow prior trains alone: a method.* key, or a method= given with model=flow, is
    refused, not ignored (the old code trained the flow and logged that method=... did not apply)."""
    cfg = train_config(None, "flow")
    family = train._family(cfg)
    with pytest.raises(UserError, match=r"^method.lam: not read: the flow family trains its network alone"):
        train.check_settings(cfg, family, 4, given=lambda s: {"lam"} if s == "method" else set(), groups=set)
    with pytest.raises(UserError, match=r"^method=dbp: not read: model=flow trains the flow prior alone .*flow_l1"):
        train.check_settings(cfg, family, 4, given=lambda s: set(), groups=lambda: {"method"})
    train.check_settings(cfg, family, 4, given=lambda s: set(), groups=lambda: {"model", "data"})


# -- reconstruct: method.* of every method config, learned ones rebuilt from a checkpoint --------------------


def reconstruct_outcome(name: str, checkpoint: dict[str, Any] | None) -> Callable[[DictConfig, dict], Any]:
    """What `reconstruct method=<name>` builds: the method (a learned one rebuilt from
    `checkpoint` by its family, given the keys set on the command line) and its recorded config."""

    def build(cfg: DictConfig, given: dict[str, set[str]]) -> Any:
        requested = OmegaConf.to_container(cfg.method, resolve=True)
        if checkpoint is None:
            return configured("method", build_method, requested)
        trained = family_of(name).from_checkpoint(checkpoint)
        return configured("method", trained.reconstructor, requested, 4, False, given=given.get("method", set()))

    return build


def checkpoint_of(name: str) -> dict[str, Any] | None:
    """A checkpoint of an untrained, small model of `name`'s family, trained as `mrirecon train`
    makes it (the flow methods: by the flow prior's training); None for a method without one."""
    family = family_of(name)
    if family is None:
        return None
    targets = [(m, d) for m, d in train_targets() if family_for(trained_method(m), model_name(d)) is family]
    method, model = next(((m, d) for m, d in targets if m == name), targets[0])
    cfg = OmegaConf.to_container(train_config(method, model), resolve=True)
    torch.manual_seed(0)
    trainable = family.from_config(
        small(cfg["method"]), small(cfg["model"]), cfg["train"], shape=(32, 24), bits=4, seed=0, amp=False
    )
    return {**trainable.checkpoint_state(), "model": trainable.module.state_dict()}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_method_key_changes_the_reconstruction_or_is_refused(name):
    """Classical methods take every key; a learned method rebuilt from its checkpoint applies its
    inference keys (DBP's unroll count, CG iterations, stdev) and refuses those its weights fix."""
    torch.manual_seed(0)
    walk(compose("reconstruct", [f"method={name}"]), ("method",), reconstruct_outcome(name, checkpoint_of(name)))


# -- data.*: each subcommand reads its own keys, refuses the others ------------------------------------------


class Coils:
    """The one thing coil compression reads of a source: its number of coils."""

    num_coils = 8


def preprocess_outcome(cfg: DictConfig, given: dict[str, set[str]]) -> Any:
    """What `mrirecon preprocess` makes from the data keys: the variant, the HDF5 filter, the
    output path, the source, the read options, the coil maps' origin, the splits and the coil
    compression."""
    refuse_unread("preprocess", given)
    subjects = np.arange(40)
    return (
        preprocess.variant_options(cfg),
        preprocess.compression_of(cfg),
        str(cfg.data.path),
        source_spec(cfg),
        read_options(cfg),
        maps_option(cfg),
        preprocess_subjects.new_splits(cfg, subjects),
        preprocess_file.coil_compression(cfg, Coils(), subjects),
        None if cfg.data.shards is None and cfg.data.shard is None else preprocess_shards.shard_options(cfg),
    )


def refuse_unread(subcommand: str, given: dict[str, set[str]]) -> None:
    """The command-line check of a subcommand's data keys (overrides.check_read)."""
    check_read(subcommand, parse([f"data.{key}=1" for key in given.get("data", set())]))


def processed_outcome(subcommand: str) -> Callable[[DictConfig, dict], Any]:
    """What train and reconstruct read through the data keys: the processed file (data.path,
    whose default follows data.name), checked to hold data.bits and data.scale, and for
    reconstruct the slices of data.split."""

    def read(cfg: DictConfig, given: dict[str, set[str]]) -> Any:
        refuse_unread(subcommand, given)
        data = open_processed(cfg)
        bits, scale = variant_of(cfg)
        check_file_variant(data, bits, scale)
        return str(data.path), reconstruct.split_of(cfg, data) if subcommand == "reconstruct" else None

    return read


@pytest.mark.parametrize("subcommand", ["preprocess", "train", "reconstruct", "evaluate"])
def test_every_data_key_takes_effect_or_is_refused(subcommand, tmp_path, monkeypatch):
    """preprocess reads every data key but data.split; train and reconstruct read only the
    processed file's (path, name, bits, scale; reconstruct also split) and refuse the preprocess
    keys (the old code accepted `reconstruct data.coils=abc`); evaluate reads none."""
    monkeypatch.chdir(tmp_path)
    splits = {"split_train": [0, 1, 2], "split_val": [3], "split_test": [4, 5]}
    for path in ("outputs/data/4bit_quarter.h5", "outputs/data/other.h5", "other.h5"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        write_h5(tmp_path / path, tiny_arrays(), {"bits": 4, "scale": 0.25, **splits})
    base = compose(subcommand, [] if subcommand == "evaluate" else ["data=4bit_quarter"])
    if subcommand == "preprocess":
        walk(base, ("data",), preprocess_outcome)
    elif subcommand == "evaluate":  # composes no data node; any data key is refused by name
        assert "data" not in base
        for key in ("path", "split", "coils", "espirit.crop"):
            assert check("evaluate", [f"data.{key}=x"], False).startswith(f"data.{key}: not read by mrirecon evaluate")
    else:
        walk(base, ("data",), processed_outcome(subcommand))


def test_a_preprocess_key_is_refused_on_the_command_line():
    """`reconstruct ... data.coils=abc` and `train ... data.espirit.crop=0.5` exit 0 on the old
    code; now one error line says that the key is preprocess's."""
    assert check("reconstruct", ["data.coils=abc"], False).startswith("data.coils: a preprocess key")
    assert check("train", ["data.espirit.crop=0.5"], False).startswith("data.espirit.crop: a preprocess key")
    assert check("train", ["data.split=val"], False).startswith("data.split: not read by mrirecon train")
    assert check("preprocess", ["data.split=val"], False).startswith("data.split: not read by mrirecon preprocess")
    assert check("reconstruct", ["data.split=val", "data.path=x.h5"], False) is None
    assert check("preprocess", ["data.coils=4", "data.source=x.h5"], False) is None
