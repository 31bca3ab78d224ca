"""The training loop's guarantees: exact resume with dropout, batch norm and random draws on;
independent random streams per rank; the schedule of a resumed run follows its config; best.pt
chosen (and recorded) by the trainable's own metric; data-parallel batch norm and ActNorm on the
global batch (two gloo processes on the CPU)."""

from __future__ import annotations

import csv
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from ddp_workers import layers_and_runs, spawn
from helpers import tiny_arrays
from tiny_training import ListDataset, StopAt, unsupervised_trainable
from torch import nn

from mrirecon.data.batch import Batch
from mrirecon.data.h5 import whole_grid
from mrirecon.errors import UserError
from mrirecon.nets.flow import GlobalActNorm
from mrirecon.training import distributed as ddp
from mrirecon.training.callbacks import Callback, Interrupt, standard_callbacks
from mrirecon.training.loader import train_loader
from mrirecon.training.schedules import cosine_schedule, schedule, step_schedule
from mrirecon.training.settings import Settings
from mrirecon.training.streams import DRAWS, GLOBAL, stream_seed
from mrirecon.training.trainables.unrolled import UnrolledTrainable
from mrirecon.training.trainer import Trainer


def slices(n: int, shape=(16, 12), reference: bool = True, seed: int = 0) -> list[Batch]:
    """Dataset items as SliceDataset makes them (complex64 k-space with noise std, index)."""
    a = tiny_arrays(n=n, coils=3, shape=shape, seed=seed)
    one = lambda key, i: torch.from_numpy(a[key][i : i + 1])  # noqa: E731
    return [
        Batch(
            ksp=one("ksp", i),
            maps=one("maps", i),
            mask=one("masks", i),
            noise_std=torch.tensor([0.01]),
            index=torch.tensor([i]),
            acquired=torch.tensor([whole_grid(shape)]),
            img=one("imgs", i) if reference else None,
        )
        for i in range(n)
    ]


def trainer(out: Path, trainable, epochs: int, scheduler=None, stop_at_step: int | None = None, **kw) -> Trainer:
    hooks = standard_callbacks(True, None)
    if stop_at_step is not None:  # what Ctrl-C does, after that step
        hooks.insert(0, StopAt(next(h for h in hooks if isinstance(h, Interrupt)), stop_at_step))
    optimizer = torch.optim.Adam(trainable.module.parameters(), lr=kw.pop("lr", 1e-2))
    return Trainer(
        trainable=trainable,
        optimizer=optimizer,
        scheduler=None if scheduler is None else scheduler(optimizer),
        train_set=ListDataset(kw.pop("train", slices(5, reference=False))),
        val_set=ListDataset(kw.pop("val", slices(2, seed=1))),
        out_dir=out,
        config={},
        settings=Settings(epochs=epochs, batch_size=kw.pop("batch_size", 2), seed=3),
        device=torch.device("cpu"),
        callbacks=hooks,
    )


def test_resume_with_dropout_batch_norm_and_random_draws_is_exact(tmp_path):
    """Interrupted mid-epoch and resumed, a run with dropout 0.5, batch norm, holdout, noise,
    flips and random phase ends with the weights (running statistics included) and
    metrics.csv of the uninterrupted run: bit for bit."""
    full = trainer(tmp_path / "full", unsupervised_trainable(), epochs=3)
    full.fit()
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "cut", unsupervised_trainable(), epochs=3, stop_at_step=4).fit()  # mid-epoch 2
    resumed = trainer(tmp_path / "cut", unsupervised_trainable(), epochs=3)
    torch.manual_seed(12345)  # whatever the global RNG holds before the resume: it must not matter
    resumed.fit(resume_from=tmp_path / "cut" / "checkpoints" / "last.pt")
    assert resumed.state["step"] == full.state["step"] == 9
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert any("running_var" in name for name in full.model.state_dict())
    rows = (tmp_path / "cut" / "metrics.csv").read_text()
    assert rows == (tmp_path / "full" / "metrics.csv").read_text() and rows.count("\n") == 4


def test_checkpoints_count_the_training_seconds_across_resumes(tmp_path, monkeypatch):
    """state["seconds"] is the wall-clock time of training, counted at every checkpoint and added
    up over a resume; a resumed checkpoint that did not count it makes it unknown (None), never 0."""
    clock = iter(range(0, 1000, 10))  # every reading of the clock 10 s after the last
    monkeypatch.setattr("mrirecon.training.trainer.time.monotonic", lambda: float(next(clock)))
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path / "cut", unsupervised_trainable(), epochs=3, stop_at_step=4).fit()
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    first = torch.load(last, weights_only=False)["state"]["seconds"]
    assert first > 0 and first % 10 == 0
    resumed = trainer(tmp_path / "cut", unsupervised_trainable(), epochs=3)
    resumed.fit(resume_from=last)
    assert resumed.state["seconds"] > first
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["state"]["seconds"] == resumed.state["seconds"]
    del ckpt["state"]["seconds"]  # a checkpoint that did not count its time
    torch.save(ckpt, tmp_path / "old.pt")
    again = trainer(tmp_path / "again", unsupervised_trainable(), epochs=4)
    again.fit(resume_from=tmp_path / "old.pt")
    assert again.state["seconds"] is None


def test_dropout_and_draws_change_with_the_step_and_the_seed(tmp_path):
    """The resume test above would pass trivially if nothing were random: the draws differ
    from step to step, and another seed gives other weights."""
    a = trainer(tmp_path / "a", unsupervised_trainable(), epochs=1)
    a.fit()
    b = trainer(tmp_path / "b", unsupervised_trainable(), epochs=1)
    b.settings.seed = 4
    b.fit()
    assert not torch.equal(a.model.denoiser.head.weight, b.model.denoiser.head.weight)
    assert stream_seed(3, DRAWS, 0, 0) != stream_seed(3, DRAWS, 0, 1) != stream_seed(3, GLOBAL, 0, 1)
    assert stream_seed(3, DRAWS, 0, 7) != stream_seed(3, DRAWS, 1, 7)  # the rank is in every key


def test_best_pt_is_chosen_by_the_trainables_metric_and_recorded(tmp_path):
    """best.pt follows `select` (here a metric that rises while NRMSE falls), and metrics.csv
    and the checkpoint say which metric chose it."""

    class Rising(UnrolledTrainable):
        def validate(self, batch):
            epoch = self.calls = getattr(self, "calls", 0) + 1
            return {"val_nrmse": 1.0 / epoch, "val_kspace_nmse": float(epoch)}

    base = unsupervised_trainable(dropout=0.0, batch_norm=False)
    ssdu = {"loss": "ssdu", "holdout": 0.4, "holdout_center": 0.0}
    trainable = Rising(base.module, base.method_config, base.model_config, ssdu, (16, 12))
    assert trainable.select == "val_kspace_nmse"
    trainer(tmp_path, trainable, epochs=3).fit()
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=False)
    assert best["state"]["epoch"] == 1 and best["state"]["best_by"] == "val_kspace_nmse"
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["best_by"] for r in rows] == ["val_kspace_nmse"] * 3
    assert UnrolledTrainable(base.module, {}, {}, {"loss": "sse"}, (16, 12)).select == "val_nrmse"


def test_resumed_cosine_schedule_follows_the_new_number_of_epochs(tmp_path):
    """train.cosine_lr's schedule (the flow's default): 2 epochs of 2, then resumed with 4 epochs,
    continues the 4-epoch schedule (rates 1, 0.5, 0.5, 0.146 of the initial one), never rising again."""
    cosine = lambda epochs: lambda opt: schedule(opt, epochs, None, True)  # noqa: E731
    quiet = unsupervised_trainable(dropout=0.0, batch_norm=False)
    trainer(tmp_path, quiet, epochs=2, scheduler=cosine(2)).fit()
    longer = trainer(tmp_path, unsupervised_trainable(dropout=0.0, batch_norm=False), 4, scheduler=cosine(4))
    longer.fit(resume_from=tmp_path / "checkpoints" / "last.pt")
    rates = [row["lr"] / 1e-2 for row in longer.state["history"]]
    expected = [1.0, 0.5, 0.5, 0.5 * (1 + math.cos(3 * math.pi / 4))]
    assert rates == pytest.approx(expected, rel=1e-12)
    assert longer.optimizer.param_groups[0]["lr"] == 0.0  # the end of the 4-epoch schedule
    assert cosine_schedule(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), 2).get_last_lr() == [1.0]


def test_resume_applies_the_new_rate_and_schedule_from_the_resumed_epoch(tmp_path):
    """The resume rule: this run's train.lr and train.step_lr apply from the resumed epoch on,
    whether or not the checkpoint's run had a schedule (the old code kept the checkpoint's rate
    when either run had none: epoch 2 trained at 1e-2 after lr=1e-3)."""
    quiet = lambda: unsupervised_trainable(dropout=0.0, batch_norm=False)  # noqa: E731
    trainer(tmp_path / "a", quiet(), epochs=1).fit()  # lr 1e-2, no schedule
    resumed = trainer(tmp_path / "a", quiet(), epochs=2, lr=1e-3)
    resumed.fit(resume_from=tmp_path / "a" / "checkpoints" / "last.pt")
    assert [row["lr"] for row in resumed.state["history"]] == [1e-2, 1e-3]
    halving = lambda optimizer: step_schedule(optimizer, 1, 0.5)  # noqa: E731
    stepped = trainer(tmp_path / "a", quiet(), epochs=4, lr=1e-3, scheduler=halving)  # a schedule added
    stepped.fit(resume_from=tmp_path / "a" / "checkpoints" / "last.pt")
    assert [row["lr"] for row in stepped.state["history"]] == pytest.approx([1e-2, 1e-3, 2.5e-4, 1.25e-4])
    constant = trainer(tmp_path / "a", quiet(), epochs=5, lr=3e-3)  # the schedule dropped
    constant.fit(resume_from=tmp_path / "a" / "checkpoints" / "last.pt")
    assert constant.state["history"][-1]["lr"] == 3e-3


def test_resume_mid_epoch_refuses_another_batch_size(tmp_path):
    """A checkpoint written mid-epoch counts that epoch's done slices in its batches: another
    batch size is refused there (the old code skipped slices), and accepted at an epoch's start."""
    quiet = lambda: unsupervised_trainable(dropout=0.0, batch_norm=False)  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        trainer(tmp_path, quiet(), epochs=2, stop_at_step=3).fit()  # epoch 2 after its first batch
    last = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(
        UserError, match=r"train.batch_size: 3, .* \(after 1 of its batches of 2\): resume with train.batch_size=2"
    ):
        trainer(tmp_path, quiet(), epochs=2, batch_size=3).fit(resume_from=last)
    finished = trainer(tmp_path, quiet(), epochs=2)
    finished.fit(resume_from=last)
    bigger = trainer(tmp_path, quiet(), epochs=3, batch_size=3)
    bigger.fit(resume_from=last)  # written at the end of epoch 2: a new batch size starts with epoch 3
    assert bigger.state["step"] == finished.state["step"] + 2 and bigger.state["batch_size"] == 3


def test_refuses_data_parallel_batch_norm_when_a_rank_gets_no_item(tmp_path, monkeypatch):
    """With batch norm over the global batch every rank must take part in every step: 5 slices
    in batches of 2 leave a last batch of 1 for 2 processes."""
    monkeypatch.setattr(ddp, "world_size", lambda: 2)  # as seen by the Trainer; no process group needed
    with pytest.raises(UserError, match=r"^train.batch_size: 2 over 5 training slices .* batch of 1 slice"):
        trainer(tmp_path, unsupervised_trainable(), epochs=1)
    accepted = trainer(tmp_path, unsupervised_trainable(), epochs=1, train=slices(4, reference=False))
    assert isinstance(accepted.model.denoiser.blocks[0].body[0], ddp.SyncBatchNorm2d)
    assert ddp.needs_every_rank(accepted.model)
    assert not ddp.needs_every_rank(unsupervised_trainable(batch_norm=False).module)
    assert GlobalActNorm(2).collective  # until initialised


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    """One start of two gloo ranks for the tests below: the layer checks on a batch of 5 (3 and
    2 items per rank) and two unsupervised training runs on 4 copies of one slice."""
    out = tmp_path_factory.mktemp("ddp")
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 + 1
    one = slices(1, reference=False)[0]
    items = [one.replace(index=torch.tensor([i])) for i in range(4)]  # batches of 2: one item per rank
    return spawn(layers_and_runs, out / "results", x, 3, items, slices(2, seed=1), out)


@pytest.mark.slow
def test_ddp_batch_norm_and_actnorm_use_the_global_batch(two_ranks):
    """Two ranks with 3 and 2 of 5 items: synchronised batch norm gives the one-process outputs,
    input and weight gradients (with the Trainer's weighting) and running statistics, the same
    on both ranks; ActNorm initialises from the whole batch."""
    x = torch.randn(5, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 + 1
    ranks = [r["layers"] for r in two_ranks]
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    x1 = x.clone().requires_grad_(True)
    out = bn(x1)
    weights = torch.linspace(-1, 1, x[0].numel()).reshape(x.shape[1:])
    (out * weights).pow(2).sum((1, 2, 3)).mean().backward()
    close = dict(rtol=1e-5, atol=1e-6)
    assert ranks[0]["replaced"] == 1
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]), out.detach(), **close)
    torch.testing.assert_close(torch.cat([r["input_grad"] for r in ranks]), x1.grad, **close)
    for k, p in enumerate(bn.parameters()):
        torch.testing.assert_close(ranks[0]["param_grads"][k], p.grad, **close)
        assert torch.equal(ranks[0]["param_grads"][k], ranks[1]["param_grads"][k])
    for k, buffer in enumerate((bn.running_mean, bn.running_var)):
        torch.testing.assert_close(ranks[0]["running"][k], buffer, **close)
        assert torch.equal(ranks[0]["running"][k], ranks[1]["running"][k])
    actnorm = GlobalActNorm(3).train()
    actnorm(x)
    for r in ranks:
        torch.testing.assert_close(r["actnorm"][0], actnorm.log_scale.detach(), **close)
        torch.testing.assert_close(r["actnorm"][1], actnorm.shift.detach(), **close)
        assert r["collective"] == (True, False)


@pytest.mark.slow
def test_two_ranks_draw_differently_and_a_rerun_matches_itself(two_ranks):
    """Unsupervised DBP with batch norm, dropout 0.5, holdout, noise, flips and random phase on
    two gloo processes, every item the same slice: the ranks draw different holdouts, noise and
    dropout masks; both end with the same weights; a second run gives them bit for bit."""
    first, second = ([r["runs"][k] for r in two_ranks] for k in range(2))
    for key in ("holdout", "noise", "dropout"):
        a, b = first[0]["draws"][key], first[1]["draws"][key]
        assert not torch.equal(a[:1], b[:1]), f"ranks drew the same {key}"
    for rank in range(2):
        for name, value in first[0]["weights"].items():
            assert torch.equal(first[rank]["weights"][name], value), (rank, name)  # ranks agree
            assert torch.equal(second[rank]["weights"][name], value), (rank, name)  # the rerun agrees
    assert first[0]["best"] and second[0]["best"]  # rank 0 wrote best.pt


@pytest.mark.slow
def test_two_ranks_train_one_flow(two_ranks):
    """A flow prior with batch norm and dropout in its conditioners on two ranks (ActNorm
    initialised from the global first batch, no broadcast from rank 0): both ranks end with the
    same weights, ActNorm's included, and ActNorm was initialised."""
    first, second = (r["flow"]["weights"] for r in two_ranks)
    actnorms = [name for name in first if name.endswith("initialized")]
    assert actnorms and all(bool(first[name]) for name in actnorms)
    assert any("running_var" in name for name in first)
    for name, value in first.items():
        assert torch.equal(second[name], value), name


def test_sigterm_stops_training_cleanly_as_ctrl_c(tmp_path):
    """SIGTERM (a kill, a scheduler's time limit) mid-epoch: the step ends, last.pt is saved,
    KeyboardInterrupt as for Ctrl-C, no temporary file (SIGTERM ended the process on the spot)."""
    from mrirecon.io import interrupts

    class Killed(Exception):
        pass

    def unhandled(signum, frame):
        raise Killed("SIGTERM was not handled by the training loop")

    class Kill(Callback):
        def on_step(self, trainer: Trainer, loss: float) -> None:
            if trainer.state["step"] == 4:  # after step 3
                os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        run = trainer(tmp_path, unsupervised_trainable(), epochs=3)
        run.callbacks.insert(0, Kill())
        interrupts.RECEIVED.clear()
        with pytest.raises(KeyboardInterrupt):
            run.fit()
        assert signal.getsignal(signal.SIGTERM) is unhandled  # restored after the fit
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert interrupts.name() == "SIGTERM" and interrupts.exit_code() == 143
    saved = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert saved["step"] == 4 and not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


class WorkerRecording(torch.utils.data.Dataset[Batch]):
    """Batches of one (tiny) slice whose noise_std says which DataLoader worker read them (-1:
    the main process)."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, k: int) -> Batch:
        info = torch.utils.data.get_worker_info()
        one = torch.zeros(1, 1, 2, 2, dtype=torch.complex64)
        return Batch(
            ksp=one,
            maps=one,
            mask=torch.ones(1, 2, 2),
            noise_std=torch.tensor([-1.0 if info is None else float(info.id)]),
            index=torch.tensor([k]),
            acquired=torch.tensor([[0, 2, 0, 2]]),
        )


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_reads_in_its_workers_the_given_batches(workers):
    """hardware.num_workers (Settings.num_workers) takes effect: the items are read in that many
    worker processes, in the given batches, joined into Batches; memory is pinned only for a
    CUDA device."""
    batches = [[4, 0], [5], [1, 3], [2]]
    loader = train_loader(WorkerRecording(), batches, workers, 3, (0, 0, 0), torch.device("cpu"))
    read = list(loader)
    assert all(isinstance(b, Batch) for b in read)
    assert [b.index.tolist() for b in read] == batches
    assert {int(w) for b in read for w in b.noise_std.tolist()} == ({0, 1} if workers else {-1})
    assert not loader.pin_memory
    assert train_loader(WorkerRecording(), batches, workers, 3, (0, 0, 0), torch.device("cuda")).pin_memory


@pytest.mark.cuda
def test_train_loader_pins_batches_for_a_gpu():
    """On a CUDA device the loader's Batches arrive in page-locked memory (Batch.pin_memory)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    read = list(train_loader(WorkerRecording(), [[0, 1]], 0, 3, (0, 0, 0), torch.device("cuda")))
    assert read[0].ksp.is_pinned() and read[0].index.is_pinned()


def test_training_is_the_same_for_any_number_of_loader_workers(tmp_path):
    """Batches, holdouts, noise, flips, random phase and dropout do not depend on the loader's
    workers: 0, 1 and 2 workers train the same weights and metrics.csv, bit for bit."""
    runs = []
    for workers in (0, 1, 2):
        run = trainer(tmp_path / str(workers), unsupervised_trainable(), epochs=2)
        run.settings.num_workers = workers
        run.fit()
        runs.append(run)
    first = runs[0]
    assert first.state["step"] == 6
    for run in runs[1:]:
        for (name, a), b in zip(first.model.state_dict().items(), run.model.state_dict().values()):
            assert torch.equal(a, b), name
        assert (run.out_dir / "metrics.csv").read_text() == (first.out_dir / "metrics.csv").read_text()
