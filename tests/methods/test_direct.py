"""The direct methods (unet_image: fastMRI's U-Net; automap: AUTOMAP) and their nets: the
architectures as published, sizes refused before allocation, training that learns, the CLI path
(train, resume, reconstruct from the checkpoint alone)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import one_error_line, run_cli
from tiny_training import tiny_batch
from torch import nn

from mrirecon.losses.pixelwise import L1Loss, MSELoss
from mrirecon.methods import build_method
from mrirecon.nets import build_net
from mrirecon.nets.automap import Automap, automap_weights, training_bytes
from mrirecon.nets.fastmri_unet import FastMRIUNet
from mrirecon.physics.sense import SenseOperator


def fastmri_unet_weights(cin: int, cout: int, chans: int, pools: int) -> int:
    """fastMRI's U-Net weight count, from its description: per level two bias-free 3x3 convs
    (instance norm without affine weights), a bias-free 2x2 transposed conv up, a 1x1 output conv."""
    widths = [chans * 2**i for i in range(pools + 1)]
    count = 9 * (cin * widths[0] + widths[0] ** 2)
    count += sum(9 * (widths[i] * widths[i + 1] + widths[i + 1] ** 2) for i in range(pools))
    count += sum(4 * widths[i + 1] * widths[i] + 9 * (2 * widths[i] * widths[i] + widths[i] ** 2) for i in range(pools))
    return count + widths[0] * cout + cout


def test_fastmri_unet_is_fastmris_architecture():
    net = FastMRIUNet(in_channels=1, out_channels=1)  # the fastMRI baseline: 32 channels, 4 pools
    n = sum(p.numel() for p in net.parameters())
    assert n == fastmri_unet_weights(1, 1, 32, 4) == 7_756_097
    kinds = [type(m) for m in net.modules()]
    assert kinds.count(nn.InstanceNorm2d) == 2 * 9 + 4 and nn.BatchNorm2d not in kinds and nn.ReLU not in kinds
    assert {m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)} == {0.2}


@pytest.mark.parametrize("shape", [(80, 64), (37, 29), (16, 16)])
def test_fastmri_unet_keeps_any_size(shape):
    net = FastMRIUNet(chans=4, num_pools=3)
    assert net(torch.randn(2, 2, *shape)).shape == (2, 2, *shape)


def test_automap_counts_its_weights_and_refuses_sizes_that_do_not_fit():
    net = Automap((12, 10), conv_channels=4)
    assert sum(p.numel() for p in net.parameters()) == automap_weights((12, 10), conv_channels=4)
    assert net(torch.randn(3, 2, 12, 10)).shape == (3, 2, 12, 10)
    with pytest.raises(ValueError, match="shape: this AUTOMAP was made for 12x10 images, not 12x12"):
        net(torch.randn(1, 2, 12, 12))
    assert 1.2e9 < training_bytes((80, 64)) < 1.4e9 and automap_weights((320, 256)) > 2e10
    with pytest.raises(
        ValueError,
        match=r"shape: AUTOMAP for 320x256 images has 20,13\d,\d{3},\d{3} weights and "
        r"needs 322\.\d GB to train, more than the 1\.0 GB allowed",
    ):
        build_net({"name": "automap", "memory_limit_gb": 1}, shape=(320, 256))  # refused before allocating
    with pytest.raises(ValueError, match="more than the"):
        build_net({"name": "automap"}, shape=(2000, 2000))  # more than any machine's memory
    with pytest.raises(ValueError, match="^shape: network automap is made for one image size, and none was given"):
        build_net({"name": "automap"})


def test_unet_image_input_options_and_errors():
    net = build_net({"name": "fastmri_unet", "chans": 4, "num_pools": 2})
    with pytest.raises(ValueError, match="input: 'cs_tv' must be 'zero_filled' or 'cg_sense'"):
        build_method({"name": "unet_image", "input": "cs_tv"}, net=net)
    with pytest.raises(ValueError, match="^name: unknown network 'vit'"):
        build_net({"name": "vit"})
    with pytest.raises(ValueError, match=r"^loss: unknown key \(method unet_image has: input, residual\)"):
        build_method({"name": "unet_image", "loss": "l1"}, net=net)  # a training setting: train.loss


def direct(name: str, shape: tuple[int, int], channels: int, **cfg) -> nn.Module:
    """unet_image with a small fastMRI U-Net, or automap with a small AUTOMAP network."""
    if name == "unet_image":
        net = build_net({"name": "fastmri_unet", "chans": channels, "num_pools": 2})
    else:
        net = build_net({"name": "automap", "conv_channels": channels}, shape)
    return build_method({"name": name, **cfg}, net=net)


@pytest.mark.parametrize("name", ["unet_image", "automap"])
def test_training_beats_the_zero_filled_image_on_the_slices_it_saw(name):
    torch.manual_seed(0)
    shape = (16, 12)
    method = direct(name, shape, 8)
    batch = tiny_batch(2, shape, seed=1)
    op = SenseOperator(batch.maps, batch.mask)
    y = batch.y
    loss = L1Loss() if name == "unet_image" else MSELoss()  # their papers'
    opt = torch.optim.RMSprop(method.parameters(), lr=1e-3 if name == "unet_image" else 1e-4)
    for _ in range(150):
        opt.zero_grad()
        loss(method, batch, torch.Generator()).backward()
        opt.step()
    with torch.no_grad():
        error = (method(y, op) - batch.img).norm()
    assert error < 0.5 * (op.adjoint(y) - batch.img).norm(), name


def test_a_direct_method_trains_self_supervised_with_loss_ssdu():
    """Losses are chosen by train.loss, apart from the method: unet_image with SSDU's split loss
    trains on measured k-space alone (a batch without reference; the old code refused
    train.supervised=false for a direct method), its loss falls, and best.pt is chosen by the
    held-out k-space error."""
    from registered import trainable

    torch.manual_seed(0)
    fresh = trainable("unet_image", "fastmri_unet", (32, 24), keys={"chans": 4, "num_pools": 2}, loss="ssdu")
    assert fresh.select == "val_kspace_nmse" and fresh.loss_config == {
        "loss": "ssdu",
        "holdout": 0.4,
        "holdout_center": 0.1,
    }
    batch = tiny_batch(n=1).replace(img=None)  # reading the reference would raise
    opt = torch.optim.Adam(fresh.module.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = fresh.loss(batch, torch.Generator().manual_seed(0))  # the same split every step
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.85 * losses[0], losses  # the gate starts at 0: 110 -> 86 in 30 steps
    with torch.no_grad():  # as the Trainer validates
        found = fresh.validate(tiny_batch(n=2))
    assert set(found) == {"val_nrmse", "val_psnr", "val_ssim", "val_kspace_nmse"}


def test_unet_image_trains_resumes_and_reconstructs_from_its_checkpoint(sample_dir: Path):
    tiny = ["method=unet_image", "data=8bit_quarter", "model.chans=4", "model.num_pools=2"]
    res = run_cli("train", *tiny, "train.epochs=2", "hydra.run.dir=runs/unet_image", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    run = sample_dir / "runs" / "unet_image"
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["kind"] == "direct" and ckpt["method"] == "unet_image" and ckpt["model_config"]["chans"] == 4
    assert ckpt["model_config"]["name"] == "fastmri_unet" and ckpt["loss"] == {"loss": "l1"}  # the method's defaults
    assert "train_defaults" not in ckpt["method_config"] and isinstance(ckpt["optimizer"]["state"], dict)
    assert ckpt["config"]["train"]["optimizer"] == "rmsprop"  # fastMRI's, from the method's train_defaults
    info = json.loads((run / "training.json").read_text())
    assert info["kind"] == "direct" and info["trains"].startswith("unet_image + fastmri_unet (loss l1")
    res = run_cli("train", *tiny, "train.epochs=3", "train.resume=true", f"hydra.run.dir={run}", cwd=sample_dir)
    assert res.returncode == 0, res.stderr
    with open(run / "metrics.csv", newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3"]
    res = run_cli(
        "reconstruct",
        "method=unet_image",
        "data=8bit_quarter",
        f"checkpoint={run}/checkpoints/best.pt",
        "hydra.run.dir=runs/rec_unet_image",
        cwd=sample_dir,
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads((sample_dir / "runs" / "rec_unet_image" / "summary.json").read_text())
    assert summary["method_config"]["model"] == "fastmri_unet" and summary["method_config"]["loss"] == "l1"
    assert summary["num_slices"] == 3
    res = run_cli(
        "reconstruct",
        "method=automap",
        "data=8bit_quarter",
        f"checkpoint={run}/checkpoints/best.pt",
        "hydra.run.dir=runs/rec_wrong",
        cwd=sample_dir,
    )
    assert "holds a 'unet_image' model, not one for method=automap" in one_error_line(res)


def test_automap_too_large_for_its_memory_limit_is_one_error_line(sample_dir: Path):
    res = run_cli(
        "train",
        "method=automap",
        "data=8bit_quarter",
        "model.memory_limit_gb=0.5",
        "hydra.run.dir=runs/automap_big",
        cwd=sample_dir,
    )
    line = one_error_line(res)
    assert line.startswith("error: model.shape: AUTOMAP for 80x64 images has 78,763,842 weights"), line
    assert "1.3 GB to train" in line and "0.5 GB allowed" in line


@pytest.mark.parametrize("name", ["unet_image", "automap"])
def test_residual_starts_from_the_classical_image(name):
    torch.manual_seed(0)
    shape = (16, 12)
    method = direct(name, shape, 4, residual=True)
    batch = tiny_batch(2, shape, seed=1)
    op = SenseOperator(batch.maps, batch.mask)
    y = batch.y
    assert torch.allclose(method(y, op), op.adjoint(y), atol=1e-6)  # zero_filled is the input of both
    with pytest.raises(ValueError, match="residual: 'yes' must be true or false"):
        direct(name, shape, 4, residual="yes")
