"""The diffusion prior's network: a U-Net denoiser conditioned on the noise level, D(v, sigma),
over complex images as 2 channels (real, imaginary) normalised to about [-1, 1] (the
reconstruction divides by s = max |A^H y|, training divides the reference by the same s).

sigma is the noise level of complex Gaussian noise, E|n|^2 = sigma^2 per pixel (physics/noise.py's
convention for k-space), so each real channel has std sigma / sqrt(2). The network is wrapped in
Karras et al. (2022, EDM)'s preconditioning, with sigma_c = sigma / sqrt(2) and SIGMA_DATA:

    D(v, sigma) = c_skip v + c_out F(c_in v, log(sigma) / 4),
    c_skip = SIGMA_DATA^2 / (sigma_c^2 + SIGMA_DATA^2), c_out = sigma_c SIGMA_DATA / sqrt(sigma_c^2 + SIGMA_DATA^2),
    c_in = 1 / sqrt(sigma_c^2 + SIGMA_DATA^2),

so F's input and target have about unit variance at every noise level, and the denoiser tends to
the identity as sigma -> 0 whatever F is. F is nets/unet.py's U-Net with the noise level as a
third input channel (a constant map, as FFDNet's noise-level map). It knows nothing about k-space.
"""

from __future__ import annotations

import math

import torch

from mrirecon.nets import ScoreModel, register_net
from mrirecon.nets.unet import UNet

SIGMA_DATA = 0.5  # EDM's assumed std of a real channel of the (normalised) images


@register_net("diffusion")
class NoiseConditionedUNet(ScoreModel):
    """Noise-conditioned U-Net denoiser (see the module docstring); any image size.

    Args:
        base_channels: channels of the U-Net's first level, doubled at each level down.
        depth: U-Net levels.
        sigma_min: smallest noise level of training and of the sampler's schedule (complex
            std per pixel of the normalised images, > 0).
        sigma_max: largest noise level (> sigma_min).
    """

    def __init__(
        self, base_channels: int = 32, depth: int = 3, sigma_min: float = 0.005, sigma_max: float = 1.0
    ) -> None:
        super().__init__()
        for key, value in (("base_channels", base_channels), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: {value!r} must be an integer >= 1")
        if not 0 < float(sigma_min) < float(sigma_max) < math.inf:
            raise ValueError(
                f"sigma_min, sigma_max: {sigma_min!r}, {sigma_max!r} must satisfy 0 < sigma_min < sigma_max"
            )
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.body = UNet(in_channels=3, base_channels=base_channels, depth=depth, residual=False, out_channels=2)

    def forward(self, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Denoised images (B, 2, H, W) of noisy images v (B, 2, H, W) at complex noise levels sigma (B,)."""
        var = (sigma.to(v.dtype) ** 2 / 2 + SIGMA_DATA**2).reshape(-1, 1, 1, 1)
        c_skip = SIGMA_DATA**2 / var
        c_out = sigma.to(v.dtype).reshape(-1, 1, 1, 1) / math.sqrt(2) * SIGMA_DATA / var.sqrt()
        level = (sigma.to(v.dtype).log() / 4).reshape(-1, 1, 1, 1).expand(-1, 1, *v.shape[-2:])
        return c_skip * v + c_out * self.body(torch.cat([v / var.sqrt(), level], dim=1))
