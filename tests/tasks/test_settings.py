"""The task-layer checks that every key a run accepts takes effect: train keys a family does
not read, model and method keys a family does not use, hardware.amp where it does nothing or
slows the run down, a processed file of another variant."""

from __future__ import annotations

import logging

import pytest
import torch
from helpers import tiny_arrays, write_h5

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.errors import UserError
from mrirecon.tasks import settings
from mrirecon.tasks.settings import check_amp, check_file_variant, check_section_keys, check_train_keys

CPU = torch.device("cpu")


def test_amp_on_a_cpu_without_native_bf16_is_refused_with_the_measured_slowdown(monkeypatch):
    """The old code ran it, 12x slower than float32 (the issue's 142.6 s against 11.1 s a step)."""
    monkeypatch.setattr(settings, "native_bf16", lambda: False)
    monkeypatch.setattr(settings, "cpu_name", lambda: "Old Xeon")
    with pytest.raises(
        UserError, match=r"hardware.amp: this CPU \(Old Xeon\) has no native bf16.* 31x \(AVX2\) slower"
    ):
        check_amp(True, CPU, ("cpu", "cuda"), "method=dbp")
    check_amp(False, CPU, ("cpu", "cuda"), "method=dbp")  # off: nothing to check
    monkeypatch.setattr(settings, "native_bf16", lambda: True)
    check_amp(True, CPU, ("cpu", "cuda"), "method=dbp")


def test_amp_where_it_does_nothing_is_refused(monkeypatch, caplog):
    monkeypatch.setattr(settings, "native_bf16", lambda: True)
    with pytest.raises(UserError, match=r"hardware.amp: true does nothing for method=unet_image on cpu .*cuda only"):
        check_amp(True, CPU, ("cuda",), "method=unet_image")
    with pytest.raises(UserError, match=r"hardware.amp: true does nothing for method=cg_sense on cpu .*no bf16 path"):
        check_amp(True, CPU, (), "method=cg_sense")
    monkeypatch.setattr(settings, "native_bf16", lambda: None)
    with caplog.at_level(logging.WARNING):
        check_amp(True, CPU, ("cpu",), "method=dbp")
    assert "cannot tell" in caplog.text


def test_train_and_section_keys_a_family_does_not_read_are_refused():
    check_train_keys({"flip"}, {"flip", "lr"}, "the flow family")  # a loop key and its own
    with pytest.raises(UserError, match=r"train.holdout: not read by the unrolled family \(its own .*: flip, stdev\)"):
        check_train_keys({"stdev", "flip"}, {"holdout"}, "the unrolled family")
    with pytest.raises(UserError, match=r"train.holdout_center: not read"):
        check_train_keys({"flip"}, {"holdout_center"}, "the flow family")
    check_train_keys(set(), {"step_lr.gamma", "cosine_lr"}, "the flow family")  # the loop's schedule
    check_section_keys("model", True, {"channels"}, "")
    with pytest.raises(UserError, match="model.channels: not read: it brings its own"):
        check_section_keys("model", False, {"channels"}, "it brings its own")


def test_a_file_of_another_variant_is_refused(tmp_path):
    """data.bits and data.scale name the variant of data.path: a file that records another is
    refused (the old code labelled its results with the wrong variant)."""
    data = DeepInPyFile(write_h5(tmp_path / "f.h5", tiny_arrays(), {"bits": -1, "scale": 0.25}))
    check_file_variant(data, None, 0.25)
    with pytest.raises(UserError, match=r"data.bits: 4, but .*f.h5 holds complex images"):
        check_file_variant(data, 4, 0.25)
    with pytest.raises(UserError, match=r"data.scale: 1.0, but .*f.h5 holds images of scale 0.25"):
        check_file_variant(data, None, 1.0)
    check_file_variant(DeepInPyFile(write_h5(tmp_path / "g.h5", tiny_arrays())), 8, 1.0)  # records none
