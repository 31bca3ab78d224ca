"""Denoisers, unrolled methods (DBP, MoDL), their training loss and the shared trainer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import tiny_arrays

from mrirecon.callbacks import Interrupt, standard_callbacks
from mrirecon.methods import build_method
from mrirecon.methods.unrolled import training_loss
from mrirecon.nets import build_net
from mrirecon.nets.resnet import ResNet
from mrirecon.nets.unet import UNet
from mrirecon.physics.sense import SenseOperator
from mrirecon.training import Settings, Trainer


def tiny_batch(n: int = 2, shape=(32, 24), seed: int = 0) -> dict[str, torch.Tensor]:
    a = tiny_arrays(n=n, coils=4, shape=shape, seed=seed)
    return {
        "img": torch.from_numpy(a["imgs"]),
        "ksp": torch.from_numpy(a["ksp"]),
        "maps": torch.from_numpy(a["maps"]),
        "mask": torch.from_numpy(a["masks"]),
        "noise_std": torch.zeros(n),
    }


def small(name: str, model: str = "resnet", **kw):
    net = build_net(
        {"name": "resnet", "channels": 8, "num_blocks": 1}
        if model == "resnet"
        else {"name": "unet", "base_channels": 4, "depth": 3}
    )
    return build_method({"name": name, "num_unrolls": 2, "cg_max_iter": 5, **kw}, denoiser=net)


@pytest.mark.parametrize(
    "net",
    [
        ResNet(channels=8, num_blocks=2),
        ResNet(channels=4, kernel_size=7, batch_norm=True, dropout=0.1, bias=True),
        UNet(base_channels=4, depth=3),
        UNet(base_channels=4, depth=4),
    ],
)
@pytest.mark.parametrize("shape", [(80, 64), (230, 180), (33, 17)])
def test_denoisers_keep_any_size(net, shape):
    x = torch.randn(2, 2, *shape)
    assert net(x).shape == x.shape


def test_denoiser_at_full_size():
    assert UNet(base_channels=4).eval()(torch.randn(1, 2, 320, 256)).shape == (1, 2, 320, 256)


@pytest.mark.parametrize("name", ["dbp", "modl"])
@pytest.mark.parametrize("model", ["resnet", "unet"])
def test_gradients_flow_through_cg(name, model):
    method = small(name, model)
    batch = tiny_batch()
    loss = training_loss(method, batch, supervised=True, generator=torch.Generator().manual_seed(0))
    loss.backward()
    grads = [p.grad for p in method.denoiser.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert method.l2lam_raw.grad is not None and method.l2lam_raw.grad != 0


@pytest.mark.parametrize("name", ["dbp", "modl"])
def test_checkpoint_unrolls_gives_the_same_gradients(name):
    """train.checkpoint_unrolls recomputes each unroll in the backward pass: same loss and the
    same gradient of every weight (dropout draws replayed), to float tolerance."""
    batch = tiny_batch(shape=(24, 16))
    grads = {}
    for checkpointed in (False, True):
        torch.manual_seed(0)
        net = build_net({"name": "resnet", "channels": 8, "num_blocks": 1, "dropout": 0.2})
        method = build_method({"name": name, "num_unrolls": 3, "cg_max_iter": 4}, denoiser=net)
        method.checkpoint_unrolls = checkpointed
        calls = []
        net.register_forward_hook(lambda *_: calls.append(1))
        torch.manual_seed(1)
        loss = training_loss(method, batch, True, torch.Generator().manual_seed(0))
        loss.backward()
        assert len(calls) == 3 * (2 if checkpointed else 1)  # checkpointed: each unroll recomputed once
        grads[checkpointed] = (loss.detach(), {k: p.grad.clone() for k, p in method.named_parameters()})
    (loss0, g0), (loss1, g1) = grads[False], grads[True]
    torch.testing.assert_close(loss1, loss0, rtol=1e-5, atol=0)
    assert g0.keys() == g1.keys() and "l2lam_raw" in g0
    for key in g0:
        assert g0[key].abs().max() > 0, key
        torch.testing.assert_close(g1[key], g0[key], rtol=1e-4, atol=1e-6 * float(g0[key].abs().max()), msg=key)


def test_dbp_with_zero_eps_is_data_consistent():
    batch = tiny_batch()
    method = small("dbp", num_admm=40, cg_max_iter=60, cg_eps=1e-8, l2lam_init=10.0, stdev=0.0)
    op = SenseOperator(batch["maps"], batch["mask"])
    y = batch["ksp"] * batch["mask"].unsqueeze(1)
    with torch.no_grad():
        x = method(y, op)
        untrained_denoised = method.denoise(op.adjoint(y))
    residual = (op.forward(x) - y).abs().norm() / y.abs().norm()
    assert residual < 1e-4
    # the denoiser alone is far from consistent, so the constraint did the work
    assert (op.forward(untrained_denoised) - y).abs().norm() / y.abs().norm() > 10 * residual


def test_dbp_noise_ball_radius():
    batch = tiny_batch()
    stdev = 0.05
    method = small("dbp", num_admm=40, cg_max_iter=60, cg_eps=1e-8, l2lam_init=10.0, stdev=stdev)
    op = SenseOperator(batch["maps"], batch["mask"])
    y = batch["ksp"] * batch["mask"].unsqueeze(1)
    with torch.no_grad():
        x = method(y, op)
    eps = (4 * batch["mask"].flatten(1).sum(1)).sqrt() * stdev
    dist = (op.forward(x) - y).abs().pow(2).flatten(1).sum(1).sqrt()
    assert torch.all(dist <= eps * 1.05)
    assert torch.all(dist > 0.5 * eps)  # the denoiser pulls towards the ball's edge, not to y


def test_unsupervised_loss_never_reads_reference():
    class NoReference(dict):
        def __getitem__(self, key):
            assert key != "img", "unsupervised loss read the reference image"
            return super().__getitem__(key)

    batch = tiny_batch()
    del batch["img"]
    for holdout in (0.0, 0.4):
        loss = training_loss(
            small("modl"),
            NoReference(batch),
            supervised=False,
            generator=torch.Generator().manual_seed(1),
            holdout=holdout,
        )
        assert torch.isfinite(loss) and loss > 0


def test_holdout_splits_measured_samples():
    from mrirecon.methods.unrolled import split_mask

    mask = tiny_batch()["mask"]
    inp, held = split_mask(mask, 0.4, torch.Generator().manual_seed(0))
    assert torch.equal(inp + held, mask) and float((inp * held).sum()) == 0
    assert 0.3 < float(held.sum() / mask.sum()) < 0.5
    inp, held = split_mask(mask, 0.9, torch.Generator().manual_seed(0), keep_center=0.25)
    assert torch.equal(inp + held, mask)
    assert float(held[:, 12:20, 9:15].sum()) == 0 and float(held.sum()) > 0  # centre 8x6 of 32x24 kept


@pytest.mark.parametrize("supervised", [True, False])
def test_overfit_one_slice(supervised):
    torch.manual_seed(0)
    method = small("modl", num_unrolls=2)
    batch = tiny_batch(n=1)
    opt = torch.optim.Adam(method.parameters(), lr=3e-3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731  fixed noise/split: a fixed objective
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = training_loss(method, batch, supervised=supervised, generator=g(), holdout=0.3)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, k):
        return self.items[k]


class TinyTrainable:
    """A Trainable over a small dbp: the training loss with noise, l2lam as the 'metric'."""

    kind, select = "tiny", "val_nrmse"

    def __init__(self, method, stop=None, stop_at_step=None):
        self.module, self.stop, self.stop_at_step = method, stop, stop_at_step

    def loss(self, batch, generator):
        return training_loss(self.module, batch, True, generator, stdev=0.01)

    def after_step(self, step):
        if self.stop is not None and step == self.stop_at_step:
            self.stop.request()  # what Ctrl-C does

    def validate(self, batch):
        return {"val_nrmse": float(self.module.l2lam.detach())}

    def images(self, batch):
        return {}

    def checkpoint_state(self):
        return {"kind": self.kind}


def make_trainer(out: Path, epochs: int, stop_at_step: int | None = None, max_minutes: float | None = None) -> Trainer:
    torch.manual_seed(5)
    method = small("dbp", num_unrolls=1, num_admm=1)
    b = tiny_batch(n=5, shape=(16, 12))
    items = [{k: v[i] for k, v in b.items()} for i in range(5)]
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.7)
    settings = Settings(epochs=epochs, batch_size=2, seed=3)
    hooks = standard_callbacks(True, max_minutes)
    stop = next(h for h in hooks if isinstance(h, Interrupt))
    return Trainer(
        trainable=TinyTrainable(method, stop, stop_at_step),
        optimizer=opt,
        scheduler=sched,
        train_set=ListDataset(items),
        val_set=ListDataset(items[:2]),
        out_dir=out,
        config={"x": 1},
        settings=settings,
        device=torch.device("cpu"),
        callbacks=hooks,
    )


def test_resume_after_interruption_gives_identical_weights(tmp_path):
    full = make_trainer(tmp_path / "a", epochs=3)
    full.fit()
    interrupted = make_trainer(tmp_path / "b", epochs=3, stop_at_step=4)  # mid-epoch 2 (3 steps per epoch)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert (tmp_path / "b" / "checkpoints" / "last.pt").exists()
    resumed = make_trainer(tmp_path / "b", epochs=3)
    resumed.fit(resume_from=tmp_path / "b" / "checkpoints" / "last.pt")
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    assert resumed.state["step"] == full.state["step"] == 9
    rows = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and rows == (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    assert math.isfinite(full.state["best"]) and (tmp_path / "a" / "checkpoints" / "best.pt").exists()
    assert list((tmp_path / "a" / "tensorboard").glob("events.out.tfevents.*"))


def test_time_budget_stops_with_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, epochs=1000, max_minutes=1e-9)
    state = trainer.fit()
    assert state["step"] == 1 and (tmp_path / "checkpoints" / "last.pt").exists()


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path):
    from mrirecon.errors import UserError

    trainer = make_trainer(tmp_path, epochs=5)
    trainer.fit()
    before = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    trainer.settings.epochs = 6
    trainer.trainable.loss = lambda batch, generator: torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(UserError, match="diverged"):
        trainer.fit()
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == before


def test_dataset_loads_lazily_in_worker_processes(tiny_h5):
    from mrirecon.data.dataset import SliceDataset
    from mrirecon.data.h5 import DeepInPyFile

    data = DeepInPyFile(tiny_h5)
    supervised = SliceDataset(data, [1, 3, 5], with_reference=True)
    unsupervised = SliceDataset(data, [1, 3, 5], with_reference=False)
    assert "img" in supervised[0] and "img" not in unsupervised[0]
    loader = torch.utils.data.DataLoader(supervised, batch_size=2, num_workers=2)
    batches = list(loader)
    assert [b["index"].tolist() for b in batches] == [[1, 3], [5]]
    assert batches[0]["ksp"].shape == (2, 4, 32, 24) and batches[0]["ksp"].dtype == torch.complex64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_training_step_on_cuda(amp):
    method = small("dbp").cuda()
    method.amp = amp
    batch = {k: v.cuda() for k, v in tiny_batch().items()}
    loss = training_loss(method, batch, supervised=False, generator=torch.Generator().manual_seed(0), holdout=0.4)
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in method.denoiser.parameters())
