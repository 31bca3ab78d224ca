"""Denoisers, unrolled methods (DBP, MoDL), their gradients through a training loss, the unrolled
family's self-supervised path and the shared trainer."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import gradients_match_finite_differences
from tiny_training import as_double, make_trainer, small, tiny_batch, training_loss
from torch import nn
from torch.autograd.gradcheck import GradcheckError

from mrirecon.data.batch import Batch
from mrirecon.methods import build_method
from mrirecon.nets import build_net
from mrirecon.nets.resnet import ResNet
from mrirecon.nets.unet import UNet
from mrirecon.physics.sense import SenseOperator
from mrirecon.training.trainables.reconstructors import KSPACE_METRIC, kspace_validation
from mrirecon.training.trainables.unrolled import UnrolledTrainable


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


def double_batch(n: int = 2, shape=(8, 6), seed: int = 0) -> Batch:
    """tiny_batch in float64 / complex128, for finite differences."""
    return as_double(tiny_batch(n, shape, seed))


@pytest.mark.parametrize("name", ["dbp", "modl"])
@pytest.mark.parametrize("model", ["resnet", "unet"])
@pytest.mark.parametrize("supervised", [True, False])
def test_loss_gradients_match_finite_differences(name, model, supervised):
    """The gradient of the training loss through the denoiser, the unrolls, CG (and DBP's ADMM
    and ball projection) with respect to every weight and l2lam: gradcheck in float64 against
    central differences; unsupervised with the holdout and training noise drawn."""
    extra = {"num_admm": 2, "stdev": 0.05} if name == "dbp" else {}
    method = small(name, model, cg_max_iter=3, cg_eps=0.0, **extra).double()  # fixed CG iterations: smooth
    batch = double_batch()

    def loss() -> torch.Tensor:
        draws = torch.Generator().manual_seed(0)
        return training_loss(method, batch, supervised, draws, stdev=0.01, holdout=0.0 if supervised else 0.4)

    assert gradients_match_finite_differences(method, loss)


def test_finite_difference_check_catches_a_wrong_gradient():
    """The check above is not vacuous: a backward off by 1 % fails it."""

    class OffByOnePercent(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return 1.01 * grad

    torch.manual_seed(0)
    method = build_method(
        {"name": "modl", "num_unrolls": 1, "cg_max_iter": 2, "cg_eps": 0.0}, denoiser=nn.Conv2d(2, 2, 1)
    )
    method = method.double()  # 7 weights: gradcheck's slow mode (it explains the failure) stays quick
    denoise = method.denoise
    method.denoise = lambda x: OffByOnePercent.apply(denoise(x))
    batch = double_batch(n=1, shape=(4, 4))
    with pytest.raises(GradcheckError):
        gradients_match_finite_differences(method, lambda: training_loss(method, batch, True, None))


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


@pytest.mark.parametrize("name", ["dbp", "modl"])
def test_checkpoint_unrolls_counts_each_batch_once_in_batch_norm(name):
    """With batch norm, the recomputation of a checkpointed unroll leaves the running statistics
    as the forward pass left them: the same num_batches_tracked, mean and variance after a
    training step as without checkpointing, and the same gradients (the old code counted every
    batch twice: 6 instead of 3 after 3 unrolls)."""
    batch = tiny_batch(shape=(24, 16))
    after = {}
    for checkpointed in (False, True):
        torch.manual_seed(0)
        net = build_net({"name": "resnet", "channels": 8, "num_blocks": 1, "batch_norm": True})
        method = build_method({"name": name, "num_unrolls": 3, "cg_max_iter": 4}, denoiser=net)
        method.checkpoint_unrolls = checkpointed
        training_loss(method, batch, True, torch.Generator().manual_seed(0)).backward()
        grads = {k: p.grad.clone() for k, p in method.named_parameters()}
        after[checkpointed] = ({k: v.clone() for k, v in method.named_buffers()}, grads)
    (plain, g0), (checkpointed, g1) = after[False], after[True]
    counts = {k: int(v) for k, v in checkpointed.items() if k.endswith("num_batches_tracked")}
    assert counts and set(counts.values()) == {3}
    for key, value in plain.items():
        torch.testing.assert_close(checkpointed[key], value, rtol=1e-5, atol=1e-7, msg=key)
    for key, value in g0.items():
        torch.testing.assert_close(g1[key], value, rtol=1e-4, atol=1e-6 * float(value.abs().max()), msg=key)


def test_dbp_with_zero_eps_is_data_consistent():
    batch = tiny_batch()
    method = small("dbp", num_admm=40, cg_max_iter=60, cg_eps=1e-8, l2lam_init=10.0, stdev=0.0)
    op = SenseOperator(batch.maps, batch.mask)
    y = batch.y
    with torch.no_grad():
        x = method(y, op)
        untrained_denoised = method.denoise(op.adjoint(y))
    residual = (op.forward(x) - y).abs().norm() / y.abs().norm()
    assert residual < 1e-4
    # the denoiser alone is far from consistent, so the constraint did the work
    assert (op.forward(untrained_denoised) - y).abs().norm() / y.abs().norm() > 10 * residual


def dense_forward(op: SenseOperator, shape: tuple[int, int]) -> torch.Tensor:
    """The matrix of A for one slice, (C*X*Y, X*Y) complex128."""
    n = shape[0] * shape[1]
    basis = torch.eye(n, dtype=torch.complex128).reshape(n, *shape)
    return torch.stack([op.forward(e[None])[0].reshape(-1) for e in basis], dim=1)


def project_onto_constraint(a: torch.Tensor, r: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """argmin ||x - r|| s.t. ||A x - y|| <= eps, exactly (dense): x = (I + mu A^H A)^-1 (r + mu A^H y)
    with mu >= 0 found by bisection so that ||A x - y|| = eps (mu = 0 when r is feasible)."""
    normal, eye = a.conj().T @ a, torch.eye(a.shape[1], dtype=a.dtype)

    def x_of(mu: float) -> torch.Tensor:
        return torch.linalg.solve(eye + mu * normal, r + mu * (a.conj().T @ y))

    def dist(mu: float) -> float:
        return float((a @ x_of(mu) - y).norm())

    if dist(0.0) <= eps:
        return r
    low, high = 0.0, 1.0
    while dist(high) > eps:
        high *= 10
    for _ in range(200):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if dist(mid) > eps else (low, mid)
    return x_of(high)


def test_dbp_admm_converges_to_the_exact_projection_onto_the_noise_ball():
    """One unroll of DBP: its ADMM must reach the exact solution of min ||x - r|| subject to
    ||A x - y|| <= eps, r the denoiser's output; the constraint is active (r is outside the
    ball), so the residual sits on the ball's edge: ||A x - y|| = eps."""
    batch = double_batch(n=1, shape=(6, 4))
    stdev = 0.02
    method = small("dbp", num_unrolls=1, num_admm=400, cg_max_iter=100, cg_eps=1e-12, l2lam_init=1.0, stdev=stdev)
    method = method.double()
    op = SenseOperator(batch.maps, batch.mask)
    y = batch.y
    noise = torch.full((1,), stdev, dtype=torch.float64)
    with torch.no_grad():
        x = method.unroll(y, op, noise)  # on y as given (reconstruct would divide it by its scale first)
        r = method.denoise(op.adjoint(y))
    eps = float((4 * batch.mask.sum()).sqrt() * stdev)
    a = dense_forward(op, (6, 4))
    measured = y[0].reshape(-1)
    assert float((a @ r[0].reshape(-1) - measured).norm()) > 2 * eps  # the constraint is active
    exact = project_onto_constraint(a, r[0].reshape(-1), measured, eps)
    assert float((a @ exact - measured).norm()) == pytest.approx(eps, rel=1e-9)
    assert float((x[0].reshape(-1) - exact).norm() / exact.norm()) < 1e-6
    assert float((op.forward(x) - y).norm()) == pytest.approx(eps, rel=1e-5)


def unsupervised() -> UnrolledTrainable:
    """Self-supervised DBP (loss ssdu), ResNet with batch norm and dropout 0.5, holdout, noise,
    flips, random phase."""
    torch.manual_seed(0)
    model = {"name": "resnet", "channels": 4, "num_blocks": 1, "batch_norm": True, "dropout": 0.5}
    method = {"name": "dbp", "num_unrolls": 2, "num_admm": 2, "cg_max_iter": 4}
    loss = {"loss": "ssdu", "holdout": 0.4, "holdout_center": 0.1}
    built = build_method(method, denoiser=build_net(model))
    return UnrolledTrainable(built, method, model, loss, (32, 24), {"flip": True, "random_phase": True}, stdev=0.01)


def loss_and_gradients(trainable: UnrolledTrainable, batch: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(7)  # the dropout masks
    trainable.module.zero_grad(set_to_none=True)
    loss = trainable.loss(batch, torch.Generator().manual_seed(1))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in trainable.module.parameters() if p.requires_grad]


def test_unsupervised_loss_and_gradients_never_read_unmeasured_kspace():
    """Through the whole `loss` path (random phase, flips, training noise, SSDU holdout, DBP
    with batch norm and dropout): k-space changed where the mask is 0 leaves the loss and every
    gradient bit for bit the same; a change of one measured sample does not."""
    batch = tiny_batch(n=3).replace(img=None)  # self-supervised training never has it: reading it would raise
    mask = batch.mask.unsqueeze(1).expand_as(batch.ksp)
    junk = 100 * torch.randn(batch.ksp.shape, dtype=batch.ksp.dtype, generator=torch.Generator().manual_seed(3))
    changed = batch.replace(ksp=torch.where(mask != 0, batch.ksp, junk))
    trainable = unsupervised()
    loss, grads = loss_and_gradients(trainable, batch)
    loss2, grads2 = loss_and_gradients(trainable, changed)
    assert torch.isfinite(loss) and torch.equal(loss, loss2)
    assert len(grads) > 4 and all(torch.equal(g, h) for g, h in zip(grads, grads2))
    one = batch.ksp.clone()
    one[mask != 0] = one[mask != 0] * 1.001  # measured samples do matter
    assert not torch.equal(loss_and_gradients(trainable, batch.replace(ksp=one))[0], loss)


def test_self_supervised_training_refuses_new_masks():
    from mrirecon.errors import UserError

    method = {"name": "dbp", "num_unrolls": 1}
    train = {"loss": "ssdu", "stdev": 0.0, "holdout": 0.4, "holdout_center": 0.1, "random_masks": True}
    with pytest.raises(UserError, match="^train.random_masks: loss ssdu reads measured samples only"):
        UnrolledTrainable.from_config(method, {"name": "resnet"}, train, shape=(32, 24), bits=None, seed=0, amp=False)


def test_kspace_validation_is_the_error_on_held_out_measured_samples():
    """val_kspace_nmse = ||M_h (A x - y)||^2 / ||M_h y||^2 on samples the network did not see:
    1 for a reconstruction of zeros, about 0 for the true image of noiseless data; it reads
    neither the reference nor unmeasured k-space, and a slice's held-out samples depend on its
    index only (not on the batch it is in)."""
    batch = double_batch(n=3, shape=(16, 12)).replace(index=torch.tensor([4, 7, 9]))
    truth = lambda y, op, noise: batch.img  # noqa: E731
    zeros = lambda y, op, noise: torch.zeros_like(batch.img)  # noqa: E731
    assert kspace_validation(zeros, batch, 0.4, 0.1, seed=3)[KSPACE_METRIC] == pytest.approx(1.0, abs=1e-12)
    assert kspace_validation(truth, batch, 0.4, 0.1, seed=3)[KSPACE_METRIC] < 1e-12  # float32 data
    method = small("modl").double().eval()
    with torch.no_grad():
        whole = kspace_validation(method, batch, 0.4, 0.1, seed=3)[KSPACE_METRIC]
        mask = batch.mask.unsqueeze(1) != 0
        other = batch.replace(img=None, ksp=torch.where(mask, batch.ksp, torch.full_like(batch.ksp, 50)))
        assert kspace_validation(method, other, 0.4, 0.1, seed=3)[KSPACE_METRIC] == whole
        parts = [kspace_validation(method, batch.part(i, i + 1), 0.4, 0.1, 3) for i in range(3)]
        assert whole == pytest.approx(sum(p[KSPACE_METRIC] for p in parts) / 3, rel=1e-12)
        assert kspace_validation(method, batch, 0.4, 0.1, seed=4)[KSPACE_METRIC] != whole
    assert 0 < whole < 1  # better than nothing, not perfect


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


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_training_step_on_cuda(amp):
    """The CUDA step computes the CPU step's loss and gradients (the draws come from the CPU
    generator either way); bf16 autocast of the denoiser to bf16's precision."""
    steps = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        method = small("dbp", cg_eps=0.0).to(device)
        method.amp = amp
        batch = tiny_batch().to(device)
        loss = training_loss(method, batch, False, torch.Generator().manual_seed(0), stdev=0.01, holdout=0.4)
        loss.backward()
        steps.append((loss.detach().cpu(), [p.grad.cpu() for p in method.parameters()]))
    (cpu_loss, cpu_grads), (gpu_loss, gpu_grads) = steps
    cpu, gpu = torch.cat([g.flatten() for g in cpu_grads]), torch.cat([g.flatten() for g in gpu_grads])
    if amp:  # bf16 keeps about 3 significant digits: the same loss and gradient direction
        assert float(gpu_loss) == pytest.approx(float(cpu_loss), rel=5e-2)
        assert float(torch.nn.functional.cosine_similarity(cpu, gpu, dim=0)) > 0.99
    else:
        torch.testing.assert_close(gpu_loss, cpu_loss, rtol=1e-4, atol=0)
        torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-6 * float(cpu.abs().max()))
