"""The loss registry: train.loss names a registered loss, its train keys are its constructor's
parameters, a loss of the other kind is refused by name."""

from __future__ import annotations

import pytest

from mrirecon.losses import LOSSES, DensityLoss, ReconstructionLoss, ScoreLoss, build_loss, loss_keys, loss_settings
from mrirecon.losses.ssdu import SplitLoss


def test_the_registry_holds_each_loss_module():
    assert {"sse", "ssdu", "l1", "mse", "bits_per_dim", "denoising_score"} <= set(LOSSES)
    assert all(issubclass(c, (ReconstructionLoss, DensityLoss, ScoreLoss)) for c in LOSSES.values())
    assert [n for n, c in LOSSES.items() if not c.reference] == ["ssdu"]


def test_a_loss_reads_the_train_keys_of_its_parameters():
    train = {"loss": "ssdu", "holdout": 0.3, "holdout_center": 0.2, "stdev": 0.1, "flip": True}
    assert loss_keys("ssdu") == {"holdout", "holdout_center"} and loss_keys("sse") == set()
    assert loss_keys("bits_per_dim", ("bits",)) == set()
    assert loss_settings(train) == {"loss": "ssdu", "holdout": 0.3, "holdout_center": 0.2}
    built = build_loss(loss_settings(train), ReconstructionLoss, "reconstruction method")
    assert isinstance(built, SplitLoss) and (built.holdout, built.holdout_center) == (0.3, 0.2)


def test_unknown_losses_and_losses_of_another_kind_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^loss: unknown loss 'nope' \(expected one of .*ssdu"):
        loss_settings({"loss": "nope"})
    with pytest.raises(ValueError, match=r"^loss: bits_per_dim is no loss of a reconstruction method \(its losses: "):
        build_loss({"loss": "bits_per_dim"}, ReconstructionLoss, "reconstruction method")
    with pytest.raises(ValueError, match=r"^loss: ssdu is no loss of a density model \(its losses: bits_per_dim\)"):
        build_loss({"loss": "ssdu"}, DensityLoss, "density model", bits=4)
    with pytest.raises(ValueError, match=r"^colour: unknown key \(loss ssdu has: holdout, holdout_center\)"):
        build_loss({"loss": "ssdu", "colour": 1}, ReconstructionLoss, "reconstruction method")
