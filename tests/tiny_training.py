"""A small unrolled method and a Trainer around it, shared by the method, training and
checkpoint tests."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers import tiny_arrays

from mrirecon.methods import build_method
from mrirecon.methods.unrolled import training_loss
from mrirecon.nets import build_net
from mrirecon.training.callbacks import Interrupt, standard_callbacks
from mrirecon.training.trainables.unrolled import UnrolledTrainable
from mrirecon.training.trainer import Settings, Trainer


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


class ListDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Items (dicts of tensors) held in a list."""

    def __init__(self, items: list[dict[str, torch.Tensor]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.items[k]


def unsupervised_trainable(dropout: float = 0.5, batch_norm: bool = True) -> UnrolledTrainable:
    """Unsupervised DBP with every random draw on: SSDU holdout, training noise, flips, random
    phase, dropout (and batch norm); the same initial weights every call."""
    torch.manual_seed(5)
    model = {"name": "resnet", "channels": 4, "num_blocks": 1, "batch_norm": batch_norm, "dropout": dropout}
    method = {"name": "dbp", "num_unrolls": 1, "num_admm": 1, "cg_max_iter": 3}
    return UnrolledTrainable(
        build_method(method, denoiser=build_net(model)),
        method,
        model,
        supervised=False,
        stdev=0.01,
        holdout=0.4,
        holdout_center=0.1,
        flip=True,
        random_phase=True,
        seed=3,
    )


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
