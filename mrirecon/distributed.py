"""Data-parallel training across processes started by `torchrun` (torch.distributed).

`torchrun --nproc_per_node=N -m mrirecon train hardware=ddp ...` starts N copies of the CLI with
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in the environment; `init` joins
them into one process group (gloo on CPU, nccl on CUDA). Without those variables everything
here is a no-op for a single process, so the same code runs with and without torchrun.
Knows nothing about MRI.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def launched() -> bool:
    """True in a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that logs and writes files."""
    return rank() == 0


def init(device: torch.device, backend: str = "auto") -> torch.device:
    """Join the torchrun process group (no-op for a single process). Returns the device this
    rank uses: cuda:<LOCAL_RANK> on CUDA, else `device`."""
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if backend == "auto" and device.type == "cuda" else "gloo" if backend == "auto" else backend
    )
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable objects)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shard(items: list[int]) -> list[int]:
    """This rank's part of a global batch: items rank, rank + W, rank + 2W, ..."""
    return items[rank() :: world_size()]


def reduce_gradients(params: list[torch.nn.Parameter], weight: float, device: torch.device) -> None:
    """Replace each gradient g_r by sum_r weight_r g_r over ranks, in one flat all-reduce.
    With weight_r = (items of rank r) / (items of the global batch) and a loss that is a mean
    over the rank's items, this is the gradient of the mean over the global batch."""
    if not dist.is_initialized():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads]).to(device) * weight
    dist.all_reduce(flat)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).to(g.device)
        offset += n


def all_sum(value: float, device: torch.device) -> float:
    """The sum of a float over ranks."""
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def any_rank(flags: tuple[bool, ...], device: torch.device) -> tuple[bool, ...]:
    """Each flag made true on every rank if it is true on any rank (e.g. stop requests), in
    one all-reduce."""
    if not dist.is_initialized():
        return flags
    t = torch.tensor(flags, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return tuple(bool(v > 0) for v in t.tolist())


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (after data-dependent init, e.g.
    ActNorm, and to keep batch-norm statistics identical)."""
    if not dist.is_initialized():
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dtype == torch.bool:  # not every backend reduces bool tensors
            as_int = tensor.data.to(torch.uint8)
            dist.broadcast(as_int, src=0)
            tensor.data.copy_(as_int.bool())
        else:
            dist.broadcast(tensor.data, src=0)
