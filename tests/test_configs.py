"""Every config file composes, and configs and registries agree: each method yaml names a
registered method (and the other way round), every model yaml a registered network, every loss
named by a config a registered loss, every method builds from its own yaml and runs one forward
pass on tiny data, and every trainable family takes a training step with each loss it takes.
The tests iterate the registries and the config folders (tests/registered.py), so a plug-in is
tested without being named here (tests/test_plugins.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_arrays
from omegaconf import OmegaConf
from registered import (
    family_of,
    learned_cases,
    model_name,
    tiny_method,
    train_targets,
    trainable,
    trained_method,
)

from mrirecon.cli.app import config_dir
from mrirecon.cli.configs import config_dirs, group_options
from mrirecon.cli.overrides import compose
from mrirecon.data.batch import collate
from mrirecon.data.dataset import SliceDataset
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError
from mrirecon.losses import LOSSES
from mrirecon.methods import REGISTRY
from mrirecon.nets import NETS
from mrirecon.physics.sense import SenseOperator
from mrirecon.training.trainables import TRAINABLES, family_for

CONF = config_dir()
PRIMARY = ("preprocess", "reconstruct", "train", "evaluate", "study")
SHAPE = (16, 16)


def registry_mismatch(folders: list[Path], group: str = "method") -> set[str]:
    """Names that have a yaml in a <folder>/<group> (method or model) but no registered method or
    network, or the other way round."""
    yamls = {OmegaConf.load(p).name for folder in folders for p in (folder / group).glob("*.yaml")}
    return yamls ^ set(REGISTRY if group == "method" else NETS)


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


def test_every_model_config_names_a_registered_net_and_every_net_has_a_config():
    assert registry_mismatch(config_dirs(), "model") == set()
    for option in group_options("model"):
        assert model_name(option) in NETS, f"model/{option}.yaml names '{model_name(option)}'"


def test_the_model_check_fails_when_a_network_has_no_config(tmp_path):
    shutil.copytree(CONF, tmp_path / "conf")
    (tmp_path / "conf" / "model" / "automap.yaml").unlink()
    assert registry_mismatch([tmp_path / "conf"], "model") == {"automap"}


def test_every_loss_a_config_names_is_registered():
    """train.loss of every method and model option (their train_defaults) names a registered loss."""
    for group in ("method", "model"):
        for option in group_options(group):
            loss = compose("train", [f"{group}={option}"]).train.loss
            assert loss in LOSSES, f"{group}/{option}.yaml: train.loss {loss}"


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
    # the file's own knobs (a study extending another through Hydra's defaults list inherits its knobs)
    knobs = [str(k) for k in OmegaConf.load(CONF / "study" / f"{name}.yaml") if k not in ("stages", "defaults")]
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
    assert {family_for(trained_method(m), model_name(d)).kind for m, d in train_targets()} == set(TRAINABLES)


@pytest.mark.parametrize("method_name, model, loss", [(m, d, loss) for m, d in train_targets() for loss in LOSSES])
def test_every_trainable_takes_a_training_step_with_each_loss_and_rebuilds_from_its_checkpoint(
    method_name, model, loss, tiny_h5
):
    """Each family with each registered loss: a step that changes the weights, finite validation
    with its metric, the same trainable from its checkpoint; or the loss refused by name (a
    density loss for a reconstruction method, and the other way round)."""
    family = family_for(trained_method(method_name), model_name(model))
    torch.manual_seed(0)
    try:
        fresh = trainable(method_name, model, (32, 24), loss=loss)
    except UserError as exc:
        assert str(exc).startswith(f"train.loss: {loss} is no loss of a"), exc
        return
    data = DeepInPyFile(tiny_h5)
    reference = LOSSES[loss].reference
    training = SliceDataset(data, np.arange(4), reference=reference, measured_only=not reference)
    batch = collate([training[k] for k in range(2)])
    before = {k: v.clone() for k, v in fresh.module.state_dict().items()}
    optimizer = torch.optim.Adam(fresh.module.parameters(), lr=1e-3)
    value = fresh.loss(batch, torch.Generator().manual_seed(0))
    value.backward()
    optimizer.step()
    assert torch.isfinite(value) and any(not torch.equal(before[k], v) for k, v in fresh.module.state_dict().items())
    with torch.no_grad():
        val = fresh.validate(collate([SliceDataset(data, np.arange(4, 6))[k] for k in range(2)]))
    assert val and all(np.isfinite(v) for v in val.values()) and fresh.select in val
    ckpt = {**fresh.checkpoint_state(), "model": fresh.module.state_dict()}
    rebuilt = family.from_checkpoint(ckpt)
    assert rebuilt.select == fresh.select and rebuilt.describe() == fresh.describe()
    for key, value in fresh.module.state_dict().items():
        assert torch.equal(rebuilt.module.state_dict()[key], value), key
