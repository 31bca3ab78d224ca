"""Shared parts of the unrolled methods (DBP, MoDL): a denoiser on complex images, a learnable
Tikhonov weight and the normalisation of the data by its own intensity scale (their training
losses are in mrirecon.losses).

The network never sees the data's units: y is divided by s = max |A^H y| of its slice (measured
data only, never the reference), the unrolled iterations run on y / s, and the result is
multiplied by s. So a network trained on the [0, 1] images of the sample runs on raw scanner
k-space, and reconstructing c * y gives c * x_hat.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from mrirecon.methods.base import (
    Method,
    check_nonnegative,
    check_positive_int,
    data_scale,
    from_channels,
    to_channels,
)
from mrirecon.physics.sense import SenseOperator


class Unrolled(nn.Module, Method):
    """An unrolled network: `num_unrolls` rounds of denoising and CG data consistency.

    Args:
        denoiser: image-to-image network on (B, 2, X, Y).
        num_unrolls: rounds of denoiser + data consistency (>= 1), sharing the weights.
        cg_max_iter: conjugate-gradient iterations per data-consistency step (>= 1).
        cg_eps: CG relative residual tolerance.
        l2lam_init: initial Tikhonov weight (> 0).
        learn_l2lam: train the weight with the network.
    """

    checkpoint_kind = "unrolled"
    # the weights are shared by the unrolls, so their number may change after training
    inference_keys: ClassVar[tuple[str, ...]] = ("num_unrolls", "cg_max_iter", "cg_eps")
    amp = False  # run the denoiser under bf16 autocast, CUDA or CPU (set from hardware.amp)
    checkpoint_unrolls = False  # recompute each unroll in the backward pass (set from train.checkpoint_unrolls)

    def __init__(
        self,
        denoiser: nn.Module,
        num_unrolls: int = 4,
        cg_max_iter: int = 10,
        cg_eps: float = 1e-4,
        l2lam_init: float = 0.1,
        learn_l2lam: bool = True,
    ) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.num_unrolls = check_positive_int("num_unrolls", num_unrolls)
        self.cg_max_iter = check_positive_int("cg_max_iter", cg_max_iter)
        self.cg_eps = check_nonnegative("cg_eps", cg_eps)
        if not check_nonnegative("l2lam_init", l2lam_init) > 0:
            raise ValueError(f"l2lam_init: {l2lam_init!r} must be > 0")
        self.l2lam_raw = nn.Parameter(torch.tensor(float(l2lam_init)), requires_grad=bool(learn_l2lam))

    @property
    def l2lam(self) -> torch.Tensor:
        """The Tikhonov weight, kept positive."""
        return self.l2lam_raw.abs() + 1e-8

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the denoiser to a complex image batch (B, X, Y); with `amp`, its convolutions
        run in bfloat16 (autocast; about 2x faster on CPUs with AVX512-BF16 or AMX) and its
        output returns to float32, so physics and CG stay in full precision."""
        if self.amp:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                out = self.denoiser(to_channels(x))
            return from_channels(out.float())
        return from_channels(self.denoiser(to_channels(x)))

    def step(self, body: Callable[..., tuple[torch.Tensor, ...]], *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One unroll, `body(*state) -> new state`. With `checkpoint_unrolls` and gradients on,
        it runs under activation checkpointing (torch.utils.checkpoint, non-reentrant): only
        the state between unrolls is kept for the backward pass, and the unroll's own
        intermediates (denoiser activations, CG iterates) are recomputed from it, so training
        memory grows with the state, not with everything an unroll computes. The gradients are
        the same (the recomputation replays the same operations and random draws), and the
        recomputation leaves batch-norm running statistics as the forward pass left them (they
        are updated once per unroll, as without checkpointing)."""
        if self.checkpoint_unrolls and torch.is_grad_enabled():
            contexts = lambda: (contextlib.nullcontext(), kept_running_stats(self.denoiser))  # noqa: E731
            return checkpoint(body, *state, use_reentrant=False, context_fn=contexts)
        return body(*state)

    def unroll(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        """The unrolled iterations on normalised data y (B, C, X, Y) with noise std (B,) -> x (B, X, Y)."""
        raise NotImplementedError

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        scale = data_scale(y, op)
        sigma = None if noise_std is None else noise_std / scale
        view = (-1,) + (1,) * (y.ndim - 1)
        return self.unroll(y / scale.reshape(view).to(y.dtype), op, sigma) * scale.reshape(view[:-1]).to(y.dtype)

    def forward(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        return self.reconstruct(y, op, noise_std)


@contextlib.contextmanager
def kept_running_stats(module: nn.Module) -> Iterator[None]:
    """Restore the running statistics (running_mean, running_var, num_batches_tracked) of
    every batch-norm layer of `module` on exit: a recomputation in the backward pass (activation
    checkpointing) normalises with the batch's statistics as the forward pass did, but must not
    count the batch a second time."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
