#!/usr/bin/env python
"""The GPU check: CUDA tests, full-scale timings and CLI smoke runs, printed as one table.

Run it through `scripts/gpu_check` (which picks or makes a Python with CUDA torch). Steps:
  1. the CUDA tests (`pytest -m cuda`: CPU against CUDA for SENSE, CS, a DBP training step);
  2. at B x 8 coils x 320 x 256: one DBP training step (forward, backward, Adam; 4 unrolls, 2 ADMM
     steps, CG 10 iterations without early stop) with mrirecon's ResNet (kernel 3), the U-Net and
     DeepInPy's ResNet (kernel 7), each in float32 and with the denoiser under bf16 autocast
     (`hardware.amp=true`), with peak memory (`torch.cuda.max_memory_allocated`); a MoDL step;
     10 CG iterations of the SENSE normal operator; cs_wavelet (its config's defaults) per slice;
     ESPIRiT coil maps (preprocess's estimator) in slices per second;
  3. CLI smoke runs: a 1-process `torchrun ... train hardware=ddp` (nccl on CUDA), `train
     method=unet_image hardware=gpu` and reconstruct with its checkpoint, `reconstruct
     method=cg_sense hardware=gpu`, on the embedded sample's 4bit_quarter variant.
`--dry-run` (what CI runs, and what runs when CUDA is missing) takes the same steps on the CPU at
a tiny size (B=1, 4 coils, 32 x 24, one repeat; the CLI runs with hardware.device=cpu and gloo).
Exit status 1 if a step failed (its row says why); the table also goes to --out.

Usage: python scripts/gpu_check.py [--dry-run] [--batch 4] [--repeats 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent

import torch
from omegaconf import OmegaConf

from mrirecon.cli.configs import config_file
from mrirecon.data.batch import Batch
from mrirecon.data.h5 import whole_grid
from mrirecon.losses.supervised import SquaredErrorLoss
from mrirecon.methods import build_method
from mrirecon.nets import build_net
from mrirecon.physics.coils import espirit_maps
from mrirecon.physics.noise import resolve_noise_std
from mrirecon.physics.sense import SenseOperator
from mrirecon.solvers.cg import conjugate_gradient


@dataclass
class Size:
    """The problem of the timings: batch, coils, image size; repeats per timing."""

    batch: int
    coils: int
    shape: tuple[int, int]
    repeats: int


@dataclass
class Row:
    step: str
    status: str = "ok"
    seconds: str = ""
    rate: str = ""
    peak: str = ""
    note: str = ""


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def run(self, step: str, fn: Callable[[], Row]) -> None:
        """Run one step; a failure becomes a FAIL row with the exception's last line."""
        print(f"... {step}", file=sys.stderr, flush=True)
        try:
            row = fn()
        except Exception as exc:  # a failed step is reported, the others still run
            traceback.print_exc()
            row = Row(step, "FAIL", note=f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:160]}")
        row.step = step
        self.rows.append(row)

    def markdown(self) -> str:
        head = "| step | status | seconds | rate | peak memory | note |\n|---|---|---|---|---|---|\n"
        return head + "".join(
            f"| {r.step} | {r.status} | {r.seconds} | {r.rate} | {r.peak} | {r.note} |\n" for r in self.rows
        )


def config(group: str, option: str) -> dict[str, Any]:
    """conf/<group>/<option>.yaml as a plain dict, without what only `train` reads."""
    cfg = OmegaConf.to_container(OmegaConf.load(config_file(group, option)), resolve=True)
    assert isinstance(cfg, dict)
    cfg.pop("train_defaults", None)
    return cfg


def problem(size: Size, device: torch.device) -> Batch:
    """A batch of multi-coil data: smooth coil maps, a random mask at about R=4 with a fully
    sampled centre, a random image (the noise std unknown: estimated from the measured samples)."""
    g = torch.Generator().manual_seed(0)
    b, c, (x, y) = size.batch, size.coils, size.shape
    u = torch.linspace(-1, 1, x)[:, None]
    v = torch.linspace(-1, 1, y)[None, :]
    centres = torch.rand(c, 2, generator=g) * 2 - 1
    maps = torch.stack(
        [torch.exp(-((u - cx) ** 2 + (v - cy) ** 2)) * torch.exp(1j * (u * cx + v * cy)) for cx, cy in centres]
    )
    maps = (maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()).to(torch.complex64)
    mask = (torch.rand(b, x, y, generator=g) < 0.25).float()
    mask[:, x // 2 - x // 16 : x // 2 + x // 16, y // 2 - y // 16 : y // 2 + y // 16] = 1
    img = torch.randn(b, x, y, dtype=torch.complex64, generator=g)
    maps = maps.expand(b, c, x, y).contiguous()
    ksp = SenseOperator(maps, torch.ones(b, x, y)).forward(img)
    noise_std, acquired = torch.full((b,), float("nan")), torch.tensor([whole_grid((x, y))] * b)
    return Batch(ksp, maps, mask, noise_std, torch.arange(b), acquired, img=img).to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], size: Size, device: torch.device) -> tuple[float, str]:
    """Median seconds of `fn` over size.repeats calls after one warm-up, and the peak memory."""
    fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(size.repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "-"
    return statistics.median(times), peak


def training_step(method_name: str, model: str, amp: bool, size: Size, device: torch.device) -> Row:
    """One training step (supervised loss, backward, Adam) of method_name with the model option."""
    torch.manual_seed(0)
    method_cfg = {**config("method", method_name), "cg_eps": 0.0}
    method = build_method(method_cfg, denoiser=build_net(config("model", model))).to(device)
    method.amp = amp
    opt = torch.optim.Adam(method.parameters(), lr=1e-4)
    batch = problem(size, device)

    def step() -> None:
        opt.zero_grad()
        SquaredErrorLoss()(method, batch, torch.Generator().manual_seed(0)).backward()
        opt.step()

    seconds, peak = timed(step, size, device)
    return Row("", seconds=f"{seconds:.3f}", rate=f"{size.batch / seconds:.1f} slices/s", peak=peak)


def cg_iterations(size: Size, device: torch.device) -> Row:
    """10 iterations of CG on (A^H A + 0.01 I) x = A^H y (no early stop)."""
    batch = problem(size, device)
    op = SenseOperator(batch.maps, batch.mask)
    rhs = op.adjoint(batch.ksp * batch.mask[:, None])
    seconds, peak = timed(lambda: conjugate_gradient(op.gram, rhs, lam=0.01, max_iter=10, tol=0.0), size, device)
    return Row("", seconds=f"{seconds:.4f}", rate=f"{10 * size.batch / seconds:.0f} slice-iterations/s", peak=peak)


def cs_wavelet(size: Size, device: torch.device) -> Row:
    """cs_wavelet at its config's defaults (lam auto, 100 FISTA iterations, cycle spinning)."""
    method = build_method(config("method", "cs_wavelet"))
    batch = problem(size, device)
    op = SenseOperator(batch.maps, batch.mask)
    y = batch.ksp * batch.mask[:, None]
    sigma = resolve_noise_std(y, batch.mask)
    seconds, peak = timed(lambda: method.reconstruct(y, op, sigma), size, device)
    return Row(
        "", seconds=f"{seconds / size.batch:.3f} per slice", rate=f"{size.batch / seconds:.2f} slices/s", peak=peak
    )


def coil_maps(size: Size, device: torch.device) -> Row:
    """ESPIRiT maps from fully sampled k-space (preprocess's estimator, its default settings)."""
    ksp = problem(size, device).ksp
    seconds, peak = timed(lambda: espirit_maps(ksp), size, device)
    return Row(
        "", seconds=f"{seconds / size.batch:.3f} per slice", rate=f"{size.batch / seconds:.1f} slices/s", peak=peak
    )


def mrirecon_cli(args: list[str], log: Path, torchrun: bool = False) -> float:
    """Run `mrirecon <args>` (or one torchrun process of it) with this Python; its seconds.
    Raises RuntimeError with the last error line when it fails."""
    if torchrun:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=1",
            "-m",
            "mrirecon",
            *args,
        ]
    else:
        cmd = [sys.executable, "-m", "mrirecon", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
        raise RuntimeError(f"exit {done.returncode}: {last[:200]}")
    return seconds


class Smoke:
    """The CLI smoke runs on the embedded sample's 4bit_quarter variant, in one temporary folder."""

    def __init__(self, folder: Path, dry_run: bool) -> None:
        self.folder, self.log = folder, folder / "cli.log"
        self.data = folder / "4bit_quarter.h5"
        self.gpu = ["hardware.device=cpu"] if dry_run else []
        self.common = [f"data.path={self.data}", "data=4bit_quarter"]

    def preprocess(self) -> Row:
        seconds = mrirecon_cli(["preprocess", *self.common, f"hydra.run.dir={self.folder / 'preprocess'}"], self.log)
        return Row("", seconds=f"{seconds:.1f}")

    def ddp_train(self) -> Row:
        run = self.folder / "train_ddp"
        args = [
            "train",
            "hardware=ddp",
            *self.gpu,
            *self.common,
            "train.epochs=1",
            "model.channels=16",
            f"hydra.run.dir={run}",
        ]
        seconds = mrirecon_cli(args, self.log, torchrun=True)
        if not (run / "checkpoints" / "last.pt").is_file():
            raise RuntimeError(f"no checkpoint in {run}")
        backend = "gloo" if self.gpu else "nccl"
        joined = [line for line in self.log.read_text().splitlines() if "process group: backend" in line]
        if not joined or f"backend {backend}," not in joined[-1]:
            raise RuntimeError(f"the run did not join a {backend} process group ({joined[-1:] or 'no log line'})")
        return Row("", seconds=f"{seconds:.1f}", note=f"1 process, {backend}, 1 epoch of dbp (ResNet 16 channels)")

    def direct(self) -> Row:
        run = self.folder / "train_unet_image"
        hardware = ["hardware=gpu", *self.gpu]
        train = ["train", "method=unet_image", *hardware, *self.common, "train.epochs=1", "model.chans=8"]
        seconds = mrirecon_cli([*train, f"hydra.run.dir={run}"], self.log)
        recon = ["reconstruct", "method=unet_image", *hardware, *self.common, f"checkpoint={run}/checkpoints/best.pt"]
        seconds += mrirecon_cli([*recon, "figures=0", f"hydra.run.dir={self.folder / 'recon_unet_image'}"], self.log)
        return Row("", seconds=f"{seconds:.1f}", note="train 1 epoch, then reconstruct the test split")

    def cg_sense(self) -> Row:
        args = ["reconstruct", "method=cg_sense", "hardware=gpu", *self.gpu, *self.common, "figures=0"]
        seconds = mrirecon_cli([*args, f"hydra.run.dir={self.folder / 'recon_cg_sense'}"], self.log)
        return Row("", seconds=f"{seconds:.1f}")


def cuda_tests(dry_run: bool) -> Row:
    """The tests marked `cuda` (they skip without CUDA: the dry run checks that they are there)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-p", "no:xdist", "tests"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else done.stderr.strip()[-200:]
    print(done.stdout[-4000:], file=sys.stderr)
    collected = "passed" in summary or "skipped" in summary
    failed = done.returncode != 0 or "failed" in summary or "error" in summary or not collected
    if dry_run and "passed" in summary:  # without CUDA they must skip, not run
        failed = True
    return Row("", "FAIL" if failed else "ok", seconds=f"{time.perf_counter() - start:.1f}", note=summary)


def environment(device: torch.device) -> str:
    """One line naming the machine, the device and the versions."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    cuda = f", CUDA {torch.version.cuda}" if device.type == "cuda" else ""
    return f"{name}; torch {torch.__version__}{cuda}; Python {platform.python_version()}; {os.cpu_count()} CPUs"


def timings(table: Table, size: Size, device: torch.device) -> None:
    """The timed steps of the table at `size`."""
    where = f"{size.batch} x {size.coils} x {size.shape[0]} x {size.shape[1]}"
    for label, model in (("ResNet k3", "resnet"), ("U-Net", "unet"), ("DeepInPy ResNet k7", "resnet_deepinpy")):
        for amp in (False, True):
            kind = "bf16 autocast" if amp else "fp32"
            table.run(
                f"dbp train step, {label}, {kind} ({where})",
                lambda m=model, a=amp: training_step("dbp", m, a, size, device),
            )
    table.run(
        f"modl train step, ResNet k3, fp32 ({where})", lambda: training_step("modl", "resnet", False, size, device)
    )
    table.run(f"10 CG iterations, SENSE normal ({where})", lambda: cg_iterations(size, device))
    table.run(f"cs_wavelet, defaults ({where})", lambda: cs_wavelet(size, device))
    table.run(f"ESPIRiT coil maps ({where})", lambda: coil_maps(size, device))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at a tiny size")
    parser.add_argument("--batch", type=int, default=4, help="slices per batch of the timings (default 4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per step after a warm-up")
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    dry_run = args.dry_run or not torch.cuda.is_available()
    if not args.dry_run and dry_run:
        print("CUDA is not available here: running the dry run (the same steps on the CPU at a tiny size)")
    device = torch.device("cpu" if dry_run else "cuda")
    size = Size(1, 4, (32, 24), 1) if dry_run else Size(args.batch, 8, (320, 256), args.repeats)
    started = time.perf_counter()
    table = Table()
    table.run("CUDA tests (pytest -m cuda)", lambda: cuda_tests(dry_run))
    timings(table, size, device)
    with tempfile.TemporaryDirectory(prefix="mrirecon_gpu_check_") as tmp:
        smoke = Smoke(Path(tmp), dry_run)
        table.run("preprocess data=4bit_quarter (sample)", smoke.preprocess)
        table.run("torchrun train hardware=ddp", smoke.ddp_train)
        table.run("unet_image train + reconstruct hardware=gpu", smoke.direct)
        table.run("reconstruct method=cg_sense hardware=gpu", smoke.cg_sense)
        if any(r.status != "ok" for r in table.rows):
            print(
                (Path(tmp) / "cli.log").read_text()[-6000:] if (Path(tmp) / "cli.log").exists() else "", file=sys.stderr
            )
    text = (
        f"{'dry run (CPU, tiny size)' if dry_run else 'GPU check'}: {environment(device)}; "
        f"median of {size.repeats} after a warm-up; {time.perf_counter() - started:.0f} s in all\n\n{table.markdown()}"
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0 if all(r.status == "ok" for r in table.rows) else 1


if __name__ == "__main__":
    if shutil.which("nvidia-smi") and torch.cuda.is_available():
        subprocess.run(["nvidia-smi", "-L"], check=False)
    raise SystemExit(main())
