"""Shared parts of the unrolled methods (DBP, MoDL): a denoiser on complex images, a learnable
Tikhonov weight, the normalisation of the data by its own intensity scale, and the training loss.

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
from mrirecon.physics.noise import complex_noise, resolve_noise_std
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


def split_mask(
    mask: torch.Tensor, holdout: float, generator: torch.Generator, keep_center: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each sampling mask (B, X, Y) into disjoint (input, loss) masks, with a random
    `holdout` fraction of the measured samples in the loss mask (self-supervised data
    splitting, SSDU, Yaman et al. 2020). Samples in the central `keep_center` fraction of
    each k-space dimension always stay in the input, as the centre is always measured."""
    draw = torch.rand(mask.shape, generator=generator).to(mask.device)
    held = draw < holdout
    if keep_center > 0:
        x, y = mask.shape[-2:]
        hx, hy = max(1, round(x * keep_center / 2)), max(1, round(y * keep_center / 2))
        held[..., x // 2 - hx : x // 2 + hx, y // 2 - hy : y // 2 + hy] = False
    loss_mask = mask * held.to(mask.dtype)
    return mask - loss_mask, loss_mask


def training_loss(
    method: Unrolled,
    batch: dict[str, torch.Tensor],
    supervised: bool,
    generator: torch.Generator,
    stdev: float = 0.0,
    holdout: float = 0.0,
    keep_center: float = 0.0,
) -> torch.Tensor:
    """The training objective of an unrolled method on one batch (mean over the batch), each
    slice's term divided by s^2 (s = max |A^H y| of its network input), so slices of any
    intensity units weigh alike.

    supervised: sum |x_hat - x|^2 in image space against batch['img'].
    unsupervised: sum |A x_hat - y|^2 on measured k-space only; batch['img'] is never read.
    With holdout > 0 the network sees only part of the measured samples and the loss uses
    the held-out rest (self-supervised data splitting); with 0 it is DeepInPy's loss on all
    measured samples.

    Args:
        batch: 'ksp' (B, C, X, Y) fully sampled (with the data's own noise), 'maps'
            (B, C, X, Y), 'mask' (B, X, Y), 'noise_std' (B,) (NaN: estimated from the network's input) and, for
            supervised training, 'img' (B, X, Y).
        generator: CPU generator for the noise and the split (seeded per step).
        stdev: extra complex k-space noise added before masking (augmentation); the method
            is told the total noise std, sqrt(noise_std^2 + stdev^2).
        holdout: fraction of measured samples held out for the unsupervised loss.
        keep_center: central fraction of k-space (per dimension) never held out.
    """
    ksp, maps, mask = batch["ksp"], batch["maps"], batch["mask"]
    noise_std = batch["noise_std"].to(ksp.real.dtype)
    if stdev > 0:
        ksp = ksp + complex_noise(tuple(ksp.shape), stdev, generator, ksp.dtype).to(ksp.device)
        noise_std = (noise_std**2 + stdev**2).sqrt()
    input_mask, loss_mask = (
        split_mask(mask, holdout, generator, keep_center) if not supervised and holdout > 0 else (mask, mask)
    )
    y_in, op_in = ksp * input_mask.unsqueeze(1), SenseOperator(maps, input_mask)
    weight = data_scale(y_in, op_in).pow(-2)
    x_hat = method(y_in, op_in, resolve_noise_std(y_in, input_mask, noise_std))
    if supervised:
        error = (x_hat - batch["img"]).abs().pow(2).flatten(1).sum(1)
    else:
        residual = SenseOperator(maps, loss_mask).forward(x_hat) - ksp * loss_mask.unsqueeze(1)
        error = residual.abs().pow(2).flatten(1).sum(1)
    return (weight * error).mean()
