"""`mrirecon preprocess`: stream a raw DeepInPy file (or the sample) into a dataset variant."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path

from omegaconf import DictConfig
from rich.progress import Progress

from mrirecon import __version__
from mrirecon.data.h5 import SPLITS, DeepInPyWriter
from mrirecon.data.splits import make_splits
from mrirecon.data.transforms import make_variant
from mrirecon.errors import UserError
from mrirecon.tasks.common import open_source, variant_of

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    """Write `data.path`: every slice of `data.source` as variant (data.bits, data.scale).

    Memory holds one slice at a time. Splits stored in the source are kept; otherwise
    contiguous train/val/test blocks are made. Returns the written path.
    """
    bits, scale = variant_of(cfg)
    out = Path(str(cfg.data.path))
    source = open_source(cfg)
    if str(cfg.data.source) != "sample" and Path(str(cfg.data.source)).resolve() == out.resolve():
        raise UserError(f"data.path: {out} is the source file itself; choose another output path")
    has_reference = getattr(source, "has_reference", True)
    if not has_reference and (bits is not None or scale != 1):
        raise UserError(
            f"data={cfg.data.name}: {source.path} has no reference image ('imgs'), so only data=full "
            "(k-space kept as acquired) can be made from it"
        )
    first = make_variant(source.read(0), bits, scale)
    splits = source.splits() or make_splits(len(source), cfg.data.val_fraction, cfg.data.test_fraction)
    attrs = {
        "source": str(cfg.data.source),
        "variant": str(cfg.data.name),
        "bits": -1 if bits is None else bits,
        "scale": scale,
        "transpose": bool(cfg.data.transpose),
        "has_reference": bool(has_reference),
        "mrirecon_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **{f"split_{name}": splits[name] for name in SPLITS},
        **{f"source_{k}": v for k, v in source.attrs.items() if isinstance(v, (str, int, float))},
    }
    if str(cfg.data.source) == "sample":
        attrs.update({f"sample_{k}": v for k, v in cfg.data.sample.items()})
    compression = cfg.data.compression or None
    with DeepInPyWriter(out, len(source), source.num_coils, first.img.shape, attrs, compression) as writer:
        with Progress(transient=True) as progress:
            bar = progress.add_task(f"preprocess {cfg.data.name}", total=len(source))
            for i in range(len(source)):
                writer.write(i, first if i == 0 else make_variant(source.read(i), bits, scale))
                progress.advance(bar)
    source.close()
    log.info(
        "wrote %s: %d slices, %d coils, %dx%d, bits=%s scale=%s (train %d / val %d / test %d)",
        out, len(source), source.num_coils, *first.img.shape, bits, scale,
        *(len(splits[s]) for s in SPLITS),
    )
    return out
