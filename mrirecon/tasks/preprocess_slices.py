"""preprocess's slice pipeline: what each source slice becomes (read, maps re-estimated, coils
compressed, variant made with its noise std set, the model checked) and the writing of the
slices one at a time (mrirecon/tasks/preprocess.py puts the steps together)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

import numpy as np
import torch
from omegaconf import DictConfig
from rich.progress import Progress

from mrirecon.data.coil_compression import CoilCompression
from mrirecon.data.completion import espirit_maps
from mrirecon.data.h5 import Slice
from mrirecon.data.h5_writer import DeepInPyWriter
from mrirecon.data.header import Header
from mrirecon.data.masks import MaskError
from mrirecon.data.transforms import make_variant, with_noise
from mrirecon.errors import UserError
from mrirecon.physics.model_error import model_error
from mrirecon.physics.noise import estimate_noise_std
from mrirecon.tasks.common import maps_option, read_options, variant_of

log = logging.getLogger(__name__)


class ModelErrorLog:
    """The model-error check (physics/model_error.py) of every slice written, for one warning."""

    def __init__(self) -> None:
        self.ratios: list[float] = []
        self.fires: list[bool] = []

    def check(self, s: Slice) -> Slice:
        """Check slice s (its measured k-space, maps and noise std) and pass it on."""
        measured = torch.from_numpy(s.ksp * s.mask)[None]
        found = model_error(
            measured, torch.from_numpy(s.maps)[None], torch.from_numpy(s.mask)[None], torch.tensor([s.noise_std or 0.0])
        )
        self.ratios.append(float(found.ratio[0]))
        self.fires.append(bool(found.exceeds()[0]))
        return s


def noise_estimate(s: Slice) -> float:
    """The noise standard deviation per k-space sample estimated from the slice's measured data."""
    return float(estimate_noise_std(torch.from_numpy(s.ksp * s.mask), torch.from_numpy(s.mask)))


def noise_level(cfg: DictConfig) -> str | float:
    """`data.noise`, checked: 'source' or a number >= 0."""
    value = cfg.data.noise
    if value == "source":
        return "source"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(
            f"data.noise: {value!r} must be 'source' or a number in [0, 1) (noise std relative to each image's maximum)"
        )
    return float(value)


def process(source_slice: Slice, bits: int | None, scale: float, noise: str | float, rng: np.random.Generator) -> Slice:
    """One slice of the variant, with its noise standard deviation set.

    Acquired k-space (variant full) is kept as it is; its noise_std is the source's when known
    (the simulated sample) and otherwise estimated from the measured samples. k-space
    regenerated from a processed image gets new noise at `noise` ('source': the source slice's
    peak SNR; a number: std relative to the image maximum), and that std is its noise_std.
    """
    source_std = source_slice.noise_std
    if source_std is None:
        source_std = noise_estimate(source_slice)
    out = make_variant(source_slice, bits, scale)
    if out is source_slice:
        return dataclasses.replace(out, noise_std=source_std)
    peak = float(np.abs(out.img).max())
    if noise == "source":
        source_peak = float(np.abs(source_slice.img).max())
        std = source_std / source_peak * peak if source_peak > 0 else 0.0
    else:
        std = float(noise) * peak
    return with_noise(out, std, rng) if std > 0 else dataclasses.replace(out, noise_std=0.0)


@dataclasses.dataclass(frozen=True)
class VariantMaker:
    """What each source slice becomes: data.bits, data.scale and data.noise (checked), with the
    run's seed for the noise of slice i (a generator per slice: the result does not depend on
    which slices are processed before it); `stream`: more numbers of the generator's seed (a
    sharded preprocess: the raw file's, so a file's noise does not depend on the other files)."""

    bits: int | None
    scale: float
    noise: str | float
    seed: int
    stream: tuple[int, ...] = ()

    def make(self, source_slice: Slice, i: int) -> Slice:
        """Slice i of the variant (`process`)."""
        rng = np.random.default_rng((self.seed, *self.stream, i))
        return process(source_slice, self.bits, self.scale, self.noise, rng)


def variant_options(cfg: DictConfig) -> VariantMaker:
    """data.bits, data.scale, data.noise and seed, checked."""
    bits, scale = variant_of(cfg)
    noise = noise_level(cfg)
    if noise != "source" and bits is None and scale == 1:
        raise UserError(
            f"data.noise: {noise}, but data={cfg.data.name} keeps the acquired k-space as it is (bits null, "
            "scale 1): noise is regenerated only for quantised or resized variants"
        )
    return VariantMaker(bits, scale, noise, int(cfg.seed))


def check_variant(cfg: DictConfig, source: Any, variant: VariantMaker) -> None:
    """Raw undersampled k-space (no reference image) can only be kept as acquired (data=full)."""
    if not source.has_reference and (variant.bits is not None or variant.scale != 1):
        raise UserError(
            f"data={cfg.data.name}: {source.path} has no reference image (raw undersampled k-space), so only "
            "data=full (k-space kept as acquired) can be made from it"
        )


def mask_error(exc: MaskError) -> str:
    """A mask error in config keys: 'kind: ...' is data.mask's (with the key that allows readout
    undersampling), the others data.undersampling.<parameter>'s."""
    text = str(exc)
    if text.startswith("kind:"):
        return f"data.mask{text[len('kind') :]} (data.undersampling.readout=true)"
    return f"data.undersampling.{text}"


def slice_reader(
    cfg: DictConfig, source: Any, compression: CoilCompression | None, subjects: np.ndarray
) -> Callable[[int], Slice]:
    """read(i): source slice i (its maps re-estimated by ESPIRiT from its measured k-space with
    data.maps=espirit; coil-compressed when asked), with a mask error named by its config key and
    a warning when its coil maps are all zero."""
    reestimate = maps_option(cfg) == "espirit"
    options = read_options(cfg) if reestimate else None

    def read(i: int) -> Slice:
        try:
            s = source.read(i)
        except MaskError as exc:  # a mask for fully sampled k-space: name the config key
            raise UserError(mask_error(exc)) from None
        if options is not None:
            measured = s.ksp * s.mask
            maps = espirit_maps(measured, options.calib_width, options.thresh, options.crop, options.device)
            s = dataclasses.replace(s, maps=maps)
        if not np.any(s.maps):
            log.warning(
                "%s slice %d: the coil maps are all zero (ESPIRiT found no sensitivity: raise "
                "data.espirit.calib_width, now %s, or lower data.espirit.thresh)",
                source.path,
                i,
                cfg.data.espirit.calib_width,
            )
        return s if compression is None else compression.apply(s, int(subjects[i]))

    return read


def write_slices(
    writer: DeepInPyWriter,
    slices: Iterable[Slice],
    count: int,
    label: str,
    final_header: Callable[[], Header] | None = None,
) -> list[float]:
    """Fill `writer` (not yet entered) with the `count` slices, one at a time (then the
    header `final_header()` known only after the last); returns their noise std."""
    stds: list[float] = []
    with writer, Progress(transient=True) as progress:
        bar = progress.add_task(label, total=count)
        for i, s in enumerate(slices):
            writer.write(i, s)
            stds.append(cast(float, s.noise_std))  # write refuses a slice without one
            progress.advance(bar)
        if final_header is not None:
            writer.update_header(final_header())
    return stds
