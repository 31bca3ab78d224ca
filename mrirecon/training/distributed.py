"""Data-parallel training across processes started by `torchrun` (torch.distributed).

`torchrun --nproc_per_node=N -m mrirecon train hardware=ddp ...` starts N copies of the CLI with
RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in the environment; `init` joins
them into one process group (gloo on CPU, nccl on CUDA). Without those variables everything
here is a no-op for a single process, so the same code runs with and without torchrun.
Knows nothing about MRI.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


def launched() -> bool:
    """True in a process started by torchrun (one process too: it joins a group of one, so the
    collective code paths and the backend run as with several)."""
    return all(key in os.environ for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


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
    chosen = "nccl" if backend == "auto" and device.type == "cuda" else "gloo" if backend == "auto" else backend
    dist.init_process_group(chosen)
    log.info(
        "process group: backend %s, rank %d of %d, device %s", chosen, dist.get_rank(), dist.get_world_size(), device
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


class _AllSum(torch.autograd.Function):
    """The sum over ranks of a tensor, differentiable: the gradient is the sum over ranks of the
    gradients (every rank's loss depends on every rank's input)."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def all_sum_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The elementwise sum of `tensor` over ranks, differentiable (itself for one process)."""
    return _AllSum.apply(tensor) if dist.is_initialized() else tensor


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch across the ranks
    (two differentiable all-reduces: the sums, then the squared deviations from the global mean),
    on any device and backend (torch's SyncBatchNorm needs a GPU). The running statistics follow
    the global batch, so they are the same on every rank. Parameters and buffers are those of
    BatchNorm2d: state dicts load either way. Without a process group it is BatchNorm2d.

    Every rank must call it the same number of times per step (see `needs_every_rank`).
    """

    collective = True  # its forward talks to the other ranks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        view, dims = (1, -1, 1, 1), (0, 2, 3)
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])])
        total = all_sum_tensor(local)
        count = total[-1]
        mean = total[:-1] / count
        centred = x - mean.view(view)
        var = all_sum_tensor(centred.pow(2).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(view)
        if self.affine:
            out = out * self.weight.view(view) + self.bias.view(view)
        tracked = self.num_batches_tracked
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            assert tracked is not None
            with torch.no_grad():
                tracked.add_(1)
                factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp_min(1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        return out


def sync_batch_norm(module: nn.Module) -> int:
    """Replace every BatchNorm2d in `module` by a `SyncBatchNorm2d` that shares its parameters
    and buffers (an optimizer built before keeps working), when there is more than one rank.
    Returns how many were replaced."""
    if world_size() < 2:
        return 0
    count = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                synced = SyncBatchNorm2d(
                    child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
                )
                synced._parameters, synced._buffers = child._parameters, child._buffers
                synced.train(child.training)
                setattr(parent, name, synced)
                count += 1
    return count


def needs_every_rank(module: nn.Module) -> bool:
    """Whether a forward of `module` talks to the other ranks (a submodule with a true
    `collective` attribute: synchronised batch norm, an ActNorm not yet initialised), so that
    every rank must take part in every step."""
    return world_size() > 1 and any(bool(getattr(m, "collective", False)) for m in module.modules())
