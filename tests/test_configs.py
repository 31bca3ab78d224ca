"""Every config file composes, and configs and registries agree: each method yaml names a
registered method (and the other way round), and every method and net builds from its own yaml
and runs one forward pass on tiny data."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_arrays
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch.utils.data import default_collate

from mrirecon.cli import config_dir
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.methods import REGISTRY, build_method
from mrirecon.nets import NETS, build_net
from mrirecon.nets.flow import build_flow
from mrirecon.physics.sense import SenseOperator
from mrirecon.trainables import TRAINABLES, family_for

CONF = config_dir()
PRIMARY = ("preprocess", "reconstruct", "train", "evaluate")
SHAPE = (16, 16)
TRAIN_ONLY = {"flow_prior"}  # `mrirecon train method=flow_prior`: the flow prior's own training


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(primary: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(primary, overrides)


def registry_mismatch(conf: Path) -> set[str]:
    """Method names that have a yaml in conf/method but no registered method, or the other way
    round (the methods that only `train` knows, a trainable family's, count as registered)."""
    return {p.stem for p in (conf / "method").glob("*.yaml")} ^ (set(REGISTRY) | TRAIN_ONLY)


def test_every_method_config_is_registered_and_every_registered_method_has_a_config():
    assert registry_mismatch(CONF) == set()
    assert all(family_for(m, "flow") is not None for m in TRAIN_ONLY)
    for name in options("method"):
        assert OmegaConf.load(CONF / "method" / f"{name}.yaml").name == name, f"conf/method/{name}.yaml: name"


def test_the_registry_check_fails_when_a_config_and_the_registry_disagree(tmp_path):
    shutil.copytree(CONF, tmp_path / "conf")
    (tmp_path / "conf" / "method" / "vit_image.yaml").write_text("name: vit_image\n")
    assert registry_mismatch(tmp_path / "conf") == {"vit_image"}
    (tmp_path / "conf" / "method" / "vit_image.yaml").unlink()
    (tmp_path / "conf" / "method" / "automap.yaml").unlink()
    assert registry_mismatch(tmp_path / "conf") == {"automap"}


def test_every_model_config_names_a_known_net():
    for name in options("model"):
        net = OmegaConf.load(CONF / "model" / f"{name}.yaml")
        net_name = net.name
        assert net_name == "flow" or net_name in NETS, f"conf/model/{name}.yaml names '{net_name}'"


@pytest.mark.parametrize("primary", PRIMARY)
def test_every_primary_config_composes_with_every_group_option(primary):
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / f"{primary}.yaml").defaults)
    groups = {group: options(group) for entry in defaults if isinstance(entry, dict) for group in entry}
    assert "hardware" in groups, primary
    for group, values in groups.items():
        for value in values:
            cfg = composed(primary, [f"{group}={value}"])
            # every interpolation resolves (evaluate has no data group: its data.* keys are unused)
            keys = [k for k in cfg if k != "data" or "data" in groups]
            resolved = {
                k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in keys
            }
            assert resolved["seed"] == cfg.seed
            if group == "data":
                assert cfg.data.name == value


def tiny_problem() -> tuple[torch.Tensor, SenseOperator]:
    a = tiny_arrays(n=2, coils=2, shape=SHAPE, seed=3)
    mask = torch.from_numpy(a["masks"])
    return torch.from_numpy(a["ksp"]) * mask.unsqueeze(1), SenseOperator(torch.from_numpy(a["maps"]), mask)


def small(cfg: dict, keys: dict) -> dict:
    """cfg with the iteration counts of a unit test (only keys the config already has)."""
    return {**cfg, **{k: v for k, v in keys.items() if k in cfg}}


@pytest.mark.parametrize(
    "method_name, model_name",
    [
        (m, d)
        for m, d in itertools.product(sorted(REGISTRY), options("model"))
        if (REGISTRY[m].checkpoint_kind == "flow") == d.startswith("flow")
        and (REGISTRY[m].checkpoint_kind not in (None, "direct") or d == "resnet")  # the others ignore `model`
    ],
)
def test_every_method_builds_from_its_config_and_runs(method_name, model_name):
    cfg = composed(
        "train" if REGISTRY[method_name].checkpoint_kind else "reconstruct",
        [f"method={method_name}", f"model={model_name}"]
        if REGISTRY[method_name].checkpoint_kind
        else [f"method={method_name}"],
    )
    method_cfg = small(
        OmegaConf.to_container(cfg.method, resolve=True),
        {"max_iter": 3, "iterations": 2, "num_unrolls": 1, "cg_max_iter": 2, "search_steps": 2, "conv_channels": 4},
    )
    method_cfg.pop("train_defaults", None)  # read by train.*, not an argument of the method
    kind = REGISTRY[method_name].checkpoint_kind
    components = {}
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True) if "model" in cfg else None
    if model_cfg is not None:
        model_cfg.pop("train_defaults", None)  # read by train.*, not an argument of the net
    if kind == "unrolled":
        components["denoiser"] = build_net(
            small(
                model_cfg, {"channels": 4, "base_channels": 4, "num_blocks": 1, "depth": 2, "chans": 4, "num_pools": 2}
            )
        )
    elif kind == "flow":
        flow = build_flow(
            small(model_cfg, {"levels": 2, "steps": 1, "hidden_channels": 4, "num_blocks": 1, "bins": 4}), (1, *SHAPE)
        )
        flow.log_prob(torch.rand(2, 1, *SHAPE) - 0.5)  # ActNorm's data-dependent initialisation
        components.update(flow=flow.eval(), bits=4)
    elif kind == "direct":
        if "net" in method_cfg:
            method_cfg["net"] = small(method_cfg["net"], {"chans": 4, "num_pools": 2})
        if REGISTRY[method_name].fixed_shape:
            components["shape"] = SHAPE
    method = build_method(method_cfg, **components)
    y, op = tiny_problem()
    with torch.no_grad():
        x = method.reconstruct(y, op, torch.full((2,), 1e-3))
    assert x.shape == (2, *SHAPE) and torch.isfinite(x).all(), method_name


def test_config_dir_is_the_shipped_conf():
    assert (Path(CONF) / "base.yaml").is_file()


# what `mrirecon train` can be asked to train: each learned method (the model group for the
# unrolled ones) and the flow prior; together they cover every trainable family
TRAIN_TARGETS = [(m, "resnet") for m in sorted(REGISTRY) if REGISTRY[m].checkpoint_kind in ("unrolled", "direct")] + [
    ("flow_prior", "flow")
]


def test_the_train_targets_cover_every_trainable_family():
    assert {family_for(m, d).kind for m, d in TRAIN_TARGETS} == set(TRAINABLES)


@pytest.mark.parametrize("method_name, model_name", TRAIN_TARGETS)
def test_every_trainable_takes_a_training_step_and_rebuilds_from_its_checkpoint(method_name, model_name, tiny_h5):
    cfg = composed("train", [f"method={method_name}", f"model={model_name}"])
    method = small(
        OmegaConf.to_container(cfg.method, resolve=True), {"num_unrolls": 1, "cg_max_iter": 2, "conv_channels": 4}
    )
    if "net" in method:
        method["net"] = small(method["net"], {"chans": 4, "num_pools": 2})
    model = small(
        OmegaConf.to_container(cfg.model, resolve=True),
        {"channels": 4, "num_blocks": 1, "levels": 2, "steps": 1, "hidden_channels": 4, "bins": 4},
    )
    for section in (method, model):
        section.pop("train_defaults", None)
    family = family_for(method_name, model_name)
    torch.manual_seed(0)
    trainable = family.from_config(
        method, model, OmegaConf.to_container(cfg.train, resolve=True), shape=(32, 24), bits=4, seed=0, amp=False
    )
    data = DeepInPyFile(tiny_h5)
    batch = default_collate([trainable.dataset(data, np.arange(4), training=True)[k] for k in range(2)])
    before = {k: v.clone() for k, v in trainable.module.state_dict().items()}
    optimizer = torch.optim.Adam(trainable.module.parameters(), lr=1e-3)
    loss = trainable.loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    trainable.after_step(0)
    assert torch.isfinite(loss) and any(not torch.equal(before[k], v) for k, v in trainable.module.state_dict().items())
    with torch.no_grad():
        val = trainable.validate(
            default_collate([trainable.dataset(data, np.arange(4, 6), training=False)[k] for k in range(2)])
        )
    assert val and all(np.isfinite(v) for v in val.values()) and family.select in val
    ckpt = {**trainable.checkpoint_state(), "model": trainable.module.state_dict()}
    rebuilt = family.from_checkpoint(ckpt)
    for key, value in trainable.module.state_dict().items():
        assert torch.equal(rebuilt.module.state_dict()[key], value), key
