#!/usr/bin/env python
"""Benchmark `mrirecon preprocess` on large DeepInPy-format inputs: throughput and peak memory.

Writes a synthetic DeepInPy file of N slices (8 coils x 320x256, complex64: about 11.5 MB a
slice, so the default N = 320 makes a 3.7 GB file), built from the embedded sample's 15 real
slices repeated, with the same slice-by-slice writer as preprocess. Then runs
`mrirecon preprocess data=<variant>` on it in a fresh process for each variant and reports
slices per second and the process's peak RSS (VmHWM, polled from /proc). The same is done for
a file of N / 4 slices: bounded-memory streaming shows as the same peak RSS for both sizes.
The time for the users' full 4,480-slice set is extrapolated from the larger run.

With `--formats ismrmrd,fastmri` it measures the field's raw formats instead (variant full, in
fresh processes, peak RSS at two N): an ISMRMRD 3D Cartesian acquisition (8 coils, readout N x
ky 160 x kz 128, one file written with the ismrmrd package; `data.ismrmrd_buffer_mb` 32, smaller
than the larger file) and a fastMRI multi-coil file (N slices, 8 coils, 320 x 184 k-space,
recon 160 x 160). The data are smooth phantoms (tests/formats_helpers.py); ESPIRiT runs on
every slice, so these runs measure the readers plus map estimation.

With `--formats ismrmrd2d` it writes a 2D multi-slice ISMRMRD file of N slices of 8 coils x
320x256 (the sample's k-space, interleaved slice order) and measures preprocess (variant full:
ESPIRiT maps, reference and the default Poisson-disc mask, one per volume): the rate of the
pipeline with map estimation.

With `--coils 8,16,32` it measures the peak memory of one slice against the coil count: a 2D
multi-slice ISMRMRD file of 2 slices of 320 x 320 (readout 2x oversampled, 640 samples stored),
smooth phantom coils, preprocess data=full (ESPIRiT maps, reference, mask) in a fresh process
per coil count; it prints the peak RSS and its growth per coil.

With `--espirit` it times ESPIRiT alone, mrirecon's torch implementation against sigpy's
EspiritCalib, on N of the sample's slices (8 x 320x256) and the real brain, and reports how
far the maps are apart and the cg_sense PSNR with either set of maps.

With `--shards 4` it measures sharded preprocessing (docs/data.md): 4 raw 2D multi-slice ISMRMRD
files of --slices slices each (the sample's k-space, 8 coils x 320x256; ESPIRiT maps, reference and
a line mask per file) preprocessed as `-m data.shards=4 data.shard=0,1,2,3 hydra/launcher=joblib`
with hydra.launcher.n_jobs=1 and then 2 (hardware.threads=1 each), and as one file of the 4 raw
files. It reports the wall times and their ratio, the peak RSS of every process of the run (the
largest: one worker's, or the main process's where joblib runs the shards in it), the load
average before each run (the machine may be shared), and whether `reconstruct data.split=all
method=cg_sense` on the folder gives the same metrics.csv as on the single file (every column
but the timing).

Usage: python scripts/bench_preprocess.py [--slices 320] [--variants full,4bit_quarter,...]
       [--dir /tmp/...] [--threads 2] [--compression gzip] [--formats ismrmrd,fastmri,ismrmrd2d]
       python scripts/bench_preprocess.py --espirit [--slices 8] [--threads 2] [--repeats 2]
       python scripts/bench_preprocess.py --coils 8,16,32 [--threads 2]
       python scripts/bench_preprocess.py --shards 4 [--slices 6] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # formats_helpers: the test files' writers

import numpy as np
from bench_memory import vm_kb

from mrirecon.data.formats.sample import SampleSource
from mrirecon.data.h5_writer import DeepInPyWriter
from mrirecon.data.header import Header

FULL_SET = 4480  # the Stanford knee set: 4,480 slices
VARIANTS = ("full", "8bit_full", "4bit_full", "quarter", "8bit_quarter", "4bit_quarter")


def make_input(path: Path, num_slices: int, slices: list) -> float:
    """Write `num_slices` slices (the given ones, repeated) to `path`; returns the size in GB."""
    first = slices[0]
    with DeepInPyWriter(path, num_slices, first.maps.shape[0], first.img.shape, Header(source="bench_preprocess")) as w:
        for i in range(num_slices):
            w.write(i, slices[i % len(slices)])
    return path.stat().st_size / 1e9


def preprocess(
    source: Path, out: Path, variant: str, threads: int, compression: str | None, extra: list[str] | None = None
) -> tuple[float, float]:
    """Run preprocess in a fresh process; returns (wall seconds, peak RSS in MB)."""
    cmd = [
        sys.executable,
        "-m",
        "mrirecon",
        "preprocess",
        f"data={variant}",
        f"data.source={source}",
        f"data.path={out}",
        f"hardware.threads={threads}",
        f"hydra.run.dir={out.parent / ('run_' + variant)}",
        *(extra or []),
    ]
    if compression:
        cmd.append(f"data.compression={compression}")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, vm_kb("VmHWM", proc.pid) or 0)
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"preprocess {variant} failed: {proc.stderr.read().strip()}")
    return seconds, peak / 1024


def make_ismrmrd(path: Path, num_slices: int) -> float:
    """An ISMRMRD 3D acquisition with readout `num_slices` x 160 x 128, 8 coils; size in GB."""
    from formats_helpers import phantom_coils, write_ismrmrd_lines

    k2d = np.fft.fftshift(
        np.fft.fft2(np.fft.ifftshift(phantom_coils(8, (160, 128)), axes=(-2, -1)), norm="ortho"), axes=(-2, -1)
    )
    x = np.linspace(-1, 1, num_slices)
    profile = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(np.exp(-(x**2) / 0.3)), norm="ortho")).astype(np.complex64)
    write_ismrmrd_lines(path, (num_slices, 160, 128), lambda ky, kz: k2d[:, ky, kz, None] * profile[None, :])
    return path.stat().st_size / 1e9


def make_fastmri(path: Path, num_slices: int) -> float:
    """A fastMRI-layout multi-coil file: num_slices x 8 coils x 320 x 184, recon 160 x 160; size in GB."""
    from formats_helpers import phantom_coils, write_fastmri

    write_fastmri(path, [phantom_coils(8, (320, 184), seed=i % 4) for i in range(num_slices)], (160, 160))
    return path.stat().st_size / 1e9


def make_ismrmrd_2d(path: Path, num_slices: int) -> float:
    """An ISMRMRD 2D multi-slice scan: num_slices slices of 320 (readout) x 256 phase encodes,
    8 coils, the embedded sample's k-space (real knee anatomy, simulated coils), interleaved
    slice order; size in GB."""
    import ismrmrd
    from formats_helpers import ismrmrd_header, write_acquisitions

    sample = SampleSource()
    kspace = [sample.read(i).ksp for i in range(len(sample))]

    def acquisitions():
        for counter in [*range(0, num_slices, 2), *range(1, num_slices, 2)]:
            k = kspace[counter % len(kspace)]
            for ky in range(256):
                acq = ismrmrd.Acquisition(data=np.ascontiguousarray(k[:, :, ky]))
                acq.idx.kspace_encode_step_1, acq.idx.slice, acq.center_sample = ky, counter, 160
                acq.position, acq.slice_dir = (0.0, 0.0, 3.0 * counter), (0.0, 0.0, 1.0)
                yield acq

    header = ismrmrd_header((320, 256, 1), (320, 256, 1), 8, slices=num_slices)
    write_acquisitions(path, header, acquisitions())
    return path.stat().st_size / 1e9


def make_ismrmrd_coils(path: Path, coils: int) -> float:
    """A 2D multi-slice ISMRMRD file of 2 slices, `coils` coils, 320 x 320 with the readout 2x
    oversampled (phantom coils; formats_helpers.oversampled_coils); size in GB."""
    import ismrmrd
    from formats_helpers import centred_fftn, ismrmrd_header, oversampled_coils, write_acquisitions

    images = oversampled_coils(2, coils, (320, 320))

    def acquisitions():
        for counter in range(2):
            k = centred_fftn(images[counter], (-2, -1)).astype(np.complex64)
            for ky in range(320):
                acq = ismrmrd.Acquisition(data=np.ascontiguousarray(k[:, :, ky]))
                acq.idx.kspace_encode_step_1, acq.idx.slice, acq.center_sample = ky, counter, 320
                acq.position, acq.slice_dir = (0.0, 0.0, 3.0 * counter), (0.0, 0.0, 1.0)
                yield acq

    write_acquisitions(path, ismrmrd_header((640, 320, 1), (320, 320, 1), coils, slices=2), acquisitions())
    return path.stat().st_size / 1e9


def run_coils(work: Path, counts: list[int], threads: int) -> None:
    """Peak RSS of preprocess data=full on a 2-slice 320 x 320 file at each coil count."""
    print(f"2D multi-slice ISMRMRD, 2 slices of 320 x 320 (readout 640), variant full; threads {threads}")
    print(f"{'coils':>6}{'input GB':>10}{'seconds':>9}{'peak RSS MB':>13}{'MB per coil':>13}")
    peaks = []
    for coils in counts:
        source = work / f"coils_{coils}.h5"
        gb = make_ismrmrd_coils(source, coils)
        seconds, peak = preprocess(source, work / f"out_{coils}.h5", "full", threads, None)
        slope = f"{(peak - peaks[-1][1]) / (coils - peaks[-1][0]):.1f}" if peaks else ""
        peaks.append((coils, peak))
        print(f"{coils:>6}{gb:>10.3f}{seconds:>9.1f}{peak:>13.0f}{slope:>13}", flush=True)
        (work / f"out_{coils}.h5").unlink()
        source.unlink()
        shutil.rmtree(work / "run_full", ignore_errors=True)


FORMAT_INPUTS = {
    "ismrmrd": (make_ismrmrd, ["data.ismrmrd_buffer_mb=32"]),
    "fastmri": (make_fastmri, []),
    # the default mask (Poisson disc): one per volume, so drawn once per file
    "ismrmrd2d": (make_ismrmrd_2d, ["data.ismrmrd_buffer_mb=64"]),
}


def tree_peak_kb(pid: int) -> dict[int, int]:
    """VmHWM (KiB) of process `pid` and of all its descendants now (pid: peak)."""
    peaks, todo = {}, [pid]
    while todo:
        p = todo.pop()
        peak = vm_kb("VmHWM", p)
        if peak is not None:
            peaks[p] = peak
        for task in Path(f"/proc/{p}/task").glob("*/children") if Path(f"/proc/{p}").exists() else []:
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return peaks


def mrirecon(args: list[str], cwd: Path) -> tuple[float, float, int]:
    """`mrirecon ARGS` in a fresh process: (wall seconds, the largest peak RSS in MB among the
    process and its descendants, how many processes were seen)."""
    start = time.perf_counter()
    peaks: dict[int, int] = {}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mrirecon", *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err
        )
        while proc.poll() is None:
            for pid, peak in tree_peak_kb(proc.pid).items():
                peaks[pid] = max(peak, peaks.get(pid, 0))
            time.sleep(0.05)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"mrirecon {' '.join(args)} failed: {err.read().strip()[-2000:]}")
    return seconds, max(peaks.values(), default=0) / 1024, len(peaks)


def metrics_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def run_shards(work: Path, shards: int, slices: int, workers: int) -> None:
    """Sharded preprocess of `shards` raw files with 1 and `workers` joblib workers, and the
    single file of the same raw files; reconstruct on both, compared."""
    raw = work / "raw"
    raw.mkdir()
    gb = sum(make_ismrmrd_2d(raw / f"scan{k}.h5", slices) for k in range(shards))
    common = ["data=full", "data.source=raw", "hardware.threads=1", "data.ismrmrd_buffer_mb=64"]
    print(
        f"{shards} raw ISMRMRD 2D files x {slices} slices (8 coils x 320x256), {gb:.2f} GB; variant full; "
        f"{os.cpu_count()} CPUs; hardware.threads=1"
    )
    print(f"{'run':<34}{'load avg':>9}{'seconds':>9}{'peak RSS MB':>13}{'processes':>11}")
    times = {}
    for n in (1, workers):
        load = os.getloadavg()[0]
        args = ["preprocess", "-m", *common, f"data.path=ds{n}", f"data.shards={shards}",
                f"data.shard={','.join(map(str, range(shards)))}", "hydra/launcher=joblib",
                f"hydra.launcher.n_jobs={n}", f"hydra.sweep.dir=sweep{n}"]  # fmt: skip
        times[n], peak, procs = mrirecon(args, work)
        print(f"{f'sharded, {n} joblib worker(s)':<34}{load:>9.2f}{times[n]:>9.1f}{peak:>13.0f}{procs:>11}", flush=True)
    load = os.getloadavg()[0]
    seconds, peak, procs = mrirecon(["preprocess", *common, "data.path=one.h5", "hydra.run.dir=one"], work)
    print(f"{'one file (no shards)':<34}{load:>9.2f}{seconds:>9.1f}{peak:>13.0f}{procs:>11}")
    print(f"\nspeed-up {workers} workers / 1: {times[1] / times[workers]:.2f}x")
    for name in (f"ds{workers}", "one.h5"):
        mrirecon(["reconstruct", "data=full", f"data.path={name}", "data.split=all", "method=cg_sense",
                  f"hydra.run.dir=rec_{name}", "hardware.threads=2"], work)  # fmt: skip
    same = metrics_rows(work / f"rec_ds{workers}" / "metrics.csv") == metrics_rows(work / "rec_one.h5" / "metrics.csv")
    print(f"reconstruct cg_sense, every slice: metrics.csv of the folder {'==' if same else '!='} the single file's")


def run_espirit(num_slices: int, threads: int, repeats: int) -> None:
    """ESPIRiT maps of mrirecon (torch, batched) against sigpy's EspiritCalib on the embedded
    sample's fully sampled 8 x 320x256 k-space, and on the real 8-coil brain: time, map
    agreement, and the cg_sense reconstruction with either set of maps."""
    import statistics

    import sigpy.mri
    import torch

    from mrirecon.evaluation import metrics
    from mrirecon.methods import build_method
    from mrirecon.physics.coils import espirit_maps
    from mrirecon.physics.noise import estimate_noise_std
    from mrirecon.physics.sense import SenseOperator

    torch.set_num_threads(threads)
    sample = SampleSource()
    slices = [sample.read(i % len(sample)) for i in range(num_slices)]
    brain = np.load(Path(__file__).resolve().parent.parent / "tests" / "assets" / "brain_8coil_ksp_poisson8x.npy")

    def clock(fn) -> tuple[float, object]:
        best, out = float("inf"), None
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        return best, out

    def agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float, float, float]:
        a, b = (np.abs(ours) ** 2).sum(0) > 0.5, (np.abs(ref) ** 2).sum(0) > 0.5
        err = np.sqrt((np.abs(ours - ref) ** 2).sum(0))[a & b]
        return float(np.sqrt((err**2).mean())), float(np.quantile(err, 0.99)), float(err.max()), float((a != b).mean())

    def cg_psnr(s, maps: np.ndarray) -> float:
        ref = np.abs(
            np.sum(
                np.conj(maps)
                * np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(s.ksp, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)),
                0,
            )
        )
        y = torch.from_numpy(s.ksp * s.mask)[None]
        op = SenseOperator(torch.from_numpy(maps)[None], torch.from_numpy(s.mask)[None])
        sigma = estimate_noise_std(y, torch.from_numpy(s.mask)[None])
        with torch.no_grad():
            x = build_method({"name": "cg_sense"}).reconstruct(y, op, sigma)[0].numpy()
        return metrics.psnr(np.abs(x), ref)

    rows = []
    for s in slices:
        t_sigpy, ref = clock(lambda: sigpy.mri.app.EspiritCalib(s.ksp, show_pbar=False).run())
        t_ours, ours = clock(lambda: espirit_maps(torch.from_numpy(s.ksp)).numpy())
        rows.append((t_sigpy, t_ours, *agreement(ours, ref), cg_psnr(s, ref), cg_psnr(s, ours)))
    batch = torch.from_numpy(np.stack([s.ksp for s in slices]))
    t_batch, _ = clock(lambda: espirit_maps(batch))
    t_sigpy_b, ref_b = clock(lambda: sigpy.mri.app.EspiritCalib(brain, show_pbar=False).run())
    t_ours_b, ours_b = clock(lambda: espirit_maps(torch.from_numpy(brain)).numpy())
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    print(f"ESPIRiT maps, 8 coils x 320x256 (the sample's {num_slices} slices), threads {threads}, min of {repeats}")
    print(
        "| | sigpy s/slice | mrirecon s/slice | speed-up | mrirecon batched slices/s | map diff RMS / p99 / max | support disagreement |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| knee (median) | {med(0):.3f} | {med(1):.3f} | {med(0) / med(1):.1f}x | {num_slices / t_batch:.1f} | "
        f"{med(2):.4f} / {med(3):.4f} / {max(r[4] for r in rows):.3f} | {max(r[5] for r in rows):.2e} |"
    )
    rms, p99, mx, sup = agreement(ours_b, ref_b)
    print(
        f"| real brain 8 x 230x180 | {t_sigpy_b:.3f} | {t_ours_b:.3f} | {t_sigpy_b / t_ours_b:.1f}x | | {rms:.4f} / {p99:.4f} / {mx:.3f} | {sup:.2e} |"
    )
    diffs = [r[7] - r[6] for r in rows]
    print(
        f"\ncg_sense (lam auto) PSNR with sigpy's maps {statistics.mean(r[6] for r in rows):.3f} dB, with mrirecon's "
        f"{statistics.mean(r[7] for r in rows):.3f} dB; per-slice difference max |{max(diffs, key=abs):+.3f}| dB"
    )


def run_formats(work: Path, formats: list[str], large: int, threads: int) -> None:
    """Peak RSS of `preprocess data=full` on each raw format at N = large // 4 and large slices."""
    sizes = sorted({max(large // 4, 1), large})
    print(f"raw formats, variant full; threads {threads}")
    print(f"{'format':<10}{'slices':>7}{'input GB':>10}{'seconds':>9}{'slices/s':>10}{'peak RSS MB':>13}")
    runs: dict[tuple[str, int], tuple[float, float]] = {}
    for fmt in formats:
        make, extra = FORMAT_INPUTS[fmt]
        for n in sizes:
            source = work / f"{fmt}_{n}.h5"
            gb = make(source, n)
            out = work / f"out_{fmt}_{n}.h5"
            runs[fmt, n] = preprocess(source, out, "full", threads, None, extra)
            seconds, peak = runs[fmt, n]
            print(f"{fmt:<10}{n:>7}{gb:>10.3f}{seconds:>9.1f}{n / seconds:>10.2f}{peak:>13.0f}", flush=True)
            out.unlink()
            source.unlink()
            shutil.rmtree(work / "run_full", ignore_errors=True)
    if len(sizes) == 2:
        small, big = sizes
        print(
            f"\npeak RSS ratio = {big} slices / {small} slices (1.00: memory flat in N); steady-state slices/s = "
            f"({big} - {small}) / (t_{big} - t_{small}) (start-up excluded)"
        )
        for fmt in formats:
            (t0, m0), (t1, m1) = runs[fmt, small], runs[fmt, big]
            rate = f"{(big - small) / (t1 - t0):.2f}" if t1 > t0 else "n/a"
            print(f"{fmt:<10}{m1 / m0:>8.2f}{rate:>10}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=320, help="N of the larger input (the smaller has N // 4)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dir", default=None, help="working folder (default: a temporary folder, removed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compression", default=None, help="e.g. gzip (data.compression)")
    parser.add_argument(
        "--formats", default=None, help="ismrmrd,fastmri,ismrmrd2d: measure the raw-format readers instead"
    )
    parser.add_argument("--espirit", action="store_true", help="ESPIRiT maps: mrirecon's torch against sigpy")
    parser.add_argument("--coils", default=None, help="e.g. 8,16,32: peak memory of one slice per coil count")
    parser.add_argument("--repeats", type=int, default=2, help="--espirit: timing repeats (minimum)")
    parser.add_argument("--shards", type=int, default=None, help="e.g. 4: sharded preprocess of that many raw files")
    parser.add_argument("--workers", type=int, default=2, help="--shards: joblib workers, against 1")
    args = parser.parse_args()
    if args.espirit:
        run_espirit(args.slices, args.threads, args.repeats)
        return
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_preprocess_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.shards:
            run_shards(work, args.shards, args.slices, args.workers)
            return
        if args.coils:
            run_coils(work, [int(c) for c in args.coils.split(",")], args.threads)
            return
        if args.formats:
            unknown = set(args.formats.split(",")) - set(FORMAT_INPUTS)
            if unknown:
                raise SystemExit(f"--formats: unknown {sorted(unknown)} (expected {', '.join(FORMAT_INPUTS)})")
            run_formats(work, args.formats.split(","), args.slices, args.threads)
            return
        sample = SampleSource()
        slices = [sample.read(i) for i in range(len(sample))]
        sizes = sorted({max(args.slices // 4, 1), args.slices})
        variants = args.variants.split(",")
        print(f"input: 8 coils x 320x256 complex64; threads {args.threads}; compression {args.compression}")
        print(f"{'variant':<14}{'slices':>7}{'input GB':>10}{'seconds':>9}{'slices/s':>10}{'peak RSS MB':>13}")
        runs: dict[tuple[str, int], tuple[float, float]] = {}
        for n in sizes:
            source = work / f"input_{n}.h5"
            gb = make_input(source, n, slices)
            for variant in variants:
                out = work / f"{variant}_{n}.h5"
                runs[variant, n] = preprocess(source, out, variant, args.threads, args.compression)
                seconds, peak = runs[variant, n]
                print(f"{variant:<14}{n:>7}{gb:>10.2f}{seconds:>9.1f}{n / seconds:>10.2f}{peak:>13.0f}", flush=True)
                out.unlink()
                shutil.rmtree(work / f"run_{variant}", ignore_errors=True)
            source.unlink()
        if len(sizes) == 2:
            small, large = sizes
            print(
                f"\nsteady state (start-up excluded): slices/s = ({large} - {small}) / (t_{large} - t_{small});"
                f" peak RSS ratio = {large} slices / {small} slices; {FULL_SET:,} slices extrapolated"
            )
            print(f"{'variant':<14}{'slices/s':>10}{'RSS ratio':>11}{f'{FULL_SET} slices':>14}")
            for variant in variants:
                (t0, m0), (t1, m1) = runs[variant, small], runs[variant, large]
                if t1 <= t0:  # too few slices to see past the start-up time
                    print(f"{variant:<14}{'n/a':>10}{m1 / m0:>11.2f}{'n/a':>14}")
                    continue
                rate = (large - small) / (t1 - t0)
                print(f"{variant:<14}{rate:>10.2f}{m1 / m0:>11.2f}{(t1 + (FULL_SET - large) / rate) / 60:>10.1f} min")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
