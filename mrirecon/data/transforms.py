"""Preprocessing transforms of one slice: resize, quantise, regenerate k-space (NumPy, cv2).

These reproduce the seed project's dataset variants (DESIGN.md): resize first (cv2
INTER_AREA for images and coil maps, INTER_NEAREST for masks), then quantise the magnitude to
2^bits levels in [0, 1], then regenerate k-space from the processed image and maps.
"""

from __future__ import annotations

import cv2
import numpy as np

from mrirecon.data.h5 import Slice

_AXES = (-2, -1)


def fft2c_numpy(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes (same convention as physics.fft2c)."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=_AXES), norm="ortho"), axes=_AXES)


def resized_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """rint(shape * scale), e.g. (320, 256) x 0.25 -> (80, 64)."""
    return int(np.rint(shape[0] * scale)), int(np.rint(shape[1] * scale))


def _resize_real(a: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    """Resize a real (X, Y) or channels-first (C, X, Y) float32 array to (..., *shape)."""
    dsize = (shape[1], shape[0])  # cv2 wants (width, height) = (Y, X)
    if a.ndim == 2:
        return cv2.resize(a, dsize, interpolation=interpolation)
    out = cv2.resize(np.ascontiguousarray(a.transpose(1, 2, 0)), dsize, interpolation=interpolation)
    return np.ascontiguousarray(out.reshape(shape[0], shape[1], -1).transpose(2, 0, 1))


def resize_complex(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """INTER_AREA resize of real and imaginary parts separately; (..., X, Y) complex64."""
    re = _resize_real(np.ascontiguousarray(a.real, dtype=np.float32), shape, cv2.INTER_AREA)
    im = _resize_real(np.ascontiguousarray(a.imag, dtype=np.float32), shape, cv2.INTER_AREA)
    return (re + 1j * im).astype(np.complex64)


def resize_magnitude(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """INTER_AREA resize of |img|; (X, Y) float32."""
    return _resize_real(np.abs(img).astype(np.float32), shape, cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """INTER_NEAREST resize, so the mask stays binary; (X, Y) float32."""
    return _resize_real(mask.astype(np.float32), shape, cv2.INTER_NEAREST)


def quantize(magnitude: np.ndarray, bits: int) -> np.ndarray:
    """Min-max normalise to integers 0 .. 2^bits - 1 (rounded), divided by 2^bits - 1.

    Returns a float32 image in [0, 1] with 2^bits levels (all zeros for a constant image).
    """
    levels = 2**bits - 1
    lo, hi = float(magnitude.min()), float(magnitude.max())
    if hi <= lo:
        return np.zeros_like(magnitude, dtype=np.float32)
    return (np.rint((magnitude - lo) / (hi - lo) * levels) / levels).astype(np.float32)


def make_variant(s: Slice, bits: int | None, scale: float) -> Slice:
    """The dataset variant of one slice.

    `bits` None and `scale` 1 return the slice untouched (acquired k-space stays as acquired).
    Otherwise the image and maps are resized, the magnitude quantised when `bits` is set (the
    phase is then dropped), and k-space regenerated as fft2c(maps * img).
    """
    if bits is None and scale == 1:
        return s
    shape = resized_shape(s.img.shape, scale) if scale != 1 else s.img.shape
    if scale != 1:
        maps = resize_complex(s.maps, shape)
        mask = resize_mask(s.mask, shape)
        img = resize_magnitude(s.img, shape) if bits is not None else resize_complex(s.img, shape)
    else:
        maps, mask = s.maps, s.mask
        img = np.abs(s.img).astype(np.float32) if bits is not None else s.img
    if bits is not None:
        img = quantize(img, bits)
    img = img.astype(np.complex64)
    ksp = fft2c_numpy(maps * img[None]).astype(np.complex64)
    return Slice(img=img, maps=maps.astype(np.complex64), ksp=ksp, mask=mask.astype(np.float32))
