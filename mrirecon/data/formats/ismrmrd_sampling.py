"""What an ISMRMRD scan measured of its k-space grid, and so what a slice can claim: the lines the
encoding limits bound (partial Fourier), the readout rows a partial echo acquired, and whether
the data determine a reference image (`sampling`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mrirecon.data.formats.ismrmrd_header import Geometry
from mrirecon.data.formats.ismrmrd_rows import RowLayout


def line_region(geometry: Geometry, counts: np.ndarray) -> tuple[int, int, int, int]:
    """[y0, y1) x [z0, z1) of the (ky, kz) grid that was acquired: the header's encoding limits
    (minimum, maximum) placed on the grid as the lines are, else the sampled lines' extent."""
    _, ey, ez = geometry.encoded
    sampled = (counts > 0).any(0).reshape(ey, ez)
    out: list[int] = []
    for axis, (size, centre, bounds) in enumerate(zip((ey, ez), geometry.centre, geometry.limits)):
        hit = np.flatnonzero(sampled.any(1 - axis))
        if bounds is not None and bounds[1] >= bounds[0]:
            first, last = bounds[0] - centre + size // 2, bounds[1] - centre + size // 2
            if len(hit):  # a file whose lines lie outside its own limits: the lines win
                first, last = min(first, int(hit[0])), max(last, int(hit[-1]))
        else:
            first, last = (int(hit[0]), int(hit[-1])) if len(hit) else (0, size - 1)
        out += [max(first, 0), min(last + 1, size)]
    return out[0], out[1], out[2], out[3]


@dataclass(frozen=True)
class Sampling:
    """The output slices of a file: `shape` (X, Y) of every slice, whether the encoded grid is
    cropped to it in image space (`crop`: a fully sampled slice, to reconSpace), the `acquired`
    region (x0, x1, y0, y1) on it, `readout_rows` [x0, x1) of a 2D slice's readout that the
    echo covers, `has_reference` (the data determine the image: every line inside the limits,
    symmetric limits, a full echo), `recon_size` (the reconSpace crop of an uncropped grid, or
    None) and what was never acquired: `missing_samples` of the encoded readout (partial echo),
    `missing_lines` of the grid outside the limits (partial Fourier or padding)."""

    shape: tuple[int, int]
    crop: bool
    acquired: tuple[int, int, int, int]
    readout_rows: tuple[int, int]
    has_reference: bool
    recon_size: tuple[int, int] | None
    missing_samples: int
    missing_lines: int


def recon_rows(first: int, stop: int, encoded: int, recon: int) -> tuple[int, int]:
    """[x0, x1) of a readout cropped from `encoded` to `recon` samples in image space (oversampling
    removed) whose k positions lie inside the acquired encoded samples [first, stop): sample j of
    the recon grid sits at k = (j - recon // 2) * encoded / recon encoded samples from the centre."""
    scale = recon / encoded
    x0 = math.ceil(recon // 2 + (first - encoded // 2) * scale - 1e-9)
    x1 = math.floor(recon // 2 + (stop - 1 - encoded // 2) * scale + 1e-9) + 1
    return max(x0, 0), min(x1, recon)


def _symmetric(first: int, stop: int, size: int) -> bool:
    """Whether [first, stop) of a centred axis of `size` reaches as far on both sides of k = 0."""
    return abs((size // 2 - first) - (stop - 1 - size // 2)) <= 1


def sampling(geometry: Geometry, layout: RowLayout) -> Sampling:
    """The output slices (see `Sampling`) from the geometry and the row layout."""
    ex, ey, ez = geometry.encoded
    rx, ry, rz = geometry.recon
    y0, y1, z0, z1 = line_region(geometry, layout.counts)
    first, stop = layout.readout_range(ex)
    inside = layout.counts.reshape(-1, ey, ez)[:, y0:y1, z0:z1]
    rows = recon_rows(first, stop, ex, rx) if geometry.two_d else (0, rx)
    full_echo = (first, stop) == (0, ex) or (geometry.two_d and rows == (0, rx))
    reference = bool((inside > 0).all()) and _symmetric(y0, y1, ey) and _symmetric(z0, z1, ez) and full_echo
    if geometry.two_d:
        grid, recon, region = (rx, ey), (rx, ry), (rows[0], rows[1], y0, y1)
        whole = (y0, y1) == (0, ey)
    else:
        grid, recon, region = (ey, ez), (ry, rz), (y0, y1, z0, z1)
        whole = region == (0, ey, 0, ez)
    crop = reference and whole
    shape = recon if crop else grid
    return Sampling(
        shape=shape,
        crop=crop,
        acquired=(0, shape[0], 0, shape[1]) if crop else region,
        readout_rows=rows,
        has_reference=reference,
        recon_size=None if crop or recon == grid else recon,
        missing_samples=ex - (stop - first),
        missing_lines=ey * ez - (y1 - y0) * (z1 - z0),
    )
