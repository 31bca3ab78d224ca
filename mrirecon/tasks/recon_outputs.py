"""The outputs of `mrirecon reconstruct`: the writers that turn a stream of slice records
(recon_summary.SliceRecord) into the run dir's files, all or nothing (`write_run`):
recon.h5 and recon.cfl/.hdr (`ReconWriter`), metrics.csv (`MetricsWriter`), summary.json
(recon_summary.summary) and figures/ (`write_figures`)."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import h5py
import numpy as np
from rich.progress import Progress

from mrirecon import __version__
from mrirecon.data.formats.cfl import CflImageWriter
from mrirecon.data.header import PRODUCER
from mrirecon.evaluation import uncertainty
from mrirecon.evaluation.figures import reconstruction_figure
from mrirecon.io.files import atomic_path
from mrirecon.tasks.recon_summary import RunFacts, SliceRecord, SliceTable, summary

log = logging.getLogger(__name__)
CSV_HEADER = ("slice", "subject", "volume", "method", "nrmse", "psnr", "ssim", "seconds")
# and, for a method that gives a per-pixel std, its measures (evaluation/uncertainty.py)
STD_COLUMNS = uncertainty.NAMES
# the run dir's files that a run writes (figures/ aside; recon.h5's attributes vouch for them in a
# run dir of a reconstruct run from before the run dir's record, mrirecon/io/ownership.py)
OUTPUTS = ("recon.h5", "metrics.csv", "summary.json", "recon.cfl", "recon.hdr")


@dataclass(frozen=True)
class OutputOptions:
    """objective: the metric whose mean the run returns; cfl: also write recon.cfl/.hdr (BART
    array with the image plane in dims `cfl_axes`); figures: figures of the first N slices."""

    objective: str = "psnr"
    cfl: bool = False
    cfl_axes: tuple[int, int] = (0, 1)
    figures: int = 3


class ReconWriter:
    """recon.h5 (datasets recon and imgs (N, X, Y) complex64 in record order, slices (N,), with
    `rss` also rss (N, X, Y) float32 (fastMRI's reconstruction_rss), for records that carry a
    std (a sampling method) also std (N, X, Y) float32, the run's attributes) and, with
    `cfl_axes`, recon.cfl/.hdr (the recon images for BART), filled
    record by record at temporary names and renamed on a clean exit; nothing is left on an
    exception."""

    def __init__(
        self,
        out: Path,
        slices: np.ndarray,
        shape: tuple[int, int],
        attrs: dict[str, Any],
        cfl_axes: tuple[int, int] | None = None,
        rss: bool = False,
    ) -> None:
        self.out, self.slices, self.shape, self.attrs, self.cfl_axes = out, slices, shape, attrs, cfl_axes
        self.rss = rss
        self._stack = contextlib.ExitStack()
        self._datasets: dict[str, h5py.Dataset] = {}
        self._cfl: CflImageWriter | None = None
        self._h5: h5py.File | None = None

    def __enter__(self) -> ReconWriter:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.out / "recon.h5"))
            h5 = stack.enter_context(h5py.File(tmp, "w", rdcc_nbytes=0))
            n = len(self.slices)
            if self.cfl_axes is not None:
                self._cfl = stack.enter_context(CflImageWriter(self.out / "recon", n, self.shape, self.cfl_axes))
            for name in ("recon", "imgs"):
                self._datasets[name] = h5.create_dataset(name, (n, *self.shape), np.complex64, chunks=(1, *self.shape))
            if self.rss:
                self._datasets["rss"] = h5.create_dataset("rss", (n, *self.shape), np.float32, chunks=(1, *self.shape))
            h5["slices"] = self.slices
            h5.attrs.update(self.attrs)
            self._h5 = h5
            self._stack = stack.pop_all()
        return self

    def write(self, record: SliceRecord) -> None:
        """Store the record's images at its position."""
        self._datasets["recon"][record.position] = record.recon
        self._datasets["imgs"][record.position] = record.reference
        if self.rss:
            if record.rss is None:
                raise ValueError(f"slice {record.index}: rss is not set")
            self._datasets["rss"][record.position] = record.rss
        if record.std is not None or "std" in self._datasets:
            self._write_std(record)
        if self._cfl is not None:
            self._cfl.write(record.position, record.recon)

    def _write_std(self, record: SliceRecord) -> None:
        """Store the record's std (the dataset made at the first record: a method gives one for
        every slice or for none)."""
        if record.std is None or ("std" not in self._datasets and record.position != 0):
            raise ValueError(f"slice {record.index}: a std is given for some slices only")
        if "std" not in self._datasets:
            assert self._h5 is not None, "ReconWriter.write outside its with block"
            n = len(self.slices)
            self._datasets["std"] = self._h5.create_dataset(
                "std", (n, *self.shape), np.float32, chunks=(1, *self.shape)
            )
        self._datasets["std"][record.position] = record.std

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.__exit__(exc_type, exc, tb)


class MetricsWriter:
    """metrics.csv: the header CSV_HEADER (and STD_COLUMNS when the records carry a std's
    measures) and one row per record (floats with 6 significant digits, the subject empty where
    the file records none), written at a temporary name and renamed on a clean exit."""

    def __init__(self, path: Path, method: str) -> None:
        self.path, self.method = path, method
        self._stack = contextlib.ExitStack()
        self._file: IO[str] | None = None
        self._csv: csv.DictWriter[str] | None = None

    def __enter__(self) -> MetricsWriter:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.path))
            self._file = stack.enter_context(tmp.open("w"))
            self._stack = stack.pop_all()
        return self

    def row(self, record: SliceRecord) -> dict[str, Any]:
        """The record's row of metrics.csv, unformatted."""
        subject = "" if record.subject is None else record.subject
        return {
            "slice": record.index,
            "subject": subject,
            "volume": "" if record.volume is None else record.volume,
            "method": self.method,
            **record.metrics,
            "seconds": record.seconds,
            **(record.uncertainty or {}),
        }

    def write(self, record: SliceRecord) -> None:
        """Append the record's row (the header before the first: with STD_COLUMNS when it carries
        a std's measures)."""
        assert self._file is not None, "MetricsWriter.write outside its with block"
        if self._csv is None:
            columns = (*CSV_HEADER, *(STD_COLUMNS if record.uncertainty is not None else ()))
            self._csv = csv.DictWriter(self._file, fieldnames=columns, lineterminator="\n")
            self._csv.writeheader()
        self._csv.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in self.row(record).items()})

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None and self._csv is None and self._file is not None:  # no records: the header alone
            csv.DictWriter(self._file, fieldnames=CSV_HEADER, lineterminator="\n").writeheader()
        self._stack.__exit__(exc_type, exc, tb)


def output_names(slices: np.ndarray, options: OutputOptions) -> list[str]:
    """The run dir's files that `write_run` writes for `slices`: recon.h5, metrics.csv,
    summary.json, recon.cfl/.hdr (options.cfl) and the figures of the first options.figures."""
    names = [n for n in OUTPUTS if options.cfl or not n.startswith("recon.") or n == "recon.h5"]
    return names + [f"figures/{figure_name(int(i))}" for i in slices[: options.figures]]


def figure_name(index: int) -> str:
    """The figure of slice `index` (its index in the data file)."""
    return f"slice_{index:04d}.png"


def write_figures(folder: Path, records: Iterable[SliceRecord], facts: RunFacts) -> None:
    """folder/slice_NNNN.png for each record: reference (or zero-filled) | recon | difference,
    and | std for a sampling method (with its Spearman and coverage in the title)."""
    for r in records:
        name = f"{facts.method} on {facts.variant}, slice {r.index}"
        m = r.metrics
        title = f"{name}: NRMSE {m['nrmse']:.4f}, PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}"
        if not facts.has_reference:
            title = f"{name} (no reference: left panel is zero-filled)"
        folder.mkdir(exist_ok=True)
        reference_label = "reference" if facts.has_reference else "zero-filled"
        u = r.uncertainty or {}
        if u:
            title += f"\nstd vs |error|: Spearman {u['std_spearman']:.3f}, coverage (2 std) {u['std_coverage']:.3f}"
        reconstruction_figure(
            r.reference, r.recon, title, folder / figure_name(r.index), reference_label=reference_label, std=r.std
        )


def with_progress(records: Iterable[SliceRecord], total: int, label: str) -> Iterator[SliceRecord]:
    """The records, with a transient progress bar of `total` slices."""
    with Progress(transient=True) as progress:
        bar = progress.add_task(label, total=total)
        for record in records:
            yield record
            progress.advance(bar)


def write_run(
    out: Path, records: Iterable[SliceRecord], facts: RunFacts, slices: np.ndarray, options: OutputOptions
) -> dict[str, Any]:
    """Write the run dir `out` from the records of `slices` (in order): recon.h5 (+ recon.cfl/.hdr),
    metrics.csv, figures/ and summary.json; returns the summary.

    All or nothing: every file is written at a temporary name and renamed only after the last
    record, the figures and the summary are done (recon.h5 first); on an exception nothing is
    renamed (figures already drawn stay: each is complete)."""
    attrs = {
        "method": facts.method,
        "variant": facts.variant,
        "data_path": facts.data_path,
        "mrirecon_version": __version__,
        PRODUCER: "reconstruct",
    }
    table = SliceTable(keep=options.figures)
    with contextlib.ExitStack() as stack:  # entered in this order, committed in the reverse
        summary_tmp = stack.enter_context(atomic_path(out / "summary.json"))
        csv_out = stack.enter_context(MetricsWriter(out / "metrics.csv", facts.method))
        cfl_axes = options.cfl_axes if options.cfl else None
        recon_out = stack.enter_context(ReconWriter(out, slices, facts.shape, attrs, cfl_axes, facts.has_rss))
        for record in with_progress(records, len(slices), f"{facts.method} on {facts.variant}"):
            recon_out.write(record)
            csv_out.write(record)
            table.add(record)
        write_figures(out / "figures", table.shown, facts)
        result = summary(facts, table, options.objective)
        summary_tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return result
