"""The inverse problem with a normalizing-flow prior: x = s G(z), G the flow's inverse, and

    min_z ||A G(z) - y / s||^2 / sigma^2 + lam R(z) + beta (-log p(G(z)))

with Adam on z, batched over slices (each slice's objective is independent). s = max |A^H y|
maps the measured data to the flow's [0, 1] intensities (never the reference), and sigma is the
slice's noise std over s. With complex Gaussian noise of E|n|^2 = sigma^2 per measured sample
(physics/noise.py), -log p(y | x) = ||A x - y||^2 / sigma^2 + C M log(pi sigma^2): the data term
is this negative log-likelihood in nats without its constant, so lam and beta weigh the priors
against it whatever the noise level. R(z) = ||z||_1 (z_norm=l1, the write-up) or ||z||_2^2
(z_norm=l2, what the original code did). -log p is the flow's density of the image in its own
space (an affine map of the intensities, so the mode is the same in either): log p(G(z)) =
log N(z) - log|det dG/dz|, so one pass through the flow gives both the image and its density.
beta = 1 with lam = 0 is the maximum a posteriori image under this noise model and the flow's
density as the prior (of images normalised by s); beta < 1 tempers the prior, and lam R(z) is
an extra penalty with no probabilistic reading.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from mrirecon.methods.base import Method, check_nonnegative, check_positive_int, data_scale, known_noise_std, register
from mrirecon.nets.flow import ImageFlow, from_flow_space, to_flow_space
from mrirecon.physics.sense import SenseOperator

log = logging.getLogger(__name__)
Z_INITS = ("zeros", "random", "forward")
MIN_NOISE = 1e-3  # floor of sigma / s in the data term (noiseless simulations)
Z_NORMS = ("l1", "l2")


class FlowPrior(Method):
    """Reconstruction with a trained flow prior (see the module docstring).

    Args:
        flow: the trained flow over (1, X, Y) images.
        bits: bit depth of the flow's training images (sets the map from flow space to
            intensities in [0, 1]).
        lam: weight of R(z) (>= 0), against the data term (the negative log-likelihood in nats).
        beta: weight of -log p(x) in nats (>= 0); beta = 1 with lam = 0 is the maximum a
            posteriori image (the module docstring).
        lr: Adam step size on z.
        iterations: Adam steps (>= 1).
        z_init: zeros | random (z ~ N(0, I), one seeded draw) | forward (the flow's forward
            map of the zero-filled magnitude, clipped to [0, 1]).
        z_norm: l1 | l2.
        samples: restarts (>= 1). K > 1 (needs z_init=random): K solves from the seeded latents
            z ~ N(0, I) of seeds 0..K-1 (restart 0 is samples=1's start); the reconstruction is
            their mean and `reconstruct_with_std` also gives their per-pixel std about it.
    """

    checkpoint_kind = "flow"

    def __init__(
        self,
        flow: ImageFlow,
        bits: int,
        lam: float = 0.0,
        beta: float = 0.0,
        lr: float = 0.05,
        iterations: int = 100,
        z_init: str = "forward",
        z_norm: str = "l1",
        samples: int = 1,
    ) -> None:
        self.flow = flow.eval().requires_grad_(False)
        self.bits = int(bits)
        self.lam = check_nonnegative("lam", lam)
        self.beta = check_nonnegative("beta", beta)
        if not check_nonnegative("lr", lr) > 0:
            raise ValueError(f"lr: {lr!r} must be > 0")
        self.lr = float(lr)
        self.iterations = check_positive_int("iterations", iterations)
        if z_init not in Z_INITS:
            raise ValueError(f"z_init: unknown '{z_init}' (expected one of {', '.join(Z_INITS)})")
        if z_norm not in Z_NORMS:
            raise ValueError(f"z_norm: unknown '{z_norm}' (expected one of {', '.join(Z_NORMS)})")
        self.z_init, self.z_norm = z_init, z_norm
        self.samples = check_positive_int("samples", samples)
        if self.samples > 1 and z_init != "random":
            raise ValueError(
                f"samples: {samples} restarts start from random latents, and z_init is '{z_init}' "
                "(set z_init=random, or samples=1)"
            )

    def image(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, D) -> real image x (B, X, Y) in the data's intensity range, and -log p(x) (B,)
        in nats (density of the flow's space)."""
        v, logdet = self.flow.decode(z)
        neg_log_p = -(self.flow.base_log_prob(z) - logdet)
        return from_flow_space(v[:, 0], self.bits), neg_log_p

    def objective(
        self, z: torch.Tensor, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-slice objective (B,) at z (B, D) for normalised k-space y (B, C, X, Y) with noise
        std (B,) in the same units, and x (B, X, Y)."""
        x, neg_log_p = self.image(z)
        residual = (op.forward(x.to(y.dtype)) - y).abs().pow(2).flatten(1).sum(1)
        loss = residual / noise_std.clamp_min(MIN_NOISE) ** 2  # -log p(y | x) in nats, constant dropped
        if self.lam > 0:
            loss = loss + self.lam * (z.abs().sum(1) if self.z_norm == "l1" else z.pow(2).sum(1))
        if self.beta > 0:
            loss = loss + self.beta * neg_log_p
        return loss, x

    def initial_z(self, y: torch.Tensor, op: SenseOperator, restart: int = 0) -> torch.Tensor:
        """The starting latents (B, D) per `z_init` (random: the draw of seed `restart`)."""
        batch, device = y.shape[0], y.device
        if self.z_init == "zeros":
            return torch.zeros(batch, self.flow.dim, device=device)
        if self.z_init == "random":  # one seeded draw for every slice: results do not depend on the batch
            draw = torch.randn(self.flow.dim, generator=torch.Generator().manual_seed(restart))
            return draw.expand(batch, -1).to(device)
        magnitude = op.adjoint(y).abs().clamp(0, 1)
        z, _ = self.flow.encode(to_flow_space(magnitude, self.bits)[:, None])
        return z

    def reconstruct(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None) -> torch.Tensor:
        """y (B, C, X, Y) -> x_hat (B, X, Y) complex (real-valued): the iterate with the lowest
        objective of each slice (samples > 1: the mean over the restarts of theirs)."""
        return self.reconstruct_with_std(y, op, noise_std)[0]

    def reconstruct_with_std(
        self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x_hat, std): with samples = K > 1 the mean (B, X, Y) of the K restarts' images and
        their per-pixel std about it sqrt(mean_k |x_k - x_hat|^2) (B, X, Y); with K = 1 the one
        image and None."""
        shape = tuple(y.shape[-2:])
        if (1, *shape) != tuple(self.flow.shape):
            _c, h, w = self.flow.shape
            raise ValueError(f"y: the flow was trained on {h}x{w} images, the data are {shape[0]}x{shape[1]}")
        scale = data_scale(y, op)
        sigma = known_noise_std(noise_std, self.name) / scale
        normalised = y / scale.reshape(-1, 1, 1, 1).to(y.dtype)
        draws = torch.stack([self.solve(normalised, op, sigma, k) for k in range(self.samples)])
        draws = draws * scale.reshape(1, -1, 1, 1).to(draws.dtype)
        if self.samples == 1:
            return draws[0], None
        mean = draws.mean(0)
        return mean, (draws - mean).abs().pow(2).mean(0).sqrt()

    def solve(self, y: torch.Tensor, op: SenseOperator, sigma: torch.Tensor, restart: int = 0) -> torch.Tensor:
        """The optimisation over z for normalised data y with noise std sigma (B,), from the
        start of `restart`."""
        with torch.enable_grad():
            z = self.initial_z(y, op, restart).detach().clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=self.lr)
            best_loss = torch.full((y.shape[0],), float("inf"), device=y.device)
            best_z = z.detach().clone()
            for _ in range(self.iterations):
                optimizer.zero_grad(set_to_none=True)
                loss, _ = self.objective(z, y, op, sigma)
                better = loss.detach() < best_loss
                best_loss = torch.where(better, loss.detach(), best_loss)
                best_z[better] = z.detach()[better]
                loss.sum().backward()
                optimizer.step()
        with torch.no_grad():
            loss, x = self.objective(z, y, op, sigma)
            better = loss < best_loss
            best_z[better] = z.detach()[better]
            x, _ = self.image(best_z)
        return x.to(y.dtype)


@register("flow_l1")
class FlowL1(FlowPrior):
    """min ||A G(z) - y||^2 / sigma^2 + lam R(z) (beta = 0)."""

    def __init__(self, flow: ImageFlow, bits: int, lam: float = 1.0, **kwargs: Any) -> None:
        _refuse_fixed(kwargs, "beta", "flow_l1")
        super().__init__(flow, bits, lam=lam, beta=0.0, **kwargs)


@register("flow_logprob")
class FlowLogProb(FlowPrior):
    """min ||A G(z) - y||^2 / sigma^2 + beta (-log p(G(z))) (lam = 0)."""

    def __init__(self, flow: ImageFlow, bits: int, beta: float = 0.6, **kwargs: Any) -> None:
        _refuse_fixed(kwargs, "lam", "flow_logprob")
        super().__init__(flow, bits, lam=0.0, beta=beta, **kwargs)


def _refuse_fixed(kwargs: dict[str, Any], name: str, method: str) -> None:
    """ValueError when `name`, which `method` fixes at 0, is given."""
    if name in kwargs:
        raise ValueError(f"{name}: {method} fixes it at 0; use flow_combined to set both lam and beta")


@register("flow_combined")
class FlowCombined(FlowPrior):
    """min ||A G(z) - y||^2 / sigma^2 + lam R(z) + beta (-log p(G(z)))."""
