"""A small unrolled method and a Trainer around it, shared by the method, training and
checkpoint tests."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import tiny_arrays

from mrirecon.data.augment import add_noise
from mrirecon.data.batch import Batch
from mrirecon.data.h5 import whole_grid
from mrirecon.losses.ssdu import SplitLoss
from mrirecon.losses.supervised import SquaredErrorLoss
from mrirecon.methods import build_method
from mrirecon.nets import build_net
from mrirecon.physics.fft import fft2c
from mrirecon.training.callbacks import Callback, Interrupt, standard_callbacks
from mrirecon.training.settings import Settings
from mrirecon.training.trainables.unrolled import UnrolledTrainable
from mrirecon.training.trainer import Trainer


def tiny_batch(n: int = 2, shape=(32, 24), seed: int = 0) -> Batch:
    a = tiny_arrays(n=n, coils=4, shape=shape, seed=seed)
    return Batch(
        ksp=torch.from_numpy(a["ksp"]),
        maps=torch.from_numpy(a["maps"]),
        mask=torch.from_numpy(a["masks"]),
        noise_std=torch.zeros(n),
        index=torch.arange(n),
        acquired=torch.tensor([whole_grid(shape)] * n),
        img=torch.from_numpy(a["imgs"]),
    )


def training_loss(
    method,
    batch: Batch,
    supervised: bool,
    generator,
    stdev: float = 0.0,
    holdout: float = 0.0,
    keep_center: float = 0.0,
) -> torch.Tensor:
    """The unrolled methods' training objective as the unrolled family computes it after its
    augmentations: extra noise `stdev`, then the supervised loss (sse) or SSDU's split loss."""
    loss = SquaredErrorLoss() if supervised else SplitLoss(holdout, keep_center)
    return loss(method, add_noise(batch, stdev, generator), generator)


def as_double(batch: Batch) -> Batch:
    """The batch in float64 / complex128 (for finite differences)."""
    double = lambda v: v.to(torch.complex128 if v.is_complex() else torch.float64)  # noqa: E731
    return batch.replace(ksp=double(batch.ksp), maps=double(batch.maps), mask=double(batch.mask),
                         noise_std=double(batch.noise_std), img=double(batch.img))  # fmt: skip


def small(name: str, model: str = "resnet", **kw):
    net = build_net(
        {"name": "resnet", "channels": 8, "num_blocks": 1}
        if model == "resnet"
        else {"name": "unet", "base_channels": 4, "depth": 3}
    )
    return build_method({"name": name, "num_unrolls": 2, "cg_max_iter": 5, **kw}, denoiser=net)


class ListDataset(torch.utils.data.Dataset[Batch]):
    """Items (batches of one slice) held in a list."""

    def __init__(self, items: list[Batch]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> Batch:
        return self.items[k]


def items_of(batch: Batch) -> list[Batch]:
    """The slices of a batch as items (batches of one)."""
    return [batch.part(k, k + 1) for k in range(batch.size)]


def image_items(images: torch.Tensor) -> list[Batch]:
    """Items whose reference images are `images` (N, X, Y) (real; complex64 as stored) and whose
    k-space (one coil, all measured) is that of the image: what a flow prior trains on."""
    n, x, y = images.shape
    img = images.to(torch.complex64)
    batch = Batch(
        ksp=fft2c(img)[:, None],
        maps=torch.ones(n, 1, x, y, dtype=torch.complex64),
        mask=torch.ones(n, x, y),
        noise_std=torch.full((n,), float("nan")),
        index=torch.arange(n),
        acquired=torch.tensor([whole_grid((x, y))] * n),
        img=img,
    )
    return items_of(batch)


def unsupervised_trainable(dropout: float = 0.5, batch_norm: bool = True) -> UnrolledTrainable:
    """Self-supervised DBP with every random draw on: SSDU holdout, training noise, flips, random
    phase, dropout (and batch norm); the same initial weights every call."""
    torch.manual_seed(5)
    model = {"name": "resnet", "channels": 4, "num_blocks": 1, "batch_norm": batch_norm, "dropout": dropout}
    method = {"name": "dbp", "num_unrolls": 1, "num_admm": 1, "cg_max_iter": 3}
    return UnrolledTrainable(
        build_method(method, denoiser=build_net(model)),
        method,
        model,
        {"loss": "ssdu", "holdout": 0.4, "holdout_center": 0.1},
        (16, 12),
        {"flip": True, "random_phase": True},
        stdev=0.01,
        seed=3,
    )


class StopAt(Callback):
    """Request a stop (what Ctrl-C does) after optimizer step `step`."""

    def __init__(self, stop: Interrupt, step: int) -> None:
        self.stop, self.step = stop, step

    def on_step(self, trainer: Trainer, loss: float) -> None:
        if trainer.state["step"] == self.step + 1:
            self.stop.request()


class TinyTrainable:
    """A Trainable over a small dbp: the supervised loss with noise, l2lam as the 'metric'."""

    select = "val_nrmse"

    def __init__(self, method):
        self.module = method

    def loss(self, batch, generator):
        return training_loss(self.module, batch, True, generator, stdev=0.01)

    def validate(self, batch):
        return {"val_nrmse": float(self.module.l2lam.detach())}

    def images(self, batch):
        return {}

    def checkpoint_state(self):
        return {"kind": "tiny"}


def make_trainer(out: Path, epochs: int, stop_at_step: int | None = None, max_minutes: float | None = None) -> Trainer:
    torch.manual_seed(5)
    method = small("dbp", num_unrolls=1, num_admm=1)
    items = items_of(tiny_batch(n=5, shape=(16, 12)))
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.7)
    settings = Settings(epochs=epochs, batch_size=2, seed=3)
    hooks = standard_callbacks(True, max_minutes)
    stop = next(h for h in hooks if isinstance(h, Interrupt))
    if stop_at_step is not None:
        hooks.insert(0, StopAt(stop, stop_at_step))
    return Trainer(
        trainable=TinyTrainable(method),
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
