"""Coil compression of slices in preprocess (`data.coils`): N virtual coils by SVD, as BART `cc -S`.

The compression matrix U_N (C x N, orthonormal columns: the N strongest left singular vectors
of the calibration data, physics/coils.py) comes from the centred `calib_width`^2 calibration
region of k-space, either of each slice (`mode='slice'`) or of all slices of a subject
(`mode='volume'`: the sum of their coil Gram matrices, so every slice of a volume gets the same
virtual coils). A slice becomes ksp' = U_N^H ksp and maps' = U_N^H maps with its reference image
unchanged: the SENSE model y = F S x holds exactly for the virtual coils (maps' are not
renormalised; sum_c |S'_c|^2 <= 1 is the share of the sensitivity the virtual coils keep), and
white noise stays white with the same standard deviation, so prewhiten first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from mrirecon.data.h5 import Slice
from mrirecon.data.header import Compression
from mrirecon.physics.coils import calibration_region, coil_gram, compress, compression_from_gram

MODES = ("slice", "volume")


class CoilCompression:
    """Compress every slice to `coils` virtual coils.

    Args:
        coils: N, the number of virtual coils (1 <= N <= the source's coils).
        mode: 'slice' (a matrix per slice) or 'volume' (one per subject, from all its slices).
        calib_width: side of the calibration region (pixels).
    """

    def __init__(self, coils: int, mode: str, calib_width: int) -> None:
        if mode not in MODES:
            raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
        if isinstance(coils, bool) or not isinstance(coils, int) or coils < 1:
            raise ValueError(f"coils: {coils!r} must be an integer >= 1")
        self.coils, self.mode, self.calib_width = coils, mode, calib_width
        self._volume: dict[int, torch.Tensor] = {}
        self.energy: list[float] = []

    def _gram(self, ksp: np.ndarray) -> torch.Tensor:
        return coil_gram(calibration_region(torch.from_numpy(np.ascontiguousarray(ksp)), self.calib_width))

    def fit_volumes(self, kspace: Callable[[int], np.ndarray], subjects: np.ndarray) -> None:
        """Mode 'volume': one matrix per subject from the summed calibration Gram matrices of its
        slices; `kspace(i)` returns slice i's k-space (C, X, Y)."""
        grams: dict[int, torch.Tensor] = {}
        for i, subject in enumerate(subjects.tolist()):
            g = self._gram(kspace(i))
            grams[subject] = grams[subject] + g if subject in grams else g
        for subject, g in grams.items():
            self._volume[subject] = compression_from_gram(g, self._check(g.shape[0]))[0]

    def _check(self, available: int) -> int:
        if self.coils > available:
            raise ValueError(f"coils: {self.coils} virtual coils asked for, but the data have {available} coils")
        return self.coils

    def apply(self, s: Slice, subject: int) -> Slice:
        """The slice with N virtual coils (ksp and maps); records the calibration energy kept."""
        gram = self._gram(s.ksp)
        if self.mode == "volume":
            matrix = self._volume[subject]
        else:
            matrix = compression_from_gram(gram, self._check(gram.shape[0]))[0]
        kept = (matrix.conj().T.to(torch.complex128) @ gram @ matrix.to(torch.complex128)).trace().real
        self.energy.append(float(kept / gram.trace().real.clamp_min(1e-300)))
        ksp = compress(torch.from_numpy(s.ksp), matrix).numpy()
        maps = compress(torch.from_numpy(np.ascontiguousarray(s.maps)), matrix).numpy()
        return dataclasses.replace(s, ksp=ksp.astype(np.complex64), maps=maps.astype(np.complex64))

    def record(self, source_coils: int) -> Compression:
        """What the processed file's header records of the compression (after every slice)."""
        return Compression(
            description=(
                f"SVD (BART cc -S) per {self.mode} from the {self.calib_width}x{self.calib_width} calibration "
                f"region: {source_coils} -> {self.coils} virtual coils"
            ),
            coils_acquired=source_coils,
            energy_min=min(self.energy) if self.energy else float("nan"),
            energy_mean=float(np.mean(self.energy)) if self.energy else float("nan"),
        )
