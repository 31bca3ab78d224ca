"""Preprocessing transforms of one slice: resize, quantise, regenerate k-space (NumPy, cv2).

These reproduce the seed project's dataset variants: resize first (cv2 INTER_AREA for images and
coil maps, INTER_NEAREST for masks), then, at every scale, renormalise the coil maps to
sum_c |S_c|^2 = 1 inside their support and zero the image and maps outside it, then quantise the
magnitude to 2^bits levels in [0, 1], then regenerate k-space from the processed image and maps;
`with_noise` adds complex Gaussian k-space noise to a regenerated slice.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2
import numpy as np

from mrirecon.data.h5 import Slice, region_mask

_AXES = (-2, -1)


def fft2c_numpy(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes (same convention as physics.fft2c)."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=_AXES), norm="ortho"), axes=_AXES)


def ifft2c_numpy(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D inverse FFT over the last two axes (the inverse of fft2c_numpy)."""
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=_AXES), norm="ortho"), axes=_AXES)


def ifft1c_numpy(k: np.ndarray, axis: int) -> np.ndarray:
    """Centred orthonormal 1-D inverse FFT along `axis`."""
    return np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(k, axes=axis), axis=axis, norm="ortho"), axes=axis)


def fft1c_numpy(x: np.ndarray, axis: int) -> np.ndarray:
    """Centred orthonormal 1-D FFT along `axis`."""
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x, axes=axis), axis=axis, norm="ortho"), axes=axis)


def center_crop(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The centre of the last len(shape) axes of `x` (fastMRI's convention: start (n - m) // 2)."""
    index: tuple[Any, ...] = (
        Ellipsis,
        *(slice((n - m) // 2, (n - m) // 2 + m) for n, m in zip(x.shape[-len(shape) :], shape)),
    )
    return x[index]


def resized_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """rint(shape * scale), e.g. (320, 256) x 0.25 -> (80, 64)."""
    return int(np.rint(shape[0] * scale)), int(np.rint(shape[1] * scale))


def _resize_real(a: np.ndarray, shape: tuple[int, int], interpolation: int) -> np.ndarray:
    """Resize a real (X, Y) or channels-first (C, X, Y) float32 array to (..., *shape), one
    channel at a time (cv2 handles at most 4 channels at some scales)."""
    dsize = (shape[1], shape[0])  # cv2 wants (width, height) = (Y, X)
    if a.ndim == 2:
        return cv2.resize(np.ascontiguousarray(a), dsize, interpolation=interpolation)
    return np.stack([cv2.resize(np.ascontiguousarray(c), dsize, interpolation=interpolation) for c in a])


def resize_complex(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """INTER_AREA resize of real and imaginary parts separately; (..., X, Y) complex64."""
    re = _resize_real(np.ascontiguousarray(a.real, dtype=np.float32), shape, cv2.INTER_AREA)
    im = _resize_real(np.ascontiguousarray(a.imag, dtype=np.float32), shape, cv2.INTER_AREA)
    return (re + 1j * im).astype(np.complex64)


def resize_magnitude(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """INTER_AREA resize of |img|; (X, Y) float32."""
    return _resize_real(np.abs(img).astype(np.float32), shape, cv2.INTER_AREA)


def resize_maps(maps: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coil maps (C, *shape) complex64, resized when `shape` differs from theirs, renormalised to
    sum_c |S_c|^2 = 1 inside their support and zero outside, and that support (*shape) bool.

    The support is where the original maps are non-zero, resized with INTER_AREA and kept where
    it covers at least half a pixel. Area averaging of real and imaginary parts lowers
    sum_c |S_c|^2 where the phase varies (to about 0.5 on real ESPIRiT maps), so without the
    renormalisation A^H A would no longer be the identity at full sampling.
    """
    support = (np.abs(maps) ** 2).sum(0) > 0
    resized = maps
    if tuple(shape) != tuple(maps.shape[-2:]):
        support = _resize_real(support.astype(np.float32), shape, cv2.INTER_AREA) >= 0.5
        resized = resize_complex(maps, shape)
    power = np.sqrt((np.abs(resized) ** 2).sum(0))
    support &= power > 0
    normalised = np.where(support, resized / np.where(support, power, 1.0), 0)
    return normalised.astype(np.complex64), support


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """INTER_NEAREST resize, so the mask stays binary; (X, Y) float32."""
    return _resize_real(mask.astype(np.float32), shape, cv2.INTER_NEAREST)


def quantize(magnitude: np.ndarray, bits: int, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Min-max normalise to integers 0 .. 2^bits - 1 (rounded), divided by 2^bits - 1.

    `lo` and `hi` (default: the magnitude's own min and max) set the range, so that a second
    image (the `rss` reference) can be put in the same units; values outside it are clipped.
    Returns a float32 image in [0, 1] with 2^bits levels (all zeros for a constant image).
    """
    levels = 2**bits - 1
    lo = float(magnitude.min()) if lo is None else lo
    hi = float(magnitude.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros_like(magnitude, dtype=np.float32)
    return (np.clip(np.rint((magnitude - lo) / (hi - lo) * levels), 0, levels) / levels).astype(np.float32)


def scale_region(
    acquired: tuple[int, int, int, int], old: tuple[int, ...], new: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """An acquired region (x0, x1, y0, y1) of an `old` (X, Y) grid on the resized `new` grid
    (edges rounded, at least one row and column)."""
    x0, x1, y0, y1 = (int(np.rint(v * new[k // 2] / old[k // 2])) for k, v in enumerate(acquired))
    return x0, max(x1, x0 + 1), y0, max(y1, y0 + 1)


def make_variant(s: Slice, bits: int | None, scale: float) -> Slice:
    """The dataset variant of one slice, noiseless (see `with_noise`; noise_std is None).

    `bits` None and `scale` 1 return the slice untouched (acquired k-space stays as acquired).
    Otherwise the image and maps are resized (when scale < 1), the maps renormalised and the
    image zeroed outside the maps' support (at every scale), the magnitude quantised when `bits`
    is set (the phase is then dropped; `rss` is put in the same units), the mask kept zero
    outside the acquired region, and k-space regenerated as fft2c(maps * img).
    """
    if bits is None and scale == 1:
        return s
    shape = resized_shape(s.img.shape, scale) if scale != 1 else tuple(s.img.shape)
    resize = scale != 1
    maps, support = resize_maps(s.maps, shape)
    mask = resize_mask(s.mask, shape) if resize else s.mask
    acquired = None if s.acquired is None else scale_region(s.acquired, s.img.shape, shape)
    if acquired is not None:
        mask = mask * region_mask(acquired, shape)
    rss = None if s.rss is None else (resize_magnitude(s.rss, shape) if resize else s.rss)
    if bits is None:
        img = resize_complex(s.img, shape) if resize else s.img
        img = np.where(support, img, 0)
    else:
        magnitude = resize_magnitude(s.img, shape) if resize else np.abs(s.img).astype(np.float32)
        magnitude = np.where(support, magnitude, 0)
        lo, hi = float(magnitude.min()), float(magnitude.max())
        img = quantize(magnitude, bits)
        rss = None if rss is None else quantize(rss, bits, lo, hi)
    img = img.astype(np.complex64)
    ksp = fft2c_numpy(maps * img[None]).astype(np.complex64)
    return Slice(
        img=img,
        maps=maps,
        ksp=ksp,
        mask=mask.astype(np.float32),
        rss=rss,
        acquired=acquired,
    )


def with_noise(s: Slice, std: float, rng: np.random.Generator) -> Slice:
    """The slice with complex Gaussian noise of E|n|^2 = std^2 added to every k-space sample
    (before masking, as in an acquisition); its noise_std becomes `std`."""
    noise = rng.standard_normal((2, *s.ksp.shape), dtype=np.float32)
    ksp = s.ksp + (std / np.sqrt(2)) * (noise[0] + 1j * noise[1])
    return dataclasses.replace(s, ksp=ksp.astype(np.complex64), noise_std=float(std))
