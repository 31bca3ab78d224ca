"""Two-process (gloo, CPU) runs for the data-parallel tests: `spawn` starts the ranks with
torch.multiprocessing, each joins the process group as torchrun's processes do, runs a worker
and saves what it found to `out/rank<r>.pt` for the test to compare."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mrirecon.training import distributed as ddp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, worker: Any, out: Path, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        OMP_WAIT_POLICY="PASSIVE",
    )
    torch.set_num_threads(1)
    ddp.init(torch.device("cpu"))
    try:
        torch.save(worker(rank, *args), out / f"rank{rank}.pt")
    finally:
        ddp.shutdown()


def spawn(worker: Any, out: Path, *args: Any, world: int = 2) -> list[Any]:
    """Run `worker(rank, *args)` on `world` gloo ranks; returns each rank's result (torch.save-able)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.multiprocessing.spawn(_entry, args=(world, _free_port(), worker, out, args), nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


# -- workers --------------------------------------------------------------------------------------
def batch_norm_and_actnorm(rank: int, x: torch.Tensor, split: int) -> dict[str, Any]:
    """Rank 0 takes items [:split] of x (B, C, H, W), rank 1 the rest: a SyncBatchNorm2d made
    from a BatchNorm2d (forward, weighted backward, gradient all-reduce as the Trainer does) and
    a GlobalActNorm initialised on its share."""
    from mrirecon.nets.flow import GlobalActNorm

    torch.manual_seed(0)
    bn = nn.Sequential(nn.BatchNorm2d(x.shape[1]))
    with torch.no_grad():
        bn[0].weight.uniform_(0.5, 1.5)
        bn[0].bias.uniform_(-0.5, 0.5)
    replaced = ddp.sync_batch_norm(bn)
    mine = (x[:split] if rank == 0 else x[split:]).clone().requires_grad_(True)
    share = len(mine) / len(x)
    weights = torch.linspace(-1, 1, x[0].numel()).reshape(x.shape[1:])
    out = bn(mine)
    (share * (out * weights).pow(2).sum((1, 2, 3)).mean()).backward()
    ddp.reduce_gradients(list(bn.parameters()), 1.0, torch.device("cpu"))
    actnorm = GlobalActNorm(x.shape[1]).train()
    collective_before = actnorm.collective
    actnorm(x[:split] if rank == 0 else x[split:])
    return {
        "replaced": replaced,
        "out": out.detach(),
        "input_grad": mine.grad,
        "param_grads": [p.grad for p in bn.parameters()],
        "running": (bn[0].running_mean.clone(), bn[0].running_var.clone()),
        "actnorm": (actnorm.log_scale.detach().clone(), actnorm.shift.detach().clone()),
        "collective": (collective_before, actnorm.collective),
    }


def layers_and_runs(
    rank: int,
    x: torch.Tensor,
    split: int,
    items: list[Any],
    val_items: list[Any],
    out: Path,
) -> dict[str, Any]:
    """`batch_norm_and_actnorm`, `unsupervised_run` twice (a rerun in the same processes) and
    `flow_run`, in one start of the ranks (starting processes is the slow part)."""
    return {
        "layers": batch_norm_and_actnorm(rank, x, split),
        "runs": [unsupervised_run(rank, items, val_items, out / f"run{k}") for k in range(2)],
        "flow": flow_run(rank, out / "flow"),
    }


def flow_run(rank: int, out_dir: Path) -> dict[str, Any]:
    """One epoch of a tiny flow prior (conditioners with batch norm and dropout 0.5; flips and
    dequantisation noise) on 2 ranks: returns the weights (ActNorm included)."""
    from tiny_training import ListDataset, image_items

    from mrirecon.nets import build_net
    from mrirecon.training.schedules import cosine_schedule
    from mrirecon.training.trainables.flow import FlowTrainable
    from mrirecon.training.trainer import Settings, Trainer

    torch.manual_seed(5)
    config = {"name": "flow", "levels": 2, "steps": 1, "hidden_channels": 4, "bins": 4, "batch_norm": True}
    flow = build_net({**config, "dropout": 0.5}, (1, 8, 8))
    images = torch.rand(6, 8, 8, generator=torch.Generator().manual_seed(0)).mul(15).round().div(15)
    items = image_items(images)
    trainable = FlowTrainable(flow, config, 4, {"loss": "bits_per_dim"}, seed=3, flip=True)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    trainer = Trainer(
        trainable=trainable,
        optimizer=optimizer,
        scheduler=cosine_schedule(optimizer, 1),
        train_set=ListDataset(items),
        val_set=ListDataset(items[:2]),
        out_dir=out_dir,
        config={},
        settings=Settings(epochs=1, batch_size=4, seed=3),
        device=torch.device("cpu"),
    )
    trainer.fit()
    return {"weights": {k: v.clone() for k, v in flow.state_dict().items()}}


def unsupervised_run(rank: int, items: list[Any], val_items: list[Any], out_dir: Path) -> dict[str, Any]:
    """Two epochs of unsupervised DBP (ResNet with batch norm and dropout 0.5; holdout, noise,
    flip, random phase) with the Trainer on 2 ranks; records the holdout, noise and dropout
    draws of the first step and returns them with the final weights."""
    from tiny_training import ListDataset, unsupervised_trainable

    import mrirecon.data.augment as augment
    import mrirecon.losses.ssdu as ssdu
    from mrirecon.training.trainer import Settings, Trainer

    draws: dict[str, list[torch.Tensor]] = {"holdout": [], "noise": [], "dropout": []}
    split, noise = ssdu.split_mask, augment.complex_noise

    def recording_split(*args: Any, **kwargs: Any) -> Any:
        result = split(*args, **kwargs)
        draws["holdout"].append(result[1].clone())
        return result

    def recording_noise(*args: Any, **kwargs: Any) -> Any:
        result = noise(*args, **kwargs)
        draws["noise"].append(result.clone())
        return result

    ssdu.split_mask, augment.complex_noise = recording_split, recording_noise
    trainable = unsupervised_trainable()  # the same initial weights on every rank

    def dropped(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        draws["dropout"].append(output.flatten(2).abs().sum(-1) == 0)  # (B, C): the channels set to 0

    for m in trainable.module.modules():
        if isinstance(m, nn.Dropout2d):
            m.register_forward_hook(dropped)
    optimizer = torch.optim.Adam(trainable.module.parameters(), lr=1e-2)
    trainer = Trainer(
        trainable=trainable,
        optimizer=optimizer,
        train_set=ListDataset(items),
        val_set=ListDataset(val_items),
        out_dir=out_dir,
        config={},
        settings=Settings(epochs=2, batch_size=2, seed=3),
        device=torch.device("cpu"),
    )
    try:
        trainer.fit()
    finally:
        ssdu.split_mask, augment.complex_noise = split, noise
    first = {key: value[0] for key, value in draws.items()}
    return {
        "draws": first,
        "weights": {k: v.clone() for k, v in trainable.module.state_dict().items()},
        "best": (out_dir / "checkpoints" / "best.pt").is_file(),
    }
