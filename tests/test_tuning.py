"""Optuna sweeps on val (hydra/sweeper=optuna), their figures, and the DeepInPy-layout ResNet."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import files_under, one_error_line, run_cli

from mrirecon.evaluation.optuna_figures import importances

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def composed(*overrides: str):
    from hydra import compose, initialize_config_dir

    from mrirecon.cli.app import config_dir
    from mrirecon.cli.sweeper import register

    register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("reconstruct", overrides=["hydra/sweeper=optuna", *overrides], return_hydra_config=True)


@pytest.mark.parametrize(
    ("objective", "direction"), [("psnr", "maximize"), ("ssim", "maximize"), ("nrmse", "minimize")]
)
def test_optuna_sweeper_direction_follows_the_objective(objective, direction):
    cfg = composed(f"objective={objective}")
    assert cfg.hydra.sweeper.direction == direction
    assert cfg.hydra.sweeper.params["data.split"] == "val"
    assert cfg.hydra.sweeper.sampler._target_.endswith("TPESampler")


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [([], None), (["data.split=train"], None), (["data.split=test"], "test"), (["data.split=val,all"], "all")],
)
def test_optuna_sweep_is_refused_on_the_test_split(overrides, refused):
    from mrirecon.cli.sweeper import split_problem

    problem = split_problem(
        composed(*(o for o in overrides if "," not in o)), overrides
    )  # a sweep: as the CLI composes
    assert (problem is None) if refused is None else (f"not on '{refused}'" in problem)


def test_importance_finds_the_parameter_that_matters():
    rng = np.random.default_rng(0)
    x = np.stack([10 ** rng.uniform(-4, -1, 30), rng.uniform(0, 1, 30)], axis=1)
    y = -((np.log10(x[:, 0]) + 2.5) ** 2) + 0.01 * x[:, 1]
    share = importances(x, y)
    assert share is not None and share[0] > 0.95 and share[1] < 0.02
    assert importances(x[:4], y[:4]) is None  # too few trials to fit the surface
    assert importances(x[:, :1], y) is None  # one parameter: nothing to share


def test_optuna_sweep_end_to_end(sample_dir):
    """The README's command (3 trials): every trial on val, the best value is the best trial's
    mean PSNR (what reconstruct returned), evaluate draws the history; test is refused."""
    args = ["reconstruct", "-m", "hydra/sweeper=optuna", "method=cs_wavelet", "data=4bit_quarter", "figures=0"]
    lam = "method.lam=tag(log, interval(1e-4, 1e-1))"
    res = run_cli(
        *args, lam, "hydra.sweeper.n_trials=3", "method.max_iter=10", "hydra.sweep.dir=runs/tpe", cwd=sample_dir
    )
    assert res.returncode == 0, res.stderr
    sweep = sample_dir / "runs" / "tpe"
    summaries = [json.loads((sweep / str(k) / "summary.json").read_text()) for k in range(3)]
    assert {s["split"] for s in summaries} == {"val"}
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(s["mean"]["psnr"] for s in summaries))
    assert best["best_value"] == pytest.approx(max(s["objective"]["value"] for s in summaries))
    res = run_cli("evaluate", "runs=[runs/tpe]", "hydra.run.dir=runs/tpe_eval", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    assert (sample_dir / "runs" / "tpe_eval" / "optuna_tpe.png").is_file()
    assert (
        "optuna_tpe.png" in (sample_dir / "runs" / "tpe_eval" / "report.html").read_text()
        or "Optuna sweep" in (sample_dir / "runs" / "tpe_eval" / "report.html").read_text()
    )
    res = run_cli(*args, lam, "data.split=test", "hydra.sweep.dir=runs/tpe_test", cwd=sample_dir)
    assert "data.split" in one_error_line(res) and not files_under(sample_dir / "runs" / "tpe_test")


def test_deepinpy_resnet_and_dbp_match_deepinpys_code():
    """model=resnet_deepinpy is DeepInPy's ResNet (same weights in the same order give the same
    output), and mrirecon's DBP with it reconstructs as DeepInPy's DBP (re-implemented in
    scripts/deepinpy_dbp_reference.py) on the same data: same architecture, same algorithm."""
    sys.path.insert(0, str(SCRIPTS))
    import deepinpy_dbp_reference as dip

    from mrirecon.methods import build_method
    from mrirecon.methods.base import to_channels
    from mrirecon.nets import build_net
    from mrirecon.physics.sense import SenseOperator

    torch.manual_seed(0)
    theirs = dip.DeepBasisPursuitRecon(
        num_unrolls=2, num_admm=2, cg_max_iter=6, cg_eps=0.0, l2lam_init=0.5, latent_channels=8
    )
    net = build_net({"name": "resnet_deepinpy", "channels": 8})
    with torch.no_grad():
        for ours_p, their_p in zip(net.parameters(), theirs.denoiser.parameters(), strict=True):
            ours_p.copy_(their_p)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 12, dtype=torch.complex64, generator=g)
    torch.testing.assert_close(net(to_channels(x)), to_channels(theirs.denoiser(x)), rtol=1e-5, atol=1e-5)
    maps = torch.randn(2, 3, 16, 12, dtype=torch.complex64, generator=g)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    mask = (torch.rand(2, 16, 12, generator=g) < 0.5).float()
    op = SenseOperator(maps, mask)
    y = op.forward(x)
    ours = build_method(
        {
            "name": "dbp",
            "num_unrolls": 2,
            "num_admm": 2,
            "cg_max_iter": 6,
            "cg_eps": 0.0,
            "l2lam_init": 0.5,
            "stdev": 0.0,
        },
        denoiser=net,
    )
    y_dip, mask_dip = dip.uncentred(y, mask)
    theirs.batch(maps, mask_dip)
    with torch.no_grad():
        expected = theirs(y_dip)
        got = ours(y, op, torch.zeros(2))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
