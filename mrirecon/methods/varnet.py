"""E2E-VarNet (Sriram et al. 2020, arXiv:2004.06688), composed as fastMRI's
fastmri/models/varnet.py composes it (Copyright (c) Facebook, Inc. and its affiliates, MIT
licence; written anew here): coil maps S' from the calibration region by the coil-map network,
then per cascade t, on multi-coil k-space (B, C, X, Y),

    k <- k - eta_t M (k - y) - F S' N_t(S'^H F^H k)

(soft data consistency with a learned weight eta_t, initialised to 1, plus the refinement of a
NormUnet N_t on the image combined with the estimated maps), trained end to end. F is the centred
orthonormal FFT and M the sampling mask (mrirecon.physics). The networks are
mrirecon.nets.varnet's (`model=varnet`); this module holds the physics.

The image compared with mrirecon's reference: by default (`rss: false`) it combines the final
coil images with the data's coil maps S as the SENSE reference itself is made from fully sampled
k-space, S^H F^H k (complex; on data consistent with maps with sum_c |S_c|^2 = 1 its magnitude is
the root sum of squares); `rss: true` gives fastMRI's output, the root sum of squares of F^H k over the coils
(a magnitude image, for magnitude references: the 4/8-bit variants, fastMRI's reconstruction_rss).
The estimated maps S' are used inside the cascades only. As every learned method, the network
sees y / s (s = max |A^H y|) and its image is multiplied by s (`Direct`).
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from mrirecon.methods.base import check_bool, from_channels, register, to_channels
from mrirecon.methods.direct import Direct
from mrirecon.nets.varnet import TINY, VarNetNets
from mrirecon.physics.calibration import calibration_mask
from mrirecon.physics.fft import fft2c, ifft2c
from mrirecon.physics.sense import CoilMaps, SenseOperator


@register("varnet")
class VarNet(Direct):
    """E2E-VarNet on normalised multi-coil k-space (see the module docstring).

    Args:
        net: its networks (`VarNetNets`: the cascades' NormUnets and the coil-map network).
        rss: false: S^H F^H k with the data's maps S (as the reference is made); true: fastMRI's
            root sum of squares of F^H k over the coils (a magnitude image).
    """

    checkpoint_kind = "varnet"

    def __init__(self, net: nn.Module, rss: bool = False) -> None:
        super().__init__(net, residual=False)
        if not isinstance(net, VarNetNets):
            raise ValueError(f"net: E2E-VarNet needs its networks (model=varnet), not {type(net).__name__}")
        self.rss = check_bool("rss", rss)
        self.eta = nn.Parameter(torch.ones(len(net.cascades)))  # fastMRI's dc_weight of each cascade

    @property
    def nets(self) -> VarNetNets:
        return cast(VarNetNets, self.net)

    def _run(self, module: nn.Module, t: torch.Tensor) -> torch.Tensor:
        """module(t) in float32, under bf16 autocast when `amp` is set and t is on a GPU."""
        if self.amp and t.is_cuda:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return cast(torch.Tensor, module(t)).float()
        return cast(torch.Tensor, module(t))

    def coil_maps(self, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Estimated maps S' (B, C, X, Y) complex from the k-space y (B, C, X, Y) inside the
        calibration region of mask (B, X, Y)."""
        coils = ifft2c(y * calibration_mask(mask).unsqueeze(1))
        maps = self._run(self.nets.sensitivity, torch.view_as_real(coils).permute(0, 1, 4, 2, 3))
        return torch.view_as_complex(maps.permute(0, 1, 3, 4, 2).contiguous())

    def cascade(self, t: int, k: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """Cascade t: k - eta_t M (k - y) - F S' N_t(S'^H F^H k); k, y, maps (B, C, X, Y), mask (B, 1, X, Y)."""
        image = (ifft2c(k) * maps.conj()).sum(1)
        refined = from_channels(self._run(self.nets.cascades[t], to_channels(image)))
        return k - self.eta[t] * mask * (k - y) - fft2c(maps * refined.unsqueeze(1))

    def image(self, k: torch.Tensor, op: SenseOperator) -> torch.Tensor:
        """The output image (B, X, Y) complex of the final k-space (see `rss`)."""
        coils = ifft2c(k)
        if self.rss:
            return coils.abs().pow(2).sum(1).clamp_min(TINY**2).sqrt().to(k.dtype)
        return CoilMaps(op.maps).adjoint(coils)

    def map(self, y: torch.Tensor, op: SenseOperator, noise_std: torch.Tensor | None) -> torch.Tensor:
        mask = op.mask.to(y.real.dtype).expand(y.shape[0], 1, *y.shape[-2:])
        maps = self.coil_maps(y, mask[:, 0])
        k = y
        for t in range(len(self.nets.cascades)):
            k = self.cascade(t, k, y, mask, maps)
        return self.image(k, op)
