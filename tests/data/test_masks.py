"""Undersampling masks: fastMRI's column masks equal fastMRI's own code for the same seed.

`FastMRIReference` below is the logic of fastMRI's `fastmri/data/subsample.py` (MaskFunc,
RandomMaskFunc, EquispacedMaskFractionFunc) and of `apply_mask`'s padding in
`fastmri/data/transforms.py`, copied statement by statement from facebookresearch/fastMRI
(commit 91f2df4; MIT License, Copyright (c) Facebook, Inc. and its affiliates), with NumPy in
place of torch for the final `max` and the reshape. It is kept verbatim on purpose: mrirecon's
`data/masks.py` is written differently (functions of a seed, no shared generator), so equality
here means the two agree, including fastMRI's use of its generator (the acceleration choice
before the mask, the seeded temporary state).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest

from mrirecon.data import masks


@contextlib.contextmanager
def temp_seed(rng, seed):
    if seed is None:
        try:
            yield
        finally:
            pass
    else:
        state = rng.get_state()
        rng.seed(seed)
        try:
            yield
        finally:
            rng.set_state(state)


class FastMRIReference:
    """fastMRI's MaskFunc with its two column rules ('random', 'equispaced_fraction')."""

    def __init__(self, kind, center_fractions, accelerations, seed=None):
        self.kind = kind
        self.center_fractions = center_fractions
        self.accelerations = accelerations
        self.allow_any_combination = False
        self.rng = np.random.RandomState(seed)

    def __call__(self, shape, offset=None, seed=None):
        if len(shape) < 3:
            raise ValueError("Shape should have 3 or more dimensions")
        with temp_seed(self.rng, seed):
            center_mask, accel_mask, num_low_frequencies = self.sample_mask(shape, offset)
        return np.maximum(center_mask, accel_mask), num_low_frequencies

    def sample_mask(self, shape, offset):
        num_cols = shape[-2]
        center_fraction, acceleration = self.choose_acceleration()
        num_low_frequencies = round(num_cols * center_fraction)
        center_mask = self.reshape_mask(self.calculate_center_mask(shape, num_low_frequencies), shape)
        acceleration_mask = self.reshape_mask(
            self.calculate_acceleration_mask(num_cols, acceleration, offset, num_low_frequencies), shape
        )
        return center_mask, acceleration_mask, num_low_frequencies

    def reshape_mask(self, mask, shape):
        num_cols = shape[-2]
        mask_shape = [1 for _ in shape]
        mask_shape[-2] = num_cols
        return mask.reshape(*mask_shape).astype(np.float32)

    def calculate_center_mask(self, shape, num_low_freqs):
        num_cols = shape[-2]
        mask = np.zeros(num_cols, dtype=np.float32)
        pad = (num_cols - num_low_freqs + 1) // 2
        mask[pad : pad + num_low_freqs] = 1
        assert mask.sum() == num_low_freqs
        return mask

    def choose_acceleration(self):
        if self.allow_any_combination:
            return self.rng.choice(self.center_fractions), self.rng.choice(self.accelerations)
        else:  # noqa: RET505  (fastMRI's code, kept verbatim)
            choice = self.rng.randint(len(self.center_fractions))
            return self.center_fractions[choice], self.accelerations[choice]

    def calculate_acceleration_mask(self, num_cols, acceleration, offset, num_low_frequencies):
        if self.kind == "random":  # RandomMaskFunc
            prob = (num_cols / acceleration - num_low_frequencies) / (num_cols - num_low_frequencies)
            return self.rng.uniform(size=num_cols) < prob
        # EquispacedMaskFractionFunc
        adjusted_accel = (acceleration * (num_low_frequencies - num_cols)) / (
            num_low_frequencies * acceleration - num_cols
        )
        if offset is None:
            offset = self.rng.randint(0, high=round(adjusted_accel))
        mask = np.zeros(num_cols)
        accel_samples = np.arange(offset, num_cols - 1, adjusted_accel)
        accel_samples = np.around(accel_samples).astype(np.uint)
        mask[accel_samples] = 1.0
        return mask


def fastmri_columns(kind, num_cols, accel, fraction, seed, padding=None):
    """The columns fastMRI samples in k-space of `num_cols` columns (as VarNetDataTransform calls
    it: the shape (coils, rows, cols, 2), then apply_mask's padding zeroed)."""
    mask, _ = FastMRIReference(kind, [fraction], [accel])((1, 16, num_cols, 2), None, seed)
    if padding is not None:
        mask[..., : padding[0], :] = 0
        mask[..., padding[1] :, :] = 0
    return mask.reshape(-1).astype(bool)


FILE_SEED = tuple(map(ord, "file1000001.h5"))  # fastMRI's seed of a volume: its file name
CASES = [(368, 4, 0.08), (320, 8, 0.04), (372, 4, 0.08), (40, 4, 0.1), (41, 3, 0.2)]
SEEDS = [0, 5, 723, 2**31 - 1, FILE_SEED, (723, *FILE_SEED)]


@pytest.mark.parametrize("num_cols, accel, fraction", CASES)
@pytest.mark.parametrize("kind", ["random", "equispaced_fraction"])
def test_fastmri_masks_equal_fastmris_code(kind, num_cols, accel, fraction):
    ours = masks.fastmri_random_columns if kind == "random" else masks.fastmri_equispaced_columns
    for seed in SEEDS:
        expected = fastmri_columns(kind, num_cols, accel, fraction, seed)
        assert np.array_equal(ours(num_cols, accel, fraction, seed), expected), seed
    name = "fastmri_random" if kind == "random" else "fastmri_equispaced"
    m = masks.make_mask(name, (16, num_cols), accel, 0, fraction, FILE_SEED)
    expected = fastmri_columns(kind, num_cols, accel, fraction, FILE_SEED)
    assert m.shape == (16, num_cols) and np.array_equal(m[0].astype(bool), expected) and (m == m[:1]).all()


def test_volume_seed_is_fastmris_file_name_seed():
    assert masks.volume_seed(None, "file1000001.h5") == FILE_SEED
    assert masks.volume_seed(723, "file1000001.h5") == (723, *FILE_SEED)
    a = masks.fastmri_random_columns(368, 4, 0.08, masks.volume_seed(723, "file1000001.h5"))
    b = masks.fastmri_random_columns(368, 4, 0.08, masks.volume_seed(723, "file1000002.h5"))
    assert not np.array_equal(a, b)  # each volume its own mask


@pytest.mark.parametrize("num_cols, accel, fraction", CASES)
def test_fastmri_masks_reach_the_acceleration(num_cols, accel, fraction):
    """Properties, not formulas: the centre is sampled, the random mask's mean count over seeds is
    num_cols / accel, the equispaced one hits it within two columns on every seed."""
    num_low = round(num_cols * fraction)
    centre = slice((num_cols - num_low + 1) // 2, (num_cols - num_low + 1) // 2 + num_low)
    counts = []
    for seed in range(300):
        random = masks.fastmri_random_columns(num_cols, accel, fraction, seed)
        equi = masks.fastmri_equispaced_columns(num_cols, accel, fraction, seed)
        assert random[centre].all() and equi[centre].all()
        assert abs(int(equi.sum()) - num_cols / accel) <= 2
        counts.append(int(random.sum()))
    spread = np.sqrt(num_cols / accel) / np.sqrt(300)  # binomial sd of the mean, roughly
    assert abs(np.mean(counts) - num_cols / accel) < 4 * spread + 0.5


def test_poisson_mask_properties():
    for seed in range(3):
        m = masks.make_mask("poisson", (64, 48), 4, 12, 0.08, seed)
        assert set(np.unique(m)) == {0.0, 1.0} and m[26:38, 18:30].all()
        assert 3.2 < m.size / m.sum() < 4.8
    tuple_seed = masks.make_mask("poisson", (64, 48), 4, 12, 0.08, FILE_SEED)
    assert np.array_equal(tuple_seed, masks.make_mask("poisson", (64, 48), 4, 12, 0.08, FILE_SEED))


def test_make_mask_errors_name_the_parameter():
    with pytest.raises(ValueError, match="^kind: "):
        masks.make_mask("radial", (8, 8), 4, 2, 0.1, 0)
    with pytest.raises(ValueError, match="^accel: "):
        masks.make_mask("fastmri_random", (8, 8), 1, 2, 0.1, 0)
    with pytest.raises(ValueError, match="^center_fraction: "):
        masks.make_mask("fastmri_random", (8, 8), 4, 2, 1.5, 0)
    with pytest.raises(ValueError, match="^accel: no Poisson"):
        masks.make_mask("poisson", (16, 16), 6, 16, 0.1, 0)


@pytest.mark.parametrize(
    ("shape", "accel", "calib", "seed"), [((320, 256), 6, 24, 1), ((80, 64), 6, 12, 5), ((230, 180), 8, 20, 0)]
)
def test_poisson_mask_is_sigpys(shape, accel, calib, seed):
    """The bounded bisection draws sigpy.mri.poisson's own mask (same slopes, same sampler)."""
    import sigpy.mri

    reference = sigpy.mri.poisson(shape, accel, calib=(calib, calib), seed=seed, dtype=np.float32) != 0
    assert np.array_equal(masks.make_mask("poisson", shape, accel, calib, 0.08, seed), reference.astype(np.float32))


def test_unreachable_poisson_target_is_refused_not_a_hang():
    """sigpy.mri.poisson((32, 24), 6, calib=(8, 8), seed=723) never returns (its bisection stalls);
    ours gives up on that seed and make_mask takes the next one. Run in a child process so that a
    regression fails, not hangs."""
    code = (
        "import numpy as np\n"
        "from mrirecon.data import masks\n"
        "try:\n    masks._sigpy_poisson((32, 24), 6, (8, 8), 723)\n"
        "except ValueError as exc:\n    print('refused:', exc)\n"
        "m = masks.make_mask('poisson', (32, 24), 6, 8, 0.08, 723)\n"
        "print('acceleration', m.size / m.sum())\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and lines[0] == "refused: Cannot generate mask to satisfy accel=6.", res.stderr
    assert abs(float(lines[1].split()[1]) - 6) < 0.1


def test_masks_are_cached_per_volume_and_returned_as_copies():
    first = masks.make_mask("poisson", (64, 48), 4, 12, 0.08, FILE_SEED)
    first[:] = 0  # a caller's change does not reach the cache
    again = masks.make_mask("poisson", (64, 48), 4, 12, 0.08, FILE_SEED)
    assert again.sum() > 0 and masks._cached_mask.cache_info().hits >= 1


def test_resolve_kind_follows_the_acquisition():
    """auto: whole lines for 2D data, a Poisson disc for 3D (ky, kz) planes; poisson on 2D data
    undersamples the readout: refused unless asked for; unknown kinds named."""
    assert masks.resolve_kind("auto", two_d=True) == "lines" and masks.resolve_kind("auto", two_d=False) == "poisson"
    assert masks.resolve_kind("poisson", two_d=False) == "poisson"
    assert masks.resolve_kind("poisson", two_d=True, readout=True) == "poisson"
    assert masks.resolve_kind("fastmri_random", two_d=True) == "fastmri_random"
    with pytest.raises(masks.MaskError, match="^kind: 'poisson' undersamples the readout"):
        masks.resolve_kind("poisson", two_d=True)
    with pytest.raises(masks.MaskError, match="^kind: unknown mask 'radial'"):
        masks.resolve_kind("radial", two_d=True)


@pytest.mark.parametrize(("cols", "accel", "calib", "acquired"), [(256, 4, 24, None), (368, 6, 16, (20, 348))])
def test_vd_lines(cols, accel, calib, acquired):
    """Whole lines: the central calib lines, round(acquired / accel) in all, none outside the
    acquired lines, denser near the centre, deterministic in the seed (tuple seeds too)."""
    y0, y1 = acquired or (0, cols)
    for seed in (0, 1, FILE_SEED):
        lines = masks.vd_lines(cols, accel, calib, seed, acquired)
        start = cols // 2 - calib // 2
        assert lines[start : start + calib].all() and lines.sum() == round((y1 - y0) / accel)
        assert not lines[:y0].any() and not lines[y1:].any()
        assert np.array_equal(lines, masks.vd_lines(cols, accel, calib, seed, acquired))
    many = np.mean([masks.vd_lines(cols, accel, calib, seed, acquired) for seed in range(40)], axis=0)
    quarter = (y1 - y0) // 4
    inner = many[cols // 2 + calib : cols // 2 + quarter].mean()
    outer = many[y1 - quarter : y1].mean()
    assert inner > 2 * outer > 0
    mask = masks.make_mask("lines", (16, cols), accel, calib, 0.08, 3, acquired)
    assert np.array_equal(mask, np.broadcast_to(masks.vd_lines(cols, accel, calib, 3, acquired), (16, cols)))
    assert not np.array_equal(masks.vd_lines(cols, accel, calib, 0), masks.vd_lines(cols, accel, calib, 1))


def test_vd_lines_refuses_a_centre_beyond_the_acceleration():
    with pytest.raises(masks.MaskError, match="^accel: no line mask of acceleration 8"):
        masks.make_mask("lines", (16, 64), 8, 12, 0.08, 0)
