"""Every malformed checkpoint entry is one error line, and non-finite weights are refused: a list
of corruptions of a valid checkpoint, each given to what `reconstruct` does with `checkpoint=`
(the reported ones through the CLI in this process), and the entries that train.resume reads
through load_checkpoint."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import refused, run_main
from omegaconf import DictConfig, OmegaConf

from mrirecon.errors import UserError
from mrirecon.io.checkpoint_entries import FORMAT
from mrirecon.io.files import load_checkpoint, save_checkpoint

THREADS = "hardware.threads=1"


@pytest.fixture(scope="module")
def valid() -> dict[str, Any]:
    """The entries a `train` run writes for dbp + resnet (small), as Trainer._checkpoint makes them."""
    from registered import trainable

    torch.manual_seed(0)
    fresh = trainable("dbp", "resnet", (32, 24))
    optimizer = torch.optim.Adam(fresh.module.parameters(), lr=1e-3)
    state = {"epoch": 1, "batch": 0, "step": 2, "best": 0.3, "best_by": "val_nrmse", "world_size": 1}
    state |= {"history": [{"epoch": 1, "val_nrmse": 0.3}], "loss_sum": 0.0, "loss_count": 0}
    return {
        "model": fresh.module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None,
        "state": state,
        "config": {"seed": 723},
        "format": FORMAT,
        **fresh.checkpoint_state(),
        "splits": {"train": [0, 1, 2, 3], "val": [4], "test": [5]},
        "data_path": "/data/p.h5",
        "source_id": "/data/tiny.h5",
        "train_subjects": [0, 1, 2, 3],
        "model_config_name": "resnet",
    }


def entry(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda ckpt: ckpt.__setitem__(name, value)


def state(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda ckpt: ckpt["state"].__setitem__(name, value)


def config(section: str, **changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda ckpt: ckpt.__setitem__(section, {**ckpt[section], **changes})


def weight(change: Callable[[torch.Tensor], Any]) -> Callable[[dict[str, Any]], None]:
    def apply(ckpt: dict[str, Any]) -> None:
        name = next(n for n, t in ckpt["model"].items() if t.is_floating_point() and t.numel() > 1)
        ckpt["model"] = {**ckpt["model"], name: change(ckpt["model"][name].clone())}

    return apply


def _nan(t: torch.Tensor) -> torch.Tensor:
    t.view(-1)[0] = float("nan")
    return t


def _drop_a_weight(ckpt: dict[str, Any]) -> None:
    ckpt["model"] = dict(list(ckpt["model"].items())[1:])


CORRUPTIONS: dict[str, tuple[Callable[[dict[str, Any]], None], tuple[str, ...]]] = {
    "augmentations_list": (entry("augmentations", ["flip"]), ("entry 'augmentations'", "['flip']")),
    "augmentations_text": (entry("augmentations", {"flip": "yes"}), ("entry 'augmentations'",)),
    "method_config_list": (entry("method_config", ["dbp"]), ("entry 'method_config'",)),
    "model_config_text": (entry("model_config", "resnet"), ("entry 'model_config'",)),
    "loss_text": (entry("loss", "sse"), ("entry 'loss'", "the loss's name")),
    "loss_unknown": (entry("loss", {"loss": "nope"}), ("does not build", "loss: unknown loss 'nope'")),
    "loss_value_bad": (entry("loss", {"loss": "ssdu", "holdout": 2}), ("does not build", "holdout")),
    "sample_temperature_text": (entry("sample_temperature", "warm"), ("entry 'sample_temperature'",)),
    "kind_number": (entry("kind", 3), ("entry 'kind'",)),
    "format_text": (entry("format", "2"), ("entry 'format'",)),
    "format_older": (entry("format", 2), ("older mrirecon", "format 2", "mrirecon train method=dbp")),
    "method_number": (entry("method", 5), ("entry 'method'",)),
    "config_text": (entry("config", "x"), ("entry 'config'",)),
    "optimizer_list": (entry("optimizer", []), ("entry 'optimizer'",)),
    "scheduler_text": (entry("scheduler", "step"), ("entry 'scheduler'",)),
    "state_text": (entry("state", "x"), ("entry 'state'",)),
    "state_history": (state("history", [1, 2]), ("entry 'state.history'",)),
    "state_epoch": (state("epoch", -1), ("entry 'state.epoch'", ">= 0")),
    "state_best": (state("best", "low"), ("entry 'state.best'",)),
    "state_best_by": (state("best_by", 3), ("entry 'state.best_by'",)),
    "train_subjects_text": (entry("train_subjects", "abc"), ("entry 'train_subjects'",)),
    "data_path_number": (entry("data_path", 5), ("entry 'data_path'",)),
    "source_id_none": (entry("source_id", None), ("entry 'source_id'",)),
    "splits_text": (entry("splits", {"train": "a"}), ("entry 'splits'",)),
    "model_config_name_number": (entry("model_config_name", 3), ("entry 'model_config_name'",)),
    "shape_zero": (entry("shape", [0, 24]), ("entry 'shape'",)),
    "bits_text": (entry("bits", "4"), ("entry 'bits'",)),
    "model_text": (entry("model", "w"), ("entry 'model'", "the weights")),
    "weight_list": (weight(lambda t: t.tolist()), ("weight '", "not a tensor")),
    "weight_nan": (weight(_nan), ("weight '", "non-finite")),
    "weight_inf": (weight(lambda t: t.fill_(float("inf"))), ("weight '", "non-finite")),
    "weight_shape": (weight(lambda t: t[:1]), ("does not match its own config", "size mismatch")),
    "weight_missing": (_drop_a_weight, ("does not match its own config", "Missing key")),
    "model_key_unknown": (config("model_config", colour=1), ("does not build", "colour")),
    "model_value_type": (config("model_config", channels="many"), ("does not build", "channels", "integer")),
    "model_value_negative": (config("model_config", channels=-1), ("does not match its own config", "negative")),
    "method_name_unknown": (config("method_config", name="nope"), ("does not build", "nope")),
    "method_value_bad": (config("method_config", num_unrolls="two"), ("does not build", "num_unrolls")),
}


def corrupted(valid: dict[str, Any], folder: Path, case: str) -> Path:
    ckpt = copy.deepcopy(valid)
    CORRUPTIONS[case][0](ckpt)
    path = folder / f"{case}.pt"
    torch.save(ckpt, path)  # save_checkpoint would refuse some of these
    return path


@pytest.fixture(scope="module")
def reconstruct_config() -> DictConfig:
    """The config of `mrirecon reconstruct method=dbp data=full` (a checkpoint set per test)."""
    from registered import composed

    return OmegaConf.create(composed("reconstruct", "method=dbp", "data=full"))


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_every_malformed_checkpoint_entry_is_refused_before_use(
    valid: dict[str, Any], reconstruct_config: DictConfig, tmp_path: Path, case: str
) -> None:
    """What reconstruct does with `checkpoint=`: load it, rebuild the method, record it."""
    from mrirecon.tasks.recon_method import method_of

    path = corrupted(valid, tmp_path, case)
    cfg = reconstruct_config.copy()
    cfg.checkpoint = str(path)
    with pytest.raises(UserError) as info:
        method_of(cfg, torch.device("cpu"))
    message = str(info.value)
    assert message.startswith(f"checkpoint: {path}") and "\n" not in message
    assert all(name in message for name in CORRUPTIONS[case][1]), message


@pytest.mark.parametrize("case", ["augmentations_list", "weight_nan", "weight_shape"])
def test_reconstruct_refuses_the_reported_checkpoints_in_one_line(
    valid: dict[str, Any], tiny_processed: Path, tmp_path: Path, case: str, capsys, monkeypatch
) -> None:
    """The reported cases: `augmentations` as a list was a traceback; NaN weights reconstructed
    with exit 0 (CG stopped on the NaN residual: the zero-filled image, recorded as dbp)."""
    path = corrupted(valid, tmp_path, case)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys, "reconstruct", "method=dbp", f"checkpoint={path}", "data=full", f"data.path={tiny_processed}",
        "data.split=test", "allow_train_slices=true", "figures=0", THREADS, "hydra.run.dir=run",
    )  # fmt: skip
    refused(code, err, "checkpoint", str(path), *CORRUPTIONS[case][1])
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_the_valid_checkpoint_reconstructs(
    valid: dict[str, Any], tiny_processed: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The corruptions above are the only difference: the checkpoint itself is used."""
    path = tmp_path / "valid.pt"
    save_checkpoint(path, valid)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys, "reconstruct", "method=dbp", f"checkpoint={path}", "data=full", f"data.path={tiny_processed}",
        "data.split=test", "allow_train_slices=true", "figures=0", THREADS, "hydra.run.dir=run",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("case", ["state_history", "state_epoch", "weight_nan", "optimizer_list"])
def test_train_resume_reads_the_same_checks(valid: dict[str, Any], tmp_path: Path, case: str) -> None:
    path = corrupted(valid, tmp_path, case)
    with pytest.raises(UserError) as info:
        load_checkpoint(path, "train.resume")
    message = str(info.value)
    assert message.startswith(f"train.resume: {path}: ") and CORRUPTIONS[case][1][0] in message
