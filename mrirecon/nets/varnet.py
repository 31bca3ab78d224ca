"""The networks of the end-to-end variational network (E2E-VarNet; Sriram et al. 2020, "End-to-End
Variational Networks for Accelerated MRI Reconstruction", MICCAI, arXiv:2004.06688), as fastMRI's
fastmri/models/varnet.py has them (Copyright (c) Facebook, Inc. and its affiliates, MIT licence;
github.com/facebookresearch/fastMRI, commit 91f2df4; written anew here around mrirecon's copy of
fastMRI's U-Net, nets/fastmri_unet.py):

- `NormUnet`: the U-Net on one complex image whose real and imaginary channels are each
  normalised to zero mean and unit standard deviation (per image) and zero-padded, centred, to a
  multiple of 16 before it, and mapped back after it;
- `SensitivityNet`: a NormUnet applied to each coil image alone, the outputs divided by their
  root sum of squares over the coils;
- `VarNetNets` (`model=varnet`): the cascades' NormUnets and the SensitivityNet, composed with
  k-space by the method (mrirecon/methods/varnet.py). They know nothing about k-space.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mrirecon.nets import NetworkSet, register_net
from mrirecon.nets.fastmri_unet import FastMRIUNet

PAD_MULTIPLE = 16  # fastMRI's NormUnet pads to a multiple of 16 (centred)
TINY = 1e-12  # floor of the standard deviation and of the root sum of squares (fastMRI has none)


def _centred_pad(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """x (B, C, H, W) zero-padded, centred (floor before, ceil after), to multiples of 16; and the pads."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return F.pad(x, pads), pads


class NormUnet(nn.Module):
    """fastMRI's NormUnet: (B, 2, H, W) real (the real and imaginary parts of one complex image) ->
    (B, 2, H, W), any H and W.

    Args:
        chans: channels of the U-Net's first level (fastMRI's cascades: 18; its coil-map network: 8).
        num_pools: pooling levels (fastMRI: 4).
    """

    def __init__(self, chans: int, num_pools: int) -> None:
        super().__init__()
        self.unet = FastMRIUNet(in_channels=2, out_channels=2, chans=chans, num_pools=num_pools, drop_prob=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 2:
            raise ValueError(f"x: (B, 2, H, W) expected, got {tuple(x.shape)}")
        flat = x.flatten(2)
        mean = flat.mean(2).view(-1, 2, 1, 1)
        std = flat.std(2).clamp_min(TINY).view(-1, 2, 1, 1)
        padded, (left, right, top, bottom) = _centred_pad((x - mean) / std)
        out = self.unet(padded)
        out = out[..., top : out.shape[-2] - bottom, left : out.shape[-1] - right]
        return out * std + mean


class SensitivityNet(nn.Module):
    """fastMRI's SensitivityModel without its k-space part: coil images (B, C, 2, H, W) real (the
    calibration region's, made by the method) -> maps (B, C, 2, H, W), each coil through one
    NormUnet alone, then divided by the root sum of squares over the C coils.

    Args:
        chans: channels of the NormUnet's first level (fastMRI: 8).
        num_pools: its pooling levels (fastMRI: 4).
    """

    def __init__(self, chans: int, num_pools: int) -> None:
        super().__init__()
        self.norm_unet = NormUnet(chans, num_pools)

    def forward(self, coils: torch.Tensor) -> torch.Tensor:
        if coils.ndim != 5 or coils.shape[2] != 2:
            raise ValueError(f"coils: (B, C, 2, H, W) expected, got {tuple(coils.shape)}")
        b, c = int(coils.shape[0]), int(coils.shape[1])
        maps = self.norm_unet(coils.flatten(0, 1)).view(b, c, *coils.shape[2:])
        rss = maps.pow(2).sum(dim=(1, 2), keepdim=True).sqrt().clamp_min(TINY)
        return maps / rss


@register_net("varnet")
class VarNetNets(NetworkSet):
    """The networks of E2E-VarNet: `cascades` (num_cascades NormUnets, one per cascade, weights not
    shared) and `sensitivity` (the coil-map network). Defaults: fastMRI's VarNet.

    Args:
        num_cascades: cascades (fastMRI: 12).
        chans: channels of each cascade's U-Net at its first level (fastMRI: 18).
        num_pools: pooling levels of each cascade's U-Net (fastMRI: 4).
        sens_chans: channels of the coil-map U-Net (fastMRI: 8).
        sens_pools: pooling levels of the coil-map U-Net (fastMRI: 4).
    """

    def __init__(
        self, num_cascades: int = 12, chans: int = 18, num_pools: int = 4, sens_chans: int = 8, sens_pools: int = 4
    ) -> None:
        super().__init__()
        for key, value in (("num_cascades", num_cascades), ("sens_chans", sens_chans), ("sens_pools", sens_pools)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}: {value!r} must be an integer >= 1")
        self.cascades = nn.ModuleList(NormUnet(chans, num_pools) for _ in range(num_cascades))
        self.sensitivity = SensitivityNet(sens_chans, sens_pools)
