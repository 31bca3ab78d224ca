"""`mrirecon preprocess`: stream raw data (the sample, or files in any format data/source.py reads)
into a dataset variant: one processed file (preprocess_file.py), or with data.shards a dataset
folder of one processed file per raw file and its index (preprocess_shards.py)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mrirecon.data.source import source_files
from mrirecon.tasks.common import open_source, source_spec
from mrirecon.tasks.preprocess_file import write_processed
from mrirecon.tasks.preprocess_output import check_output_path, compression_of
from mrirecon.tasks.preprocess_shards import run_shards
from mrirecon.tasks.preprocess_slices import variant_options


def run(cfg: DictConfig) -> Path:
    """Write `data.path`: every slice of `data.source` as variant (data.bits, data.scale); with
    data.shards, a dataset folder of one processed file per raw file (preprocess_shards.py).

    Memory holds one slice at a time. Splits are made of whole subjects (or kept from the
    source, checked); every slice's noise is estimated and stored. Returns the written path.
    """
    if cfg.data.get("shards") is not None or cfg.data.get("shard") is not None:
        return run_shards(cfg)
    variant = variant_options(cfg)
    compression_of(cfg)  # checked before the source is opened
    out = Path(str(cfg.data.path))
    files = source_files(source_spec(cfg))  # none for a named source (the sample)
    check_output_path(cfg, out, files)
    spec = source_spec(cfg)
    return write_processed(
        cfg, open_source(cfg), out, files, variant, spec if isinstance(spec, str) else ",".join(spec)
    )
