"""Checkpoints are safe to load: they hold only tensors and plain Python types, load with
`torch.load(..., weights_only=True)`, a checkpoint that would run code on load is refused unread,
and one of an older format (1 and 2, some with NumPy's RNG state as an array) is one error line
saying how to make a new one."""

from __future__ import annotations

import builtins
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tiny_training import make_trainer

from mrirecon.errors import UserError
from mrirecon.io.checkpoint_entries import FORMAT
from mrirecon.io.files import load_checkpoint, save_checkpoint


class Payload:
    """Unpickling this creates the file `marker` (as a shell command in a pickle could)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


def malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint that looks like ours (model, config) with a payload in its config."""
    torch.save({"model": {"w": torch.zeros(2)}, "config": {"seed": Payload(marker)}}, path)
    assert not marker.exists()
    return path


def as_format_2(ckpt: dict, path: Path, numpy_1_names: bool = False) -> Path:
    """`ckpt` saved as formats 1 and 2 were: with an `rng` entry whose NumPy state is
    np.random.get_state()'s tuple (an array inside); with `numpy_1_names` pickled under NumPy 1's
    module names."""
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": None, "cuda": None}
    torch.save({**ckpt, "rng": rng}, path)
    if numpy_1_names:  # protocol 2 names globals as text lines: rename in the zip's data.pkl
        buffer = io.BytesIO()
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename.endswith("data.pkl"):
                    assert b"numpy._core.multiarray" in data
                    data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                dst.writestr(info, data)
        path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last.pt of a tiny run stopped mid-epoch 2 (step 4 of 9)."""
    out = tmp_path_factory.mktemp("interrupted")
    with pytest.raises(KeyboardInterrupt):
        make_trainer(out, epochs=3, stop_at_step=4).fit()
    return out / "checkpoints" / "last.pt"


def test_checkpoints_load_with_weights_only(interrupted):
    ckpt = torch.load(interrupted, weights_only=True)  # nothing allow-listed
    assert ckpt["state"]["step"] == 5 and "rng" not in ckpt  # draws follow (seed, rank, step): no RNG state
    assert ckpt["config"] == {"x": 1} and isinstance(ckpt["model"], dict)


def test_saving_a_python_object_fails_before_writing(tmp_path):
    path = tmp_path / "x.pt"
    for entry, where in (
        ({"lr": np.float64(0.1)}, "checkpoint.config.lr"),
        (OmegaConf.create({"a": 1}), "checkpoint.config"),
        ({"rng": [np.zeros(3)]}, "checkpoint.config.rng[0]"),
    ):
        with pytest.raises(TypeError, match=re.escape(f"{where} is a ")):
            save_checkpoint(path, {"model": {}, "config": entry})
        assert not path.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("numpy_1_names", [False, True])
def test_an_older_checkpoint_is_one_error_line_naming_the_way_to_a_new_one(interrupted, tmp_path, numpy_1_names):
    """Formats 1 and 2 with NumPy's RNG state (refused before unpickling, where a safe load saw
    objects), format 2 without it and format 1 (no format entry): each is one line saying the
    format and how to make a new one, for reconstruct and for train.resume (the old code loaded
    them through shims: format 1's upgrade(), NumPy array types allowed)."""
    current = torch.load(interrupted, weights_only=True)
    assert current["format"] == FORMAT
    numpy_rng = as_format_2({**current, "format": 2}, tmp_path / "rng.pt", numpy_1_names)
    two, one = tmp_path / "two.pt", tmp_path / "one.pt"
    torch.save({**current, "format": 2}, two)
    torch.save({k: v for k, v in current.items() if k != "format"}, one)
    for path, found in ((numpy_rng, "1 or 2"), (two, "2"), (one, "1")):
        with pytest.raises(UserError) as refused:
            load_checkpoint(path, "checkpoint", retrain="retrain it with 'mrirecon train method=dbp'")
        assert str(refused.value) == (
            f"checkpoint: {path} was written by an older mrirecon (checkpoint format {found}; this version reads "
            f"format {FORMAT}): retrain it with 'mrirecon train method=dbp'"
        )
        with pytest.raises(UserError, match=r"^train.resume: .* older mrirecon .*: start the run anew"):
            make_trainer(tmp_path / "resumed", epochs=3).fit(resume_from=path)


def test_malicious_checkpoint_is_refused_unread(tmp_path):
    marker = tmp_path / "payload-ran"
    evil = malicious_checkpoint(tmp_path / "evil.pt", marker)
    for key in ("checkpoint", "train.resume"):
        with pytest.raises(UserError) as refused:
            load_checkpoint(evil, key)
        message = str(refused.value)
        assert message.startswith(f"{key}: {evil} holds Python objects") and "trust_checkpoint=true" in message
        assert "io.open" in message and "\n" not in message
    assert not marker.exists()


def test_trust_checkpoint_loads_objects_beyond_the_safe_set(tmp_path):
    """A third-party checkpoint with a Python object (here an OmegaConf config) loads only with
    trust=True (the CLI's trust_checkpoint=true)."""
    path = tmp_path / "objects.pt"
    torch.save({"model": {}, "config": OmegaConf.create({"seed": 3}), "format": FORMAT}, path)
    with pytest.raises(UserError, match=r"\(.*omegaconf\..*\): .*trust_checkpoint=true$"):
        load_checkpoint(path)
    assert load_checkpoint(path, trust=True)["config"].seed == 3


def test_unreadable_checkpoints_name_the_key(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match=r"^train\.resume: .*junk\.pt is not a readable mrirecon checkpoint"):
        load_checkpoint(junk, "train.resume")
    with pytest.raises(UserError, match=r"^checkpoint: .*missing\.pt not found"):
        load_checkpoint(tmp_path / "missing.pt")
