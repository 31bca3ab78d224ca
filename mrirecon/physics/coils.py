"""Coil sensitivities and virtual coils: batched ESPIRiT maps and SVD coil compression (torch).

ESPIRiT (Uecker et al. 2014), one set of maps, as sigpy's `EspiritCalib` defines it: the
calibration matrix of the k x k blocks of the centred `calib_width`^2 region, its right singular
vectors above `thresh` times the largest singular value (the kernels), the image-domain matrix
G(r) = N / k^2 sum_j v_j(r) v_j(r)^H of the kernels v_j zero-padded to the image size and
inverse-FFT'd, and per pixel r the eigenvector of G(r) with the largest eigenvalue, its phase
taken relative to coil 0 and zeroed where that eigenvalue is <= `crop`.

How it is fast (sigpy inverse-FFTs every kernel at full size and runs 100 power iterations at
every pixel):
- G exactly, cheaply: each entry of G(r) is a trigonometric polynomial with (2k - 1)^2
  coefficients (products of two k x k kernels); the coefficients come from correlating the
  kernels on a tiny grid, and G is evaluated on any grid by two small matrix products.
- The top eigenvectors: exact (`torch.linalg.eigh`) on a coarse grid (every `coarse_step`-th
  pixel), interpolated to full size as the start of `power_iterations` power iterations at
  full size; pixels whose relative eigen-residual ||G x - rho x|| / rho is still above `tol`
  (near-degenerate eigenvalues, a few per cent of the pixels) get the exact eigenvector. The
  result is within `tol` of an eigenpair everywhere, closer to the exact eigenvectors than
  sigpy's 100 power iterations (scripts/bench_preprocess.py --espirit measures both).
Everything is batched torch, on the CPU or a GPU. The per-pixel Gram matrices (C^2 per pixel)
are made GRAM_BYTES at a time, a chunk of rows each, so memory grows linearly with the coils.

Coil compression (BART's `cc -S`): the left singular vectors of the calibration data (C x
samples) give C orthonormal virtual coils ordered by energy; keeping the first N maps k-space
y (C, ...) to U_N^H y (N, ...). White noise stays white with the same variance.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GRAM_BYTES = 2**25  # per-pixel Gram matrices held at once by the eigensolver (32 MB)


def calibration_region(ksp: torch.Tensor, width: int) -> torch.Tensor:
    """The centred width x width block of k-space (..., C, X, Y) (sigpy's placement: start
    X // 2 - width // 2), clipped to the image size."""
    x, y = ksp.shape[-2:]
    wx, wy = min(width, x), min(width, y)
    sx, sy = x // 2 - wx // 2, y // 2 - wy // 2
    return ksp[..., sx : sx + wx, sy : sy + wy]


def espirit_kernels(calib: torch.Tensor, kernel_width: int, thresh: float) -> torch.Tensor:
    """ESPIRiT kernels of one slice: the right singular vectors of the calibration matrix above
    thresh * the largest singular value, (J, C, k, k).

    Args:
        calib: calibration k-space (C, W, W), complex.
        kernel_width: k, the kernel size (sigpy's default 6).
        thresh: relative singular-value threshold.
    """
    c, wx, wy = calib.shape
    k = kernel_width
    if wx < k or wy < k:
        raise ValueError(f"kernel_width {k} exceeds the calibration region {wx}x{wy}")
    blocks = calib.unfold(1, k, 1).unfold(2, k, 1)  # (C, nx, ny, k, k)
    mat = blocks.permute(1, 2, 0, 3, 4).reshape(-1, c * k * k)  # rows: blocks; columns: (coil, kx, ky)
    _, s, vh = torch.linalg.svd(mat, full_matrices=False)
    return vh[s > thresh * s.max()].reshape(-1, c, k, k)


def gram_coefficients(kernels: torch.Tensor) -> torch.Tensor:
    """Fourier coefficients g_cd(m), m in [-(k-1), k-1]^2, of sum_j P_jc(r) conj(P_jd(r)), P_jc
    the trigonometric polynomial with the coefficients of kernel (j, c): (C, C, 2k-1, 2k-1),
    index k - 1 + m. A correlation computed by FFTs on a (2k)^2 grid (no wrap-around)."""
    k = int(kernels.shape[-1])
    spectra = torch.fft.fft2(kernels, s=(2 * k, 2 * k))  # (J, C, 2k, 2k)
    cross = torch.einsum("jcxy,jdxy->cdxy", spectra, spectra.conj())
    corr = torch.fft.ifft2(cross)  # corr[m] = sum_j sum_u K_jc(u) conj(K_jd(u - m)), m mod 2k
    idx = torch.arange(-(k - 1), k, device=kernels.device) % (2 * k)
    return corr[:, :, idx][:, :, :, idx]


def gram_on_grid(coef: torch.Tensor, shape: tuple[int, int], rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """sigpy's AHA(r) = N / k^2 sum_j v_j(r) v_j(r)^H at the centred positions r = (rows x cols)
    (pixel index minus size // 2; fractional positions allowed) of an image of `shape`:
    (len(rows), len(cols), C, C) complex64. `coef` from `gram_coefficients`."""
    c, _, m, _ = coef.shape
    k = (m + 1) // 2
    freq = torch.arange(-(k - 1), k, device=coef.device, dtype=torch.float64)
    ex = torch.exp(2j * math.pi * rows.to(coef.device, torch.float64)[:, None] * freq[None] / shape[0])
    ey = torch.exp(2j * math.pi * cols.to(coef.device, torch.float64)[:, None] * freq[None] / shape[1])
    flat = coef.permute(2, 3, 0, 1).reshape(m, m, c * c).to(torch.complex64) / k**2
    half = torch.einsum("xa,abe->xbe", ex.to(torch.complex64), flat)  # (nx, m, C*C)
    gram = torch.matmul(ey.to(torch.complex64).unsqueeze(0), half)  # (nx, ny, C*C)
    return gram.reshape(len(rows), len(cols), c, c)


def _centred(n: int, step: int = 1, device: torch.device | None = None) -> torch.Tensor:
    """Centred positions of every step-th pixel of n (block centres), as float64."""
    count = math.ceil(n / step)
    return torch.arange(count, device=device, dtype=torch.float64) * step + (step - 1) / 2 - n // 2


def _row_chunks(rows: int, cols: int, coils: int) -> list[slice]:
    """Slices of `rows` whose per-pixel Gram matrices (cols x coils^2 complex64 per row) fit in
    GRAM_BYTES: the eigensolver holds one chunk at a time, so its memory grows linearly with the
    coils (the maps), not with their square."""
    step = max(1, GRAM_BYTES // (cols * coils * coils * 8))
    return [slice(i, min(i + step, rows)) for i in range(0, rows, step)]


def _coarse_start(coef: torch.Tensor, shape: tuple[int, int], step: int) -> torch.Tensor:
    """Exact top eigenvectors on a grid of every step-th pixel, interpolated (bilinear) to the
    full grid: (X * Y, C) complex64, unnormalised. Phases are aligned to the slice's dominant
    direction first (a smooth reference, unlike a single coil that may vanish)."""
    device = coef.device
    c = int(coef.shape[0])
    rows, cols = _centred(shape[0], step, device), _centred(shape[1], step, device)
    vec = torch.cat(
        [
            torch.linalg.eigh(gram_on_grid(coef, shape, rows[part], cols))[1][..., -1]
            for part in _row_chunks(len(rows), len(cols), c)
        ]
    )  # (nx, ny, C)
    nx, ny, c = vec.shape
    flat = vec.reshape(-1, c)
    body = torch.linalg.eigh(flat.T @ flat.conj())[1][:, -1]
    proj = (vec * body.conj()).sum(-1, keepdim=True)
    vec = vec * (proj.conj() / proj.abs().clamp_min(1e-30))
    planes = torch.view_as_real(vec).permute(2, 3, 0, 1).reshape(1, 2 * c, nx, ny)
    full = F.interpolate(planes, size=(nx * step, ny * step), mode="bilinear", align_corners=False)
    full = full[0, :, : shape[0], : shape[1]].reshape(c, 2, -1).permute(2, 0, 1).contiguous()
    return torch.view_as_complex(full)


def _refine(gram: torch.Tensor, x: torch.Tensor, iterations: int, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Power iterations from x (P, C, 1) with the Gram matrices (P, C, C), exact eigenpairs
    where the relative residual stays above `tol`: (vectors (P, C), eigenvalues (P,))."""
    for _ in range(iterations):  # eigenvalues are O(1): normalising at the end is enough
        x = torch.bmm(gram, x)
    x = x / torch.view_as_real(x).pow(2).sum((1, 2, 3), keepdim=True)[..., 0].sqrt().clamp_min(1e-30)
    y = torch.bmm(gram, x)
    rho = torch.view_as_real(x.conj() * y).sum(1)[..., :1]  # (P, 1, 1): the real Rayleigh quotient
    residual = torch.view_as_real(y - rho * x).pow(2).sum((1, 2, 3)).sqrt()
    vectors = x[..., 0]
    values = rho[:, 0, 0].clone()
    bad = torch.nonzero(residual > tol * values.abs().clamp_min(1e-6)).flatten()
    if len(bad):
        exact_values, exact_vectors = torch.linalg.eigh(gram[bad])
        vectors[bad] = exact_vectors[..., -1]
        values[bad] = exact_values[..., -1]
    return vectors, values


def top_eigenvectors(
    coef: torch.Tensor, shape: tuple[int, int], step: int = 4, iterations: int = 4, tol: float = 1e-3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top eigenpair of G(r) at every pixel (see the module docstring), made in chunks of rows
    (`_row_chunks`): (vectors (X, Y, C) complex64 of unit norm, eigenvalues (X, Y) float32)."""
    c = int(coef.shape[0])
    device = coef.device
    start = _coarse_start(coef, shape, step).unsqueeze(-1)  # (P, C, 1)
    rows, cols = _centred(shape[0], 1, device), _centred(shape[1], 1, device)
    vectors = torch.empty(shape[0] * shape[1], c, dtype=torch.complex64, device=device)
    values = torch.empty(shape[0] * shape[1], dtype=torch.float32, device=device)
    for part in _row_chunks(shape[0], shape[1], c):
        pixels = slice(part.start * shape[1], part.stop * shape[1])
        gram = gram_on_grid(coef, shape, rows[part], cols).reshape(-1, c, c)
        vectors[pixels], values[pixels] = _refine(gram, start[pixels], iterations, tol)
    return vectors.reshape(*shape, c), values.reshape(shape)


def espirit_maps(
    ksp: torch.Tensor,
    calib_width: int = 24,
    thresh: float = 0.02,
    crop: float = 0.95,
    kernel_width: int = 6,
    coarse_step: int = 4,
    power_iterations: int = 4,
    tol: float = 1e-3,
) -> torch.Tensor:
    """ESPIRiT coil maps of a batch of slices, as sigpy's EspiritCalib (see the module docstring).

    Args:
        ksp: centred k-space (B, C, X, Y) or (C, X, Y), complex, with a fully sampled
            calib_width^2 centre.
        calib_width: side of the calibration region (pixels).
        thresh: singular-value threshold relative to the largest.
        crop: maps are zero where the largest eigenvalue is <= crop.
        kernel_width: ESPIRiT kernel size.
        coarse_step, power_iterations, tol: the eigensolver (module docstring).

    Returns:
        maps with the shape of `ksp`, complex64: sum_c |S_c|^2 = 1 where the eigenvalue > crop,
        0 elsewhere; coil 0 real and >= 0.
    """
    unbatched = ksp.ndim == 3
    if unbatched:
        ksp = ksp[None]
    if ksp.ndim != 4 or not ksp.is_complex():
        raise ValueError(f"ksp must be complex (B, C, X, Y) or (C, X, Y), got {tuple(ksp.shape)} {ksp.dtype}")
    shape = (int(ksp.shape[-2]), int(ksp.shape[-1]))
    if min(shape) < 2 * kernel_width - 1:
        raise ValueError(f"ksp: image {shape[0]}x{shape[1]} is smaller than 2 * kernel_width - 1")
    ksp = ksp.to(torch.complex64)
    maps = torch.zeros_like(ksp)
    for i in range(ksp.shape[0]):
        kernels = espirit_kernels(calibration_region(ksp[i], calib_width), kernel_width, thresh)
        if len(kernels) == 0:
            continue
        vectors, values = top_eigenvectors(gram_coefficients(kernels), shape, coarse_step, power_iterations, tol)
        phase = vectors[..., :1] / vectors[..., :1].abs().clamp_min(1e-30)
        maps[i] = (vectors * phase.conj() * (values > crop)[..., None]).permute(2, 0, 1)
    return maps[0] if unbatched else maps


# ---------------------------------------------------------------------------- coil compression


def compression_from_gram(gram: torch.Tensor, coils: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SVD coil compression (BART `cc -S`) from the coil Gram matrix sum over calibration samples
    of y y^H (C, C).

    Args:
        gram: (C, C) Hermitian, complex.
        coils: N, the number of virtual coils to keep (1 <= N <= C).

    Returns:
        U_N (C, N) complex64 with orthonormal columns (the N strongest virtual coils), and the
        cumulative share of the calibration energy that the first 1..N virtual coils hold (N,).
    """
    c = int(gram.shape[0])
    if not 1 <= coils <= c:
        raise ValueError(f"coils must be in 1..{c}, got {coils}")
    values, vectors = torch.linalg.eigh(gram.to(torch.complex128))
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    energy = torch.cumsum(values, 0) / values.sum().clamp_min(1e-300)
    return vectors[:, :coils].to(torch.complex64), energy[:coils].to(torch.float32)


def coil_gram(calib: torch.Tensor) -> torch.Tensor:
    """sum over samples of y y^H of calibration data (C, ...) complex: (C, C) complex128."""
    samples = calib.reshape(calib.shape[0], -1).to(torch.complex128)
    return samples @ samples.conj().T


def compress(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Virtual coils U^H x: x (C, ...) complex -> (N, ...) with U (C, N)."""
    c = x.shape[0]
    out = matrix.conj().T.to(x.dtype) @ x.reshape(c, -1)
    return out.reshape(matrix.shape[1], *x.shape[1:])
