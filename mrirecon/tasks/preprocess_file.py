"""One processed file of `mrirecon preprocess` (tasks/preprocess.py): `write_processed` streams a
source into a dataset variant with its typed header (data/header.py).

The steps, one module each: the subjects and splits (preprocess_subjects.py), the slice
pipeline (preprocess_slices.py: read, re-estimate maps, compress coils, make the variant, check
the model, write), the output file and its lock (preprocess_output.py); here: the geometry, the
coil compression and prewhitening options, the header, and `write_processed` putting them together."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from mrirecon import __version__
from mrirecon.data.coil_compression import CoilCompression
from mrirecon.data.h5_writer import DeepInPyWriter
from mrirecon.data.header import SPLITS, Header, Variant
from mrirecon.data.transforms import resized_shape
from mrirecon.errors import UserError
from mrirecon.tasks.common import (
    maps_option,
    model_error_warning,
    prewhiten_option,
)
from mrirecon.tasks.preprocess_output import compression_of, write_locked
from mrirecon.tasks.preprocess_slices import (
    ModelErrorLog,
    VariantMaker,
    check_variant,
    slice_reader,
    write_slices,
)
from mrirecon.tasks.preprocess_subjects import source_volumes, subjects_and_splits

log = logging.getLogger(__name__)

MIN_SIZE = 7  # the smallest image side metrics take (SSIM's 7x7 window)
NOISE_STD = (
    "noise std per k-space sample: the simulated std where preprocess or the sample added the noise, else "
    "estimated from the measured data (median of |y|^2 / ln 2 over the outermost 10 % of measured k-space "
    "locations, per coil; physics/noise.py)"
)
NOISE_STD_SCANS = (
    "noise std per k-space sample from the file's noise scans (ISMRMRD noise-only readouts: the coil noise "
    "covariance Psi, scaled to the imaging dwell time): 1 per coil after prewhitening with W = L^-1 "
    "(Psi = L L^H), else sqrt(trace(Psi) / C); divided by sqrt of the mean repeat count of averaged lines. "
    "Regenerated k-space (quantised or resized variants): the simulated std"
)


MAPS_ESPIRIT = (
    "espirit: re-estimated from each slice's measured k-space (its centred data.espirit.calib_width square) by "
    "ESPIRiT with data.espirit.thresh and crop (data.maps=espirit)"
)


def output_geometry(cfg: DictConfig, source: Any, scale: float) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """The processed image shape and its recon-size crop (None: the whole image), checked: the
    images metrics see must be at least 7x7 (SSIM's window)."""
    shape = resized_shape(source.shape, scale)
    crop = None if source.recon_size is None else resized_shape(source.recon_size, scale)
    seen = crop or shape
    if min(seen) < MIN_SIZE:
        what = f"{source.shape[0]}x{source.shape[1]} images of {source.path}"
        if source.recon_size is not None:
            what += f" (recon size {source.recon_size[0]}x{source.recon_size[1]})"
        if scale != 1:
            raise UserError(
                f"data.scale: {scale} makes the {what} {seen[0]}x{seen[1]}; metrics need at least "
                f"{MIN_SIZE}x{MIN_SIZE} (SSIM's window)"
            )
        raise UserError(
            f"data.source: {what} are smaller than {MIN_SIZE}x{MIN_SIZE}, the least metrics need (SSIM's window)"
        )
    return shape, crop


def check_prewhitening(cfg: DictConfig, source: Any) -> tuple[bool, bool]:
    """(the source's noise std comes from noise scans, every file was prewhitened); refuses
    data.prewhiten=true when a file has no noise scans (only ISMRMRD files carry them)."""
    parts = getattr(source, "sources", [source])
    scans = [int(p.attrs.get("noise_scans", 0)) > 0 and not p.attrs.get("noise_scans_unusable") for p in parts]
    if prewhiten_option(cfg) == "true":
        for part, has in zip(parts, scans):
            if not has:
                raise UserError(
                    f"data.prewhiten=true: {part.path} has no noise scans (noise-only readouts of an ISMRMRD "
                    "file); use data.prewhiten=auto to prewhiten only files that have them"
                )
    return any(scans), all(int(p.attrs.get("prewhitened", 0)) == 1 for p in parts)


def coil_compression(cfg: DictConfig, source: Any, subjects: np.ndarray) -> CoilCompression | None:
    """`data.coils` virtual coils (null: none), per `data.coil_compression` slice or volume
    (a first pass over the source's k-space per subject), from the ESPIRiT calibration region."""
    coils = cfg.data.get("coils", None)
    if coils is None:
        if str(cfg.data.get("coil_compression", "slice")) != "slice":
            raise UserError(
                f"data.coil_compression: {cfg.data.coil_compression} needs data.coils (null: no compression)"
            )
        return None
    if isinstance(coils, bool) or not isinstance(coils, int) or not 1 <= coils <= source.num_coils:
        raise UserError(
            f"data.coils: {coils!r} must be null or an integer in 1..{source.num_coils} (the source's coils)"
        )
    mode = str(cfg.data.get("coil_compression", "slice"))
    try:
        compression = CoilCompression(coils, mode, int(cfg.data.espirit.calib_width))
    except ValueError as exc:
        raise UserError(f"data.coil_compression: {exc}") from None
    if mode == "volume":
        kspace = getattr(source, "kspace", None) or (lambda i: source.read(i).ksp)
        compression.fit_volumes(kspace, subjects)
    return compression


def mask_kind(source: Any) -> str:
    """The kind of the slices' masks (the readers' `mask` attribute: drawn, 'acquired' or
    'stored'), several joined by commas."""
    parts = getattr(source, "sources", [source])
    default = lambda p: "stored" if p.has_reference else "acquired"  # noqa: E731
    return ",".join(sorted({str(p.attrs.get("mask", default(p))) for p in parts}))


def header_of(
    cfg: DictConfig,
    source: Any,
    files: list[Path],
    variant: VariantMaker,
    splits: dict[str, np.ndarray],
    prewhitening: tuple[bool, bool],
    recon_size: tuple[int, int] | None,
    spec: str,
) -> Header:
    """The written file's header: its source (data.source as text: `spec`) and the source's provenance, variant, splits, noise
    definition (`prewhitening`: the noise std comes from noise scans, the data were prewhitened),
    maps, mask and mrirecon's provenance; the coil compression is added after the last slice."""
    noise_scans, prewhitened = prewhitening
    return Header(
        producer="preprocess",
        version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        source=spec,
        source_id=",".join(str(Path(p).resolve()) for p in files) if files else str(spec),
        source_attrs={k: v for k, v in source.attrs.items() if isinstance(v, (str, int, float))},
        variant=Variant(variant.bits, variant.scale, name=str(cfg.data.name), noise=str(variant.noise)),
        splits={name: tuple(int(i) for i in splits[name]) for name in SPLITS},
        transpose=bool(cfg.data.transpose),
        has_reference=bool(source.has_reference),
        has_rss=bool(source.has_rss),
        recon_size=recon_size,
        mask=mask_kind(source),
        maps=MAPS_ESPIRIT if maps_option(cfg) == "espirit" else "source",
        noise_std_definition=NOISE_STD_SCANS if noise_scans else NOISE_STD,
        prewhitened=prewhitened,
    )


def write_processed(
    cfg: DictConfig,
    source: Any,
    out: Path,
    files: list[Path],
    variant: VariantMaker,
    spec: str,
    splitter: Callable[[Any, np.ndarray], dict[str, np.ndarray]] | None = None,
) -> Path:
    """Write the processed file `out` from `source` (data.source `spec`, its `files`), closing
    the source; `splitter(source, subjects)` makes the splits (default: preprocess_subjects)."""
    h5_filter = compression_of(cfg)
    check_variant(cfg, source, variant)
    shape, crop = output_geometry(cfg, source, variant.scale)
    subjects, splits = subjects_and_splits(cfg, source, splitter)
    prewhitening = check_prewhitening(cfg, source)
    compression = coil_compression(cfg, source, subjects)
    num_coils = source.num_coils if compression is None else compression.coils
    read = slice_reader(cfg, source, compression, subjects)
    first = variant.make(read(0), 0)
    header = header_of(cfg, source, files, variant, splits, prewhitening, crop, spec)
    volumes = source_volumes(source, subjects)
    writer = DeepInPyWriter(out, len(source), num_coils, shape, header, h5_filter, subjects, volumes)
    checked = ModelErrorLog()
    slices = (checked.check(first if i == 0 else variant.make(read(i), i)) for i in range(len(source)))
    final = None
    if compression is not None:
        final = lambda: dataclasses.replace(header, coil_compression=compression.record(source.num_coils))  # noqa: E731
    label = f"preprocess {cfg.data.name}"
    stds = write_locked(cfg, out, files, lambda: write_slices(writer, slices, len(source), label, final))
    source.close()
    warning = model_error_warning(checked.ratios, checked.fires, str(source.path))
    if warning:
        log.warning("%s", warning)
    log.info(
        "wrote %s: %d slices of %d subjects, %d coils, %dx%d, bits=%s scale=%s (train %d / val %d / test %d "
        "slices), estimated noise std %.3g (median)",
        out,
        len(source),
        len(np.unique(subjects)),
        num_coils,
        *first.img.shape,
        variant.bits,
        variant.scale,
        *(len(splits[s]) for s in SPLITS),
        float(np.median(stds)),
    )
    return out
