"""Test helpers: tiny DeepInPy files and running the CLI in a subprocess or in this process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.transforms import fft2c_numpy
from mrirecon.physics.sense import SenseOperator

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent  # the checkout
ASSETS = TESTS / "assets"  # the real scans the tests use (attribution in its README.md)


def tiny_arrays(n: int = 6, coils: int = 4, shape: tuple[int, int] = (32, 24), seed: int = 0) -> dict[str, np.ndarray]:
    """Random but consistent DeepInPy arrays: smooth-ish images, normalised maps, ksp, masks."""
    rng = np.random.default_rng(seed)
    x, y = shape
    u, v = np.meshgrid(np.linspace(-1, 1, x), np.linspace(-1, 1, y), indexing="ij")
    imgs = np.stack(
        [(np.exp(-(u**2 + v**2) * (2 + i)) + 0.1 * rng.random(shape)) * np.exp(1j * 0.5 * u) for i in range(n)]
    )
    maps = rng.normal(size=(n, coils, x, y)) + 1j * rng.normal(size=(n, coils, x, y))
    maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=1, keepdims=True))
    ksp = fft2c_numpy(maps * imgs[:, None])
    masks = (rng.random((n, x, y)) < 0.4).astype(np.float32)
    masks[:, x // 2 - 3 : x // 2 + 3, y // 2 - 3 : y // 2 + 3] = 1
    return {
        "imgs": imgs.astype(np.complex64),
        "maps": maps.astype(np.complex64),
        "ksp": ksp.astype(np.complex64),
        "masks": masks,
    }


def centred_dft_matrix(n: int) -> np.ndarray:
    """The orthonormal centred DFT as an explicit (n, n) matrix, written from the definition
    F[k, j] = exp(-2 pi i (k - n//2)(j - n//2) / n) / sqrt(n) (no FFT, no shifts): an
    independent reference for fft2c = fftshift(fft(ifftshift(x))) at even and odd n."""
    k = np.arange(n) - n // 2
    return np.exp(-2j * np.pi * np.outer(k, k) / n) / np.sqrt(n)


def dft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D DFT of the last two axes by explicit matrices (complex128)."""
    fx, fy = centred_dft_matrix(x.shape[-2]), centred_dft_matrix(x.shape[-1])
    return fx @ np.asarray(x, np.complex128) @ fy.T


def mri_like(
    n: int = 3,
    shape: tuple[int, int] = (48, 40),
    coils: int = 8,
    accel: float = 8.0,
    noise: float = 0.02,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A small problem with the structure of a real scan, where the classical methods behave as
    on real data (zero-filling is beaten, CG amplifies noise at small lam): real knee slices of the
    sample shrunk to `shape` with a smooth phase, smooth coil profiles around the field of view
    (sum |S|^2 = 1), variable-density random masks with a fully sampled 8x8 centre (about
    `accel` / 1.2 effective acceleration) and complex Gaussian k-space noise of std `noise`
    (E|n|^2 = noise^2). Returns imgs, maps, ksp (noisy, fully sampled) and masks."""
    import cv2

    from mrirecon.data.formats.sample import knee_magnitudes

    rng = np.random.default_rng(seed)
    x, y = shape
    u, v = np.meshgrid(np.linspace(-1, 1, x), np.linspace(-1, 1, y), indexing="ij")
    knees = [cv2.resize(knee_magnitudes()[i], (y, x), interpolation=cv2.INTER_AREA) for i in range(n)]
    imgs = np.stack(knees) * np.exp(1j * (0.8 * u + 0.4 * v))
    angles = 2 * np.pi * np.arange(coils) / coils
    maps = np.stack([np.exp(-((u - np.cos(a)) ** 2 + (v - np.sin(a)) ** 2) + 1j * a * (1 + u)) for a in angles])
    maps = np.broadcast_to(maps / np.sqrt((np.abs(maps) ** 2).sum(0)), (n, coils, x, y))
    radius = np.sqrt(u**2 + v**2)
    masks = (rng.random((n, x, y)) < np.clip(4.4 / accel * (1 - radius / radius.max()) ** 2, 0, 1)).astype(np.float32)
    masks[:, x // 2 - 4 : x // 2 + 4, y // 2 - 4 : y // 2 + 4] = 1
    ksp = fft2c_numpy(maps * imgs[:, None])
    ksp = ksp + noise / np.sqrt(2) * (rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape))
    return {
        "imgs": imgs.astype(np.complex64),
        "maps": maps.astype(np.complex64),
        "ksp": ksp.astype(np.complex64),
        "masks": masks,
    }


def write_h5(path: Path, arrays: dict[str, np.ndarray], attrs: dict | None = None) -> Path:
    """Write arrays as datasets of an HDF5 file (no validation: tests make bad files too)."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f[key] = value
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
    return path


def run_cli(
    *args: str,
    cwd: Path,
    timeout: float = 300,
    preexec_fn: Callable[[], Any] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """`mrirecon ARGS` in a subprocess, output captured as text; `preexec_fn` runs in the child
    before exec (e.g. to set resource limits); `env`: variables added to this process's."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "mrirecon", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def main_in_process(*args: str) -> int:
    """`mrirecon ARGS` in this process: its exit code. sys.argv and the logging handlers that
    Hydra adds (on the streams of this call) are restored afterwards."""
    import mrirecon.cli.app as cli

    argv, root = sys.argv, logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return cli.main(list(args))
    except SystemExit as exc:  # pragma: no cover - main returns its codes
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
        for handler in [h for h in root.handlers if h not in handlers]:
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def run_main(capsys: Any, *args: str) -> tuple[int, str, str]:
    """`mrirecon ARGS` in this process (`capsys`: pytest's fixture): (exit code, stdout, stderr)."""
    code = main_in_process(*args)
    out, err = capsys.readouterr()
    return code, out, err


def preprocess_tiny(folder: Path) -> Path:
    """The tiny file (`tiny_arrays`) preprocessed as variant `full` in this process: folder/p.h5."""
    tiny = write_h5(folder / "tiny.h5", tiny_arrays())
    out = folder / "p.h5"
    code = main_in_process(
        "preprocess", "data=full", f"data.source={tiny}", f"data.path={out}", "hardware.threads=1",
        f"hydra.run.dir={folder / 'preprocess'}",
    )  # fmt: skip
    assert code == 0
    return out


def refused(code: int, err: str, *names: str) -> str:
    """Exit 2 and one `error:` line that names each of `names`; the line."""
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("error:"), err[-3000:]
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    return lines[0]


def files_under(path: Path) -> set[str]:
    """All files below `path`, relative, as strings."""
    return {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} if path.exists() else set()


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """Assert exit code 2 and exactly one `error:` line on stderr; return that line."""
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    return lines[0]


def fake_run(
    path: Path,
    method: str,
    variant: str,
    psnr: np.ndarray,
    params: dict[str, Any] | None = None,
    subjects: list[int] | None = None,
    accel: float = 6.0,
    shape: tuple[int, int] = (16, 16),
    summary_extra: dict[str, Any] | None = None,
) -> Path:
    """A reconstruct run dir: metrics.csv from per-slice PSNR (NRMSE and SSIM derived from it),
    summary.json (plus `summary_extra`) and recon.h5 with images whose error grows as PSNR falls
    (not the images the metrics would give: see image_run)."""
    path.mkdir(parents=True)
    slices = list(range(len(psnr)))
    nrmse, ssim = 10 ** (-psnr / 20), 1 - 10 ** (-psnr / 10)
    rows = ["slice,subject,volume,method,nrmse,psnr,ssim,seconds"]  # one volume per subject
    rows += [
        f"{s},{',' if subjects is None else f'{subjects[k]},{subjects[k]}'},{method},{nrmse[k]:.6g},{psnr[k]:.6g},{ssim[k]:.6g},0.25"
        for k, s in enumerate(slices)
    ]
    (path / "metrics.csv").write_text("\n".join(rows) + "\n")
    summary = {
        "method": method,
        "variant": variant,
        "split": "test",
        "data_path": f"outputs/data/{variant}.h5",
        "method_config": {"name": method, **(params or {})},
        "acceleration": {"mean": accel, "per_slice": [accel] * len(slices)},
        "seed": 723,
        "param_units": {"lam": "A^H A"}
        if method == "cg_sense"
        else {"lam": "x max|A^H y|"}
        if method.startswith("cs_")
        else {},
        **(summary_extra or {}),
    }
    (path / "summary.json").write_text(json.dumps(summary))
    u, v = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    ref = np.exp(-3 * (u**2 + v**2))[None].repeat(len(slices), 0)
    noise = np.random.default_rng(len(path.name)).normal(size=ref.shape) * 10 ** (-psnr / 20)[:, None, None]
    with h5py.File(path / "recon.h5", "w") as h5:
        h5["recon"], h5["imgs"], h5["slices"] = (ref + noise).astype(np.complex64), ref.astype(np.complex64), slices
    return path


def image_run(
    path: Path,
    method: str,
    recon: np.ndarray,
    reference: np.ndarray,
    subjects: list[int] | None = None,
    summary_extra: dict[str, Any] | None = None,
    volumes: list[int] | None = None,
    rss: np.ndarray | None = None,
) -> Path:
    """A reconstruct run dir whose metrics.csv holds the metrics of its recon.h5 images (S, X, Y),
    as reconstruct writes them (`volumes`: each slice's volume, by default its subject; with `rss`, recon.h5's rss)."""
    from mrirecon.evaluation import metrics

    path.mkdir(parents=True)
    volumes = subjects if volumes is None else volumes  # one volume per subject, unless given
    rows = ["slice,subject,volume,method,nrmse,psnr,ssim,seconds"]
    for s in range(len(recon)):
        m = metrics.slice_metrics(recon[s], reference[s])
        subject = "," if subjects is None else f"{subjects[s]},{volumes[s] if volumes is not None else ''}"
        rows.append(f"{s},{subject},{method},{m['nrmse']:.6g},{m['psnr']:.6g},{m['ssim']:.6g},0.5")
    (path / "metrics.csv").write_text("\n".join(rows) + "\n")
    summary = {"method": method, "variant": "full", "split": "test", "data_path": "/data/v.h5", "data_id": "v1"}
    summary.update(
        num_slices=len(recon), method_config={"name": method}, seed=723, param_units={}, **(summary_extra or {})
    )
    (path / "summary.json").write_text(json.dumps(summary))
    with h5py.File(path / "recon.h5", "w") as h5:
        h5["recon"], h5["imgs"], h5["slices"] = (
            recon.astype(np.complex64),
            reference.astype(np.complex64),
            np.arange(len(recon)),
        )
        if rss is not None:
            h5["rss"] = rss.astype(np.float32)
    return path


def gradients_match_finite_differences(module: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> bool:
    """torch.autograd.gradcheck of `loss()` (a scalar computed with `module`, in float64) with
    respect to every trainable parameter of `module` (fast mode: a random directional derivative
    against central differences). `loss` must be a deterministic function of the parameters:
    seed any random draw inside it."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    assert named and all(p.dtype == torch.float64 for _, p in named)
    flat = torch.cat([p.detach().reshape(-1) for _, p in named]).requires_grad_(True)

    class Loss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self) -> torch.Tensor:
            return loss()

    wrapper = Loss()

    def of_parameters(vector: torch.Tensor) -> torch.Tensor:  # one input: two evaluations in fast mode
        parts = vector.split([p.numel() for _, p in named])
        params = {f"inner.{n}": part.view_as(p) for (n, p), part in zip(named, parts)}
        return torch.func.functional_call(wrapper, params, ())

    return torch.autograd.gradcheck(of_parameters, (flat,), fast_mode=True, eps=1e-6, atol=1e-7, rtol=1e-5)


def preprocess_in_process(tmp_path: Path, *overrides: str) -> DeepInPyFile:
    """`mrirecon preprocess data=full OVERRIDES` in-process (Hydra's compose API); the written file."""
    from hydra import compose, initialize_config_dir

    from mrirecon.cli.app import config_dir
    from mrirecon.tasks import preprocess

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("preprocess", ["data=full", f"data.path={tmp_path / 'out.h5'}", *overrides])
    return DeepInPyFile(preprocess.run(cfg))


def crandn(*shape: int, seed: int = 0) -> torch.Tensor:
    """Seeded complex Gaussian noise of `shape`."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.complex64, generator=g)


def random_operator(
    batch: int, coils: int, shape: tuple[int, int], shared_mask: bool = False, seed: int = 0
) -> tuple[SenseOperator, torch.Tensor, torch.Tensor]:
    """A SENSE operator with random normalised maps and a random 40 % mask; (op, maps, mask)."""
    maps = crandn(batch, coils, *shape, seed=seed)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    g = torch.Generator().manual_seed(seed + 1)
    mask = (torch.rand((1 if shared_mask else batch, *shape), generator=g) < 0.4).float()
    return SenseOperator(maps, mask[0] if shared_mask else mask), maps, mask
