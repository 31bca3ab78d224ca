"""The SENSE model's operators: coil maps S, the sampling mask M, and SENSE A = M F S fused.

Shapes: image x (B, X, Y) complex; coil maps (B, C, X, Y) complex; mask (B, X, Y) or (X, Y)
real {0, 1}; k-space y (B, C, X, Y) complex, centred. Everything stays on the maps' device.
`SenseOperator` equals ``Mask(mask) @ FFT() @ CoilMaps(maps)`` but runs faster: for even X and
Y the FFT shifts are folded into its stored maps and mask (checkerboard identity in
`physics.fft`), so every application runs plain FFTs and no copies for shifts, and its normal
operator A^H A forms k-space once.
"""

from __future__ import annotations

import torch

from mrirecon.physics.fft import (
    centring_sign,
    checkerboard,
    fft2c,
    folds_into_checkerboard,
    ifft2c,
)
from mrirecon.physics.operator import LinearOperator


def _check_maps(maps: torch.Tensor) -> None:
    if maps.ndim != 4 or not maps.is_complex():
        raise ValueError(f"maps must be complex (B, C, X, Y), got {tuple(maps.shape)} {maps.dtype}")


class CoilMaps(LinearOperator):
    """S: image (B, X, Y) -> coil images S_c x (B, C, X, Y); S^H: sum_c conj(S_c) y_c.

    Args:
        maps: coil sensitivities, (B, C, X, Y) complex.
    """

    def __init__(self, maps: torch.Tensor) -> None:
        _check_maps(maps)
        self.maps = maps
        self._maps_conj = maps.conj().resolve_conj()  # materialised: lazy conj is slow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps * x.unsqueeze(1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """sum_c conj(S_c) y_c: (B, C, X, Y) -> (B, X, Y). A loop of fused multiply-adds over
        coils is about 1.5x faster on CPU than multiply-then-sum."""
        out = y[:, 0] * self._maps_conj[:, 0]
        for c in range(1, y.shape[1]):
            out = out.addcmul_(y[:, c], self._maps_conj[:, c])
        return out

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.maps.abs().pow(2).sum(1)


class Mask(LinearOperator):
    """M: k-space (B, C, X, Y) times the sampling mask (B, X, Y) or (X, Y) of every coil;
    self-adjoint (a real mask)."""

    def __init__(self, mask: torch.Tensor) -> None:
        if mask.ndim not in (2, 3) or mask.is_complex():
            raise ValueError(f"mask must be real (B, X, Y) or (X, Y), got {tuple(mask.shape)} {mask.dtype}")
        self.mask = (mask if mask.ndim == 3 else mask.unsqueeze(0)).unsqueeze(1)  # (B or 1, 1, X, Y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.mask


class SenseOperator(LinearOperator):
    """Multi-coil Cartesian SENSE operator with a sampling mask, A = M F S.

    Args:
        maps: coil sensitivities, (B, C, X, Y) complex.
        mask: sampling pattern, (B, X, Y) or (X, Y), real with values in {0, 1}.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor) -> None:
        _check_maps(maps)
        shape = (int(maps.shape[-2]), int(maps.shape[-1]))
        if tuple(mask.shape[-2:]) != shape:
            raise ValueError(f"mask {tuple(mask.shape)} does not match maps {tuple(maps.shape)}")
        mask = mask.to(device=maps.device, dtype=maps.real.dtype)
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        self.mask = mask.unsqueeze(1)  # (B or 1, 1, X, Y): the plain {0,1} mask, A^H A uses it
        self.folded = folds_into_checkerboard(shape)
        if self.folded:
            c = checkerboard(shape, device=maps.device).to(maps.real.dtype)
            self._coils = CoilMaps(maps * c)
            self._signed_mask = self.mask * (c * centring_sign(shape))
        else:
            self._coils = CoilMaps(maps)
            self._signed_mask = self.mask

    @property
    def maps(self) -> torch.Tensor:
        """The coil maps as given (checkerboard removed), (B, C, X, Y)."""
        maps = self._coils.maps
        if not self.folded:
            return maps
        return maps * checkerboard((int(maps.shape[-2]), int(maps.shape[-1])), maps.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A x: image (B, X, Y) -> masked centred k-space (B, C, X, Y)."""
        coil_images = self._coils.forward(x)
        if self.folded:
            return torch.fft.fft2(coil_images, norm="ortho").mul_(self._signed_mask)
        return fft2c(coil_images).mul_(self.mask)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """A^H y: centred k-space (B, C, X, Y) -> image (B, X, Y)."""
        if self.folded:
            coil_images = torch.fft.ifft2(y * self._signed_mask, norm="ortho")
        else:
            coil_images = ifft2c(y * self.mask)
        return self._coils.adjoint(coil_images)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """A^H A x: image (B, X, Y) -> image (B, X, Y), without forming k-space twice."""
        coil_images = self._coils.forward(x)
        if self.folded:
            k = torch.fft.fft2(coil_images, norm="ortho").mul_(self.mask)
            coil_images = torch.fft.ifft2(k, norm="ortho")
        else:
            coil_images = ifft2c(fft2c(coil_images).mul_(self.mask))
        return self._coils.adjoint(coil_images)
