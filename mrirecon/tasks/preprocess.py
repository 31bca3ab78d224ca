"""`mrirecon preprocess`: stream raw data (the sample, or files in any format data/source.py reads) into a dataset variant."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from rich.progress import Progress

from mrirecon import __version__
from mrirecon.data.coil_compression import CoilCompression
from mrirecon.data.completion import espirit_maps
from mrirecon.data.h5 import PRODUCER, SPLITS, DeepInPyWriter, Slice, producer
from mrirecon.data.masks import MaskError
from mrirecon.data.source import MultiSource, source_files
from mrirecon.data.splits import check_fractions, check_splits, make_splits, split_counts, subjects_of
from mrirecon.data.transforms import make_variant, resized_shape, with_noise
from mrirecon.errors import UserError
from mrirecon.io import ownership
from mrirecon.io.files import make_parent, write_target
from mrirecon.io.locks import file_lock, held, remove_temporaries
from mrirecon.physics.model_error import model_error
from mrirecon.physics.noise import estimate_noise_std
from mrirecon.tasks.common import (
    maps_option,
    model_error_warning,
    open_source,
    overwrite,
    prewhiten_option,
    read_options,
    run_dir,
    source_spec,
    variant_of,
)

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


def source_subjects(cfg: DictConfig, source: Any) -> np.ndarray:
    """The subject of every slice: recorded by the source (several files: patient IDs, the files'
    own subjects, blocks of data.slices_per_subject, else one per file), else blocks of
    data.slices_per_subject slices, else one per slice."""
    per_subject = cfg.data.slices_per_subject
    try:
        subjects = source.subjects()
    except ValueError as exc:  # several files: one is not a whole number of subjects
        raise UserError(f"data.{exc}") from None
    if isinstance(source, MultiSource):
        rules = sorted(set(source.subject_rules))
        log.info(
            "%s: %d subjects from %d files (%s)",
            source.path,
            len(np.unique(subjects)),
            len(source.sources),
            ", ".join(rules),
        )
        if per_subject is not None and "slices_per_subject" not in rules:
            log.warning("every file records its subjects: data.slices_per_subject=%s is ignored", per_subject)
        return subjects
    if subjects is not None:
        if per_subject is not None:
            log.warning(
                "%s records the subject of every slice: data.slices_per_subject=%s is ignored", source.path, per_subject
            )
        return subjects
    try:
        subjects = subjects_of(len(source), per_subject)
    except ValueError as exc:
        raise UserError(f"data.slices_per_subject: {exc} ({source.path})") from None
    if per_subject is None and len(source) > 50:
        log.warning(
            "%s does not record subjects: every slice is taken as its own subject, so a split can "
            "cut a volume; set data.slices_per_subject (e.g. 320 for whole 3D knee volumes)",
            source.path,
        )
    return subjects


def source_volumes(source: Any, subjects: np.ndarray) -> np.ndarray:
    """The source volume of every slice: a file's own volumes when several files are read (two
    files of one patient: two volumes of one subject), those a processed file records, else the
    subjects. The unit of fastMRI's per-volume metrics (`evaluate level=volume`)."""
    volumes = source.volumes() if callable(getattr(source, "volumes", None)) else None
    return subjects if volumes is None else np.asarray(volumes, dtype=np.int64)


def new_splits(cfg: DictConfig, subjects: np.ndarray) -> dict[str, np.ndarray]:
    """Splits of whole subjects by data.val_fraction and data.test_fraction: refused when no
    subject is left to train, a warning when val or test gets none."""
    val, test = cfg.data.val_fraction, cfg.data.test_fraction
    n = len(np.unique(subjects))
    try:
        check_fractions(val, test)
    except ValueError as exc:
        raise UserError(f"data.{exc}") from None
    counts = split_counts(n, val, test)
    if counts[0] <= 0:
        raise UserError(
            f"data.val_fraction={val}, data.test_fraction={test}: of {n} subjects {counts[1]} go to val and "
            f"{counts[2]} to test, none is left to train (lower the fractions, or add subjects)"
        )
    splits = make_splits(subjects, val, test)
    if (val > 0 and counts[1] == 0) or (test > 0 and counts[2] == 0):
        log.warning(
            "data.val_fraction=%s, data.test_fraction=%s with %d subject(s): %d train / %d val / %d test subjects; "
            "an empty split cannot be reconstructed (data.split=all uses every slice)",
            val,
            test,
            n,
            *counts,
        )
    return splits


def subjects_and_splits(cfg: DictConfig, source: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The subject of every slice (`source_subjects`) and the train/val/test splits, which never
    cut a subject: splits stored in the source (checked), else made from whole subjects."""
    subjects = source_subjects(cfg, source)
    splits = source.splits()
    if splits is None:
        return subjects, new_splits(cfg, subjects)
    try:
        check_splits(splits, subjects)
    except ValueError as exc:
        raise UserError(f"data.source: {source.path} stores splits that cut a subject ({exc})") from None
    return subjects, splits


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


def compression_of(cfg: DictConfig) -> str | int | None:
    """data.compression as an h5py filter: null, gzip, lzf, or a gzip level 0-9."""
    value = cfg.data.compression
    if value in (None, "gzip", "lzf") or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9):
        return value
    raise UserError(f"data.compression: {value!r} must be null, gzip, lzf or a gzip level 0-9")


@dataclasses.dataclass(frozen=True)
class Variant:
    """What each source slice becomes: data.bits, data.scale and data.noise (checked), with the
    run's seed for the noise of slice i (a generator per slice: the result does not depend on
    which slices are processed before it)."""

    bits: int | None
    scale: float
    noise: str | float
    seed: int

    def make(self, source_slice: Slice, i: int) -> Slice:
        """Slice i of the variant (`process`)."""
        return process(source_slice, self.bits, self.scale, self.noise, np.random.default_rng((self.seed, i)))


def variant_options(cfg: DictConfig) -> Variant:
    """data.bits, data.scale, data.noise and seed, checked."""
    bits, scale = variant_of(cfg)
    noise = noise_level(cfg)
    if noise != "source" and bits is None and scale == 1:
        raise UserError(
            f"data.noise: {noise}, but data={cfg.data.name} keeps the acquired k-space as it is (bits null, "
            "scale 1): noise is regenerated only for quantised or resized variants"
        )
    return Variant(bits, scale, noise, int(cfg.seed))


def check_output_path(cfg: DictConfig, out: Path, files: list[Path]) -> None:
    """Refuse a data.path that is a source file, a folder, or a file that preprocess did not
    write (unless overwrite=true): a file mrirecon did not write, or another subcommand's output
    (a recon.h5 of reconstruct). A symbolic link is written through (its target is checked)."""
    if any(Path(p).resolve() == out.resolve() for p in files):
        raise UserError(f"data.path: {out} is the source file itself; choose another output path")
    if out.is_dir():
        raise UserError(f"data.path: {out} is a folder; give the path of the .h5 file to write")
    if not out.exists() or overwrite(cfg):
        return
    made_by = producer(out)
    if made_by is None:
        raise UserError(
            f"data.path: {out} exists and was not written by mrirecon (no mrirecon provenance attributes): "
            "choose another data.path, or overwrite=true to replace it"
        )
    if made_by != "preprocess":
        raise UserError(
            f"data.path: {out} exists and is an output of mrirecon {made_by}, not a processed file of "
            "preprocess: choose another data.path, or overwrite=true to replace it"
        )


def write_locked(cfg: DictConfig, out: Path, files: list[Path], write: Callable[[], list[float]]) -> list[float]:
    """`write()` the file data.path holding its lock (one writer at a time: locks.py), after
    checking it again under the lock and removing the temporary files a killed run left there."""
    target = write_target(out)
    make_parent(target)
    with held(file_lock(out), "mrirecon preprocess", "data.path", str(out)):
        check_output_path(cfg, out, files)
        remove_temporaries(target.parent, target.name)
        stds = write()
    if HydraConfig.initialized():  # the run dir's record names the file this run wrote
        ownership.record(run_dir(), [str(target.resolve())], "preprocess")
    return stds


def check_variant(cfg: DictConfig, source: Any, variant: Variant) -> None:
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


def mask_kind(source: Any) -> str:
    """The kind of the slices' masks (the readers' `mask` attribute: drawn, 'acquired' or
    'stored'), several joined by commas."""
    parts = getattr(source, "sources", [source])
    default = lambda p: "stored" if p.has_reference else "acquired"  # noqa: E731
    return ",".join(sorted({str(p.attrs.get("mask", default(p))) for p in parts}))


def attributes_of(
    cfg: DictConfig,
    source: Any,
    files: list[Path],
    variant: Variant,
    splits: dict[str, np.ndarray],
    noise_scans: bool,
    prewhitened: bool,
) -> dict[str, Any]:
    """The written file's attributes: its source, variant, noise definition, splits and provenance."""
    spec = source_spec(cfg)
    attrs = {
        "source": spec if isinstance(spec, str) else ",".join(spec),
        "source_id": ",".join(str(Path(p).resolve()) for p in files) if files else str(spec),
        "variant": str(cfg.data.name),
        "bits": -1 if variant.bits is None else variant.bits,
        "scale": variant.scale,
        "transpose": bool(cfg.data.transpose),
        "has_reference": bool(source.has_reference),
        "mask": mask_kind(source),
        "noise": str(variant.noise),
        "noise_std_definition": NOISE_STD_SCANS if noise_scans else NOISE_STD,
        "prewhitened": int(prewhitened),
        "coil_compression": "none",
        "maps": MAPS_ESPIRIT if maps_option(cfg) == "espirit" else "source",
        "mrirecon_version": __version__,
        PRODUCER: "preprocess",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **{f"split_{name}": splits[name] for name in SPLITS},
        **{f"source_{k}": v for k, v in source.attrs.items() if isinstance(v, (str, int, float))},
    }
    return attrs


def write_slices(
    writer: DeepInPyWriter,
    slices: Iterable[Slice],
    count: int,
    label: str,
    final_attrs: Callable[[], dict[str, Any]] | None = None,
) -> list[float]:
    """Fill `writer` (not yet entered) with the `count` slices, one at a time (then the
    attributes `final_attrs()` known only after the last); returns their noise std."""
    stds: list[float] = []
    with writer, Progress(transient=True) as progress:
        bar = progress.add_task(label, total=count)
        for i, s in enumerate(slices):
            writer.write(i, s)
            stds.append(cast(float, s.noise_std))  # write refuses a slice without one
            progress.advance(bar)
        if final_attrs is not None:
            writer.update_attrs(final_attrs())
    return stds


def run(cfg: DictConfig) -> Path:
    """Write `data.path`: every slice of `data.source` as variant (data.bits, data.scale).

    Memory holds one slice at a time. Splits are made of whole subjects (or kept from the
    source, checked); every slice's noise is estimated and stored. Returns the written path.
    """
    variant = variant_options(cfg)
    h5_filter = compression_of(cfg)
    out = Path(str(cfg.data.path))
    spec = source_spec(cfg)
    files = source_files(spec)  # none for a named source (the sample)
    check_output_path(cfg, out, files)
    source = open_source(cfg)
    check_variant(cfg, source, variant)
    shape, crop = output_geometry(cfg, source, variant.scale)
    subjects, splits = subjects_and_splits(cfg, source)
    noise_scans, prewhitened = check_prewhitening(cfg, source)
    compression = coil_compression(cfg, source, subjects)
    num_coils = source.num_coils if compression is None else compression.coils
    read = slice_reader(cfg, source, compression, subjects)
    first = variant.make(read(0), 0)
    attrs = attributes_of(cfg, source, files, variant, splits, noise_scans, prewhitened)
    writer = DeepInPyWriter(
        out,
        len(source),
        num_coils,
        shape,
        attrs,
        h5_filter,
        subjects,
        rss=source.has_rss,
        recon_size=crop,
        volumes=source_volumes(source, subjects),
    )
    checked = ModelErrorLog()
    slices = (checked.check(first if i == 0 else variant.make(read(i), i)) for i in range(len(source)))
    final_attrs = None if compression is None else lambda: compression.attrs(source.num_coils)
    label = f"preprocess {cfg.data.name}"
    stds = write_locked(cfg, out, files, lambda: write_slices(writer, slices, len(source), label, final_attrs))
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
