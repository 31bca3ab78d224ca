"""Every config file composes, and configs and registries agree: each method yaml names a
registered method (and the other way round), every model yaml a network or a family's own
model, every method builds from its own yaml and runs one forward pass on tiny data, and every
trainable family takes a training step. The tests iterate the registries and the config folders
(tests/registered.py), so a plug-in is tested without being named here (tests/test_plugins.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_arrays
from omegaconf import OmegaConf
from registered import family_of, learned_cases, model_name, tiny_method, train_targets, trainable
from torch.utils.data import default_collate

from mrirecon.cli.app import config_dir
from mrirecon.cli.overrides import compose, config_dirs, group_options
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.methods import REGISTRY
from mrirecon.nets import NETS
from mrirecon.physics.sense import SenseOperator
from mrirecon.training.trainables import TRAINABLES, family_for

CONF = config_dir()
PRIMARY = ("preprocess", "reconstruct", "train", "evaluate", "study")
SHAPE = (16, 16)


def train_only() -> set[str]:
    """The method configs that only `mrirecon train` takes (a family's own training: flow_prior)."""
    return {m for family in TRAINABLES.values() for m in family.train_only}


def registry_mismatch(folders: list[Path]) -> set[str]:
    """Method names that have a yaml in a <folder>/method but no registered method, or the other
    way round (the methods that only `train` knows, a trainable family's, count as registered)."""
    yamls = {p.stem for folder in folders for p in (folder / "method").glob("*.yaml")}
    return yamls ^ (set(REGISTRY) | train_only())


def test_every_method_config_is_registered_and_every_registered_method_has_a_config():
    assert registry_mismatch(config_dirs()) == set()
    for name in group_options("method"):
        assert compose("train", [f"method={name}"]).method.name == name, f"method/{name}.yaml: name"


def test_the_registry_check_fails_when_a_config_and_the_registry_disagree(tmp_path):
    shutil.copytree(CONF, tmp_path / "conf")
    (tmp_path / "conf" / "method" / "vit_image.yaml").write_text("name: vit_image\n")
    assert registry_mismatch([tmp_path / "conf"]) == {"vit_image"}
    (tmp_path / "conf" / "method" / "vit_image.yaml").unlink()
    (tmp_path / "conf" / "method" / "automap.yaml").unlink()
    assert registry_mismatch([tmp_path / "conf"]) == {"automap"}


def test_every_model_config_names_a_known_net():
    own = {m for family in TRAINABLES.values() for m in family.own_models}  # models a family builds itself: the flow
    for option in group_options("model"):
        assert model_name(option) in set(NETS) | own, f"model/{option}.yaml names '{model_name(option)}'"


@pytest.mark.parametrize("primary", PRIMARY)
def test_every_primary_config_composes_with_every_group_option(primary):
    defaults = OmegaConf.to_container(OmegaConf.load(CONF / f"{primary}.yaml").defaults)
    groups = {group: group_options(group) for entry in defaults if isinstance(entry, dict) for group in entry}
    assert "hardware" in groups, primary
    for group, values in groups.items():
        for value in values:
            cfg = compose(primary, [f"{group}={value}"])
            # every interpolation resolves (evaluate has no data group: its data.* keys are unused)
            keys = [k for k in cfg if k != "data" or "data" in groups]
            resolved = {
                k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in keys
            }
            assert resolved["seed"] == cfg.seed
            if group == "data":
                assert cfg.data.name == value


@pytest.mark.parametrize("name", group_options("study"))
def test_every_study_plans_and_the_first_point_of_each_stage_composes(name):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mrirecon.studies import plan
    from mrirecon.studies.runner import Setting
    from mrirecon.tasks.study import check_composes

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("study", [f"study={name}"])
        stages = plan.stages(cfg)
        check_composes(Setting(cfg, Path("outputs/study") / name, []), stages)  # a misspelt key: UserError
    evaluated = {n for s in stages if s.run == "evaluate" for n in s.needs}
    assert stages[-1].run == "evaluate" and all(s.name in evaluated for s in stages if s.run == "reconstruct")


@pytest.mark.parametrize("name", group_options("study"))
def test_every_knob_of_a_study_is_read_by_one_of_its_stages(name):
    text = (CONF / "study" / f"{name}.yaml").read_text()
    knobs = [str(k) for k in OmegaConf.load(CONF / "study" / f"{name}.yaml") if k != "stages"]
    assert knobs and all(f"${{study.{k}}}" in text for k in knobs), name


def tiny_problem() -> tuple[torch.Tensor, SenseOperator]:
    a = tiny_arrays(n=2, coils=2, shape=SHAPE, seed=3)
    mask = torch.from_numpy(a["masks"])
    return torch.from_numpy(a["ksp"]) * mask.unsqueeze(1), SenseOperator(torch.from_numpy(a["maps"]), mask)


@pytest.mark.parametrize(
    "method_name, model", [(m, None) for m in sorted(REGISTRY) if family_of(m) is None] + learned_cases()
)
def test_every_method_builds_from_its_config_and_runs(method_name, model):
    method = tiny_method(method_name, SHAPE, model)
    y, op = tiny_problem()
    with torch.no_grad():
        x = method.reconstruct(y, op, torch.full((2,), 1e-3))
    assert x.shape == (2, *SHAPE) and torch.isfinite(x).all(), method_name


def test_config_dir_is_the_shipped_conf():
    assert (Path(CONF) / "base.yaml").is_file()


def test_the_train_targets_cover_every_trainable_family():
    assert {family_for(m, model_name(d)).kind for m, d in train_targets()} == set(TRAINABLES)


@pytest.mark.parametrize("method_name, model", train_targets())
def test_every_trainable_takes_a_training_step_and_rebuilds_from_its_checkpoint(method_name, model, tiny_h5):
    family = family_for(method_name, model_name(model))
    torch.manual_seed(0)
    fresh = trainable(method_name, model, (32, 24))
    data = DeepInPyFile(tiny_h5)
    batch = default_collate([fresh.dataset(data, np.arange(4), training=True)[k] for k in range(2)])
    before = {k: v.clone() for k, v in fresh.module.state_dict().items()}
    optimizer = torch.optim.Adam(fresh.module.parameters(), lr=1e-3)
    loss = fresh.loss(batch, torch.Generator().manual_seed(0))
    loss.backward()
    optimizer.step()
    fresh.after_step(0)
    assert torch.isfinite(loss) and any(not torch.equal(before[k], v) for k, v in fresh.module.state_dict().items())
    with torch.no_grad():
        val = fresh.validate(
            default_collate([fresh.dataset(data, np.arange(4, 6), training=False)[k] for k in range(2)])
        )
    assert val and all(np.isfinite(v) for v in val.values()) and family.select in val
    ckpt = {**fresh.checkpoint_state(), "model": fresh.module.state_dict()}
    rebuilt = family.from_checkpoint(ckpt)
    for key, value in fresh.module.state_dict().items():
        assert torch.equal(rebuilt.module.state_dict()[key], value), key
