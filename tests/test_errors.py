"""End-to-end bad-input tests of the CLI.

The contract: every bad input prints exactly one `error:` line on stderr naming the file, key or
option and what was expected, exits with code 2, and leaves no partial output: no file at the
output path, no `.*.tmp` leftovers, no run dir from the failed run, and the input unchanged.
Each test runs in its own `tmp_path` (cwd) with `hydra.run.dir=<tmp_path>/run`.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import fake_run, files_under, one_error_line, run_cli, tiny_arrays, write_h5

pytestmark = pytest.mark.slow  # each case runs the CLI in a subprocess

SUBCOMMANDS = ("preprocess", "train", "reconstruct", "evaluate")


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path below `root`: a file's bytes, or None for a folder."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}


def cli(cwd: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """`mrirecon ARGS hydra.run.dir=<cwd>/run` in `cwd`."""
    return run_cli(*args, f"hydra.run.dir={cwd / 'run'}", cwd=cwd, **kwargs)


def assert_refused(res: subprocess.CompletedProcess, cwd: Path, before: dict[str, bytes | None], *names: str) -> str:
    """Exit 2, one `error:` line mentioning each of `names`, and `cwd` exactly as it was."""
    err = res.stderr.strip()
    assert res.returncode == 2, f"exit {res.returncode}\nstdout:\n{res.stdout[-2000:]}\nstderr:\n{res.stderr[-4000:]}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("error:"), err
    for name in names:
        assert name in lines[0], f"{name!r} not in {lines[0]!r}"
    assert not (cwd / "run").exists(), f"run dir left behind: {files_under(cwd / 'run')}"
    leftovers = [f for f in files_under(cwd) if Path(f).name.startswith(".") and f.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    after = snapshot(cwd)
    assert sorted(after) == sorted(before), f"paths changed: {sorted(set(after) ^ set(before))}"
    changed = [k for k in before if after[k] != before[k]]
    assert not changed, f"inputs changed: {changed}"
    return lines[0]


# ---------------------------------------------------------------------------- preprocess: bad source


def _missing_key(key: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        arrays = tiny_arrays()
        del arrays[key]
        return write_h5(tmp / "src.h5", arrays)

    return make


def _modified(**changes: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        arrays = tiny_arrays()
        for key, change in changes.items():
            arrays[key] = change(arrays[key].copy())
        return write_h5(tmp / "src.h5", arrays)

    return make


def _set(index: tuple, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(a: np.ndarray) -> np.ndarray:
        a[index] = value
        return a

    return change


def _text_file(tmp: Path) -> Path:
    path = tmp / "notes.txt"
    path.write_text("this is not an HDF5 file\n")
    return path


def _truncated(tmp: Path) -> Path:
    path = write_h5(tmp / "src.h5", tiny_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


BAD_SOURCES = {
    "missing_file": (lambda tmp: tmp / "missing.h5", ("missing.h5", "not found")),
    "not_hdf5": (_text_file, ("notes.txt", "HDF5")),
    "truncated": (_truncated, ("src.h5", "HDF5")),
    # A file without 'maps' is raw k-space (maps estimated with ESPIRiT, see test_raw.py), not an error.
    **{f"missing_{k}": (_missing_key(k), ("src.h5", f"'{k}'")) for k in ("imgs", "ksp", "masks")},
    "ksp_one_coil_fewer": (_modified(ksp=lambda a: a[:, :-1]), ("src.h5", "'ksp'", "(6, 3, 32, 24)", "(6, 4, 32, 24)")),
    "masks_other_y": (_modified(masks=lambda a: a[:, :, :-2]), ("src.h5", "'masks'", "(6, 32, 22)", "(6, 32, 24)")),
    "imgs_other_n": (_modified(imgs=lambda a: a[:-1]), ("src.h5", "'imgs'", "(5, 32, 24)")),
    "nan_in_ksp": (_modified(ksp=_set((4, 1, 3, 5), np.nan)), ("src.h5", "'ksp'", "slice 4", "non-finite")),
    "inf_in_maps": (_modified(maps=_set((3, 0, 0, 0), np.inf)), ("src.h5", "'maps'", "slice 3", "non-finite")),
    "mask_not_binary": (_modified(masks=_set((2, 0, 0), 0.5)), ("src.h5", "'masks'", "slice 2", "0.5", "0 and 1")),
    "zero_slices": (
        _modified(imgs=lambda a: a[:0], maps=lambda a: a[:0], ksp=lambda a: a[:0], masks=lambda a: a[:0]),
        ("src.h5", "empty dimension"),
    ),
    "zero_coils": (_modified(maps=lambda a: a[:, :0], ksp=lambda a: a[:, :0]), ("src.h5", "empty dimension")),
    "ksp_real": (_modified(ksp=lambda a: a.real.astype(np.float32)), ("src.h5", "'ksp'", "float32", "complex")),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES))
def test_preprocess_bad_source(tmp_path: Path, case: str) -> None:
    make, names = BAD_SOURCES[case]
    source = make(tmp_path)
    before = snapshot(tmp_path)
    res = cli(tmp_path, "preprocess", "data=full", f"data.source={source}", f"data.path={tmp_path / 'out.h5'}")
    assert_refused(res, tmp_path, before, *names)


# ---------------------------------------------------------------------------- preprocess: bad options


@pytest.mark.parametrize(
    "override, names",
    [
        ("data.bits=5", ("data.bits", "5", "4, 8 or null")),
        ("data.scale=0", ("data.scale", "(0, 1]")),
        ("data.scale=-1", ("data.scale", "-1", "(0, 1]")),
        ("data.noise=loud", ("data.noise", "loud", "'source' or a number")),
        ("data.noise=-0.1", ("data.noise", "-0.1")),
        ("data.slices_per_subject=4", ("data.slices_per_subject", "6 slices", "4 slices", "tiny.h5")),
        ("data.slices_per_subject=0", ("data.slices_per_subject", "integer >= 1")),
        ("data.scale=0.001", ("data.scale", "0.001", "0x0", "7x7")),  # was a cv2 traceback
    ],
)
def test_preprocess_bad_variant(tiny_h5: Path, tmp_path: Path, override: str, names: tuple[str, ...]) -> None:
    before = snapshot(tmp_path)
    res = cli(tmp_path, "preprocess", f"data.source={tiny_h5}", f"data.path={tmp_path / 'out.h5'}", override)
    assert_refused(res, tmp_path, before, *names)


def test_preprocess_refuses_stored_splits_that_cut_a_subject(tmp_path: Path) -> None:
    from mrirecon.data.h5 import Slice
    from mrirecon.data.h5_writer import DeepInPyWriter
    from mrirecon.data.header import Header

    arrays = tiny_arrays()
    source = tmp_path / "made_by_mrirecon.h5"  # a processed file used as a source: it records subjects
    header = Header(splits={"train": (0, 1, 2), "val": (3,), "test": (4, 5)})
    with DeepInPyWriter(source, 6, 4, (32, 24), header, subjects=np.array([0, 0, 1, 1, 2, 2])) as w:
        for i in range(6):
            w.write(i, Slice(arrays["imgs"][i], arrays["maps"][i], arrays["ksp"][i], arrays["masks"][i], 0.0))
    before = snapshot(tmp_path)
    res = cli(tmp_path, "preprocess", "data=full", f"data.source={source}", f"data.path={tmp_path / 'out.h5'}")
    assert_refused(res, tmp_path, before, "made_by_mrirecon.h5", "subject 1", "'train'", "'val'")


def test_preprocess_output_is_source(tiny_h5: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    res = cli(tmp_path, "preprocess", "data=full", f"data.source={tiny_h5}", f"data.path={tiny_h5}")
    assert_refused(res, tmp_path, before, "data.path", "tiny.h5", "source")


def test_preprocess_output_under_a_file(tiny_h5: Path, tmp_path: Path) -> None:
    (tmp_path / "afile.txt").write_text("a file, not a folder\n")
    before = snapshot(tmp_path)
    out = tmp_path / "afile.txt" / "out.h5"
    res = cli(tmp_path, "preprocess", "data=full", f"data.source={tiny_h5}", f"data.path={out}")
    assert_refused(res, tmp_path, before, "afile.txt/out.h5", "cannot write", "not a folder")


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make `folder` unwritable: chmod 555, or, where permissions are not enforced (root),
    the immutable attribute (chattr +i); skip the test if neither takes effect."""

    def writable() -> bool:
        try:
            (folder / "probe").touch()
        except PermissionError:
            return False
        (folder / "probe").unlink()
        return True

    folder.chmod(0o555)
    immutable = False
    try:
        if writable() and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        if writable():
            pytest.skip(f"cannot make a folder read-only for this user (euid {os.geteuid()})")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_preprocess_output_in_read_only_folder(tiny_h5: Path, tmp_path: Path) -> None:
    folder = tmp_path / "readonly"
    folder.mkdir()
    with read_only(folder):
        before = snapshot(tmp_path)
        res = cli(tmp_path, "preprocess", "data=full", f"data.source={tiny_h5}", f"data.path={folder / 'out.h5'}")
        assert_refused(res, tmp_path, before, "readonly/out.h5", "cannot write")


def test_reconstruct_into_read_only_run_dir(processed: Path, tmp_path: Path) -> None:
    data = shutil.copy(processed, tmp_path / "p.h5")
    folder = tmp_path / "readonly"
    folder.mkdir()
    with read_only(folder):
        before = snapshot(tmp_path)
        res = run_cli("reconstruct", "data=full", f"data.path={data}", f"hydra.run.dir={folder / 'run'}", cwd=tmp_path)
        assert "readonly/run" in one_error_line(res)
        assert snapshot(tmp_path) == before


def _file_size_limit(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_preprocess_disk_full(tmp_path: Path) -> None:
    """The embedded sample at full size is ~160 MB; writes past 20 MB fail with EFBIG."""
    before = snapshot(tmp_path)
    res = cli(
        tmp_path, "preprocess", "data=full", f"data.path={tmp_path / 'out.h5'}", preexec_fn=_file_size_limit(20 * 2**20)
    )
    assert_refused(res, tmp_path, before, "out.h5", "write failed")


# ---------------------------------------------------------------------------- config composition


@pytest.mark.parametrize(
    "args, names",
    [
        (("preprocess", "data=5bit_full"), ("data=5bit_full", "4bit_full")),
        (("reconstruct", "method=foo"), ("method=foo", "cg_sense")),
        (("foo",), ("'foo'", "preprocess", "reconstruct")),
        (("reconstruct", "nosuchkey=1"), ("nosuchkey",)),
        (("reconstruct", "method=flow_prior"), ("method=flow_prior", "flow_l1")),
        (("reconstruct", "method=dbp", "model=unet"), ("model: not read by mrirecon reconstruct", "holds its network")),
        (("train", "method=cs_tv", "model=flow"), ("method=cs_tv: not read", "model=flow", "method=flow_combined")),
        (("train", "train.optimizer=sgd"), ("train.optimizer", "'sgd'", "adam, rmsprop")),
    ],
    ids=[
        "unknown_variant",
        "unknown_method",
        "unknown_subcommand",
        "unknown_key",
        "no_flow_prior_method",
        "reconstruct_model",
        "method_with_flow",
        "unknown_optimizer",
    ],
)
def test_bad_config(tmp_path: Path, args: tuple[str, ...], names: tuple[str, ...]) -> None:
    before = snapshot(tmp_path)
    assert_refused(cli(tmp_path, *args), tmp_path, before, *names)


# ---------------------------------------------------------------------------- reconstruct


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny file preprocessed as variant `full` (must succeed), once for this module."""
    cwd = tmp_path_factory.mktemp("processed")
    tiny = write_h5(cwd / "tiny.h5", tiny_arrays())
    res = run_cli(
        "preprocess",
        "data=full",
        f"data.source={tiny}",
        f"data.path={cwd / 'p.h5'}",
        f"hydra.run.dir={cwd / 'run'}",
        cwd=cwd,
    )
    assert res.returncode == 0, res.stderr
    return cwd / "p.h5"


@pytest.mark.parametrize(
    "override, names",
    [
        ("method.max_iter=0", ("method.max_iter", "0", "integer >= 1")),
        ("method.max_iter=-3", ("method.max_iter", "-3", "integer >= 1")),
        ("method.lam=-1", ("method.lam", "-1", ">= 0")),
        ("data.split=bogus", ("data.split", "bogus", "train, val, test or all")),
        ("data.bits=5", ("data.bits", "5", "4, 8 or null")),
        ("data.scale=0", ("data.scale", "(0, 1]")),
        # keys reconstruct does not read, or that contradict the file (the old code: exit 0)
        ("data.coils=abc", ("data.coils", "a preprocess key", "data.path")),
        ("data.espirit.calib_width=12", ("data.espirit.calib_width", "a preprocess key")),
        ("data.bits=4", ("data.bits", "p.h5", "complex images")),
        ("data.scale=0.5", ("data.scale", "p.h5", "scale 1.0")),
        ("hardware.amp=true", ("hardware.amp", "method=cg_sense", "no bf16 path")),
    ],
)
def test_reconstruct_bad_option(processed: Path, tmp_path: Path, override: str, names: tuple[str, ...]) -> None:
    data = shutil.copy(processed, tmp_path / "p.h5")
    before = snapshot(tmp_path)
    res = cli(tmp_path, "reconstruct", "data=full", "method=cg_sense", f"data.path={data}", override)
    assert_refused(res, tmp_path, before, *names)


def test_reconstruct_split_indices_out_of_range(processed: Path, tmp_path: Path) -> None:
    data = shutil.copy(processed, tmp_path / "p.h5")
    with h5py.File(data, "a") as f:
        f.attrs["split_test"] = np.array([4, 6])  # 6 slices: 6 is out of range (was an IndexError)
    before = snapshot(tmp_path)
    res = cli(tmp_path, "reconstruct", "data=full", "method=zero_filled", f"data.path={data}")
    assert_refused(res, tmp_path, before, "p.h5", "'split_test'", "[0, 5]")


def test_reconstruct_missing_data(tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    res = cli(tmp_path, "reconstruct", "data=full", f"data.path={tmp_path / 'nope.h5'}")
    assert_refused(res, tmp_path, before, "data.path", "nope.h5", "not found")


# ---------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("case", ["nonexistent", "empty_dir", "no_runs"])
def test_evaluate_bad_runs(tmp_path: Path, case: str) -> None:
    (tmp_path / "empty").mkdir()
    runs = {
        "nonexistent": [f"runs=[{tmp_path / 'nope'}]"],
        "empty_dir": [f"runs=[{tmp_path / 'empty'}]"],
        "no_runs": [],
    }[case]
    names = {
        "nonexistent": ("runs", "nope", "not a folder"),
        "empty_dir": ("runs", "empty", "no reconstruct run"),
        "no_runs": ("runs", "at least one"),
    }[case]
    before = snapshot(tmp_path)
    assert_refused(cli(tmp_path, "evaluate", *runs), tmp_path, before, *names)


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("figure_slices=abc", ("figure_slices", "abc", "integer")),
        ("figure_slices=-1", ("figure_slices", "-1", "whole number >= 0")),
        ("level=subject", ("level", "subject", "slice, volume")),
        ("pool=method", ("pool", "method", "seed")),
        ("strict=maybe", ("strict", "maybe", "true or false")),
        ("reference=target", ("reference", "target", "auto, rss, sense")),
        ("crop=square", ("crop", "square", "fastmri")),
    ],
)
def test_evaluate_bad_option(tmp_path: Path, override: str, names: tuple[str, ...]) -> None:
    fake_run(tmp_path / "runs" / "cg", "cg_sense", "4bit_quarter", np.array([30.0, 31.0, 32.0]))
    before = snapshot(tmp_path)
    assert_refused(cli(tmp_path, "evaluate", f"runs={tmp_path / 'runs'}", override), tmp_path, before, *names)


def test_evaluate_strict_refuses_a_damaged_run(tmp_path: Path) -> None:
    fake_run(tmp_path / "runs" / "cg", "cg_sense", "4bit_quarter", np.array([30.0, 31.0, 32.0]))
    damaged = fake_run(tmp_path / "runs" / "zf", "zero_filled", "4bit_quarter", np.array([30.0, 31.0, 32.0]))
    (damaged / "recon.h5").write_bytes(b"\x89HDF\r\n" + bytes(100))  # a cut-off file
    before = snapshot(tmp_path)
    res = cli(tmp_path, "evaluate", f"runs=[{tmp_path / 'runs'}]", "strict=true")
    assert_refused(res, tmp_path, before, "runs", "zf", "recon.h5", "strict=true")


def test_evaluate_bad_baseline(tmp_path: Path) -> None:
    for method in ("cg_sense", "zero_filled"):
        fake_run(tmp_path / "runs" / method, method, "4bit_quarter", np.array([30.0, 31.0, 32.0]))
    before = snapshot(tmp_path)
    res = cli(tmp_path, "evaluate", f"runs=[{tmp_path / 'runs'}]", "baseline=cs_tv")
    assert_refused(res, tmp_path, before, "baseline", "cs_tv", "cg_sense, zero_filled")


# ---------------------------------------------------------------------------- help


@pytest.mark.parametrize("args", [(), ("--help",)], ids=["bare", "help"])
def test_usage(tmp_path: Path, args: tuple[str, ...]) -> None:
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in SUBCOMMANDS:
        assert name in res.stdout
    assert not files_under(tmp_path)


def test_hydra_help_and_cfg(tmp_path: Path) -> None:
    res = run_cli("reconstruct", "--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "method" in res.stdout and "cg_sense" in res.stdout
    res = run_cli("reconstruct", "--cfg", "job", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "method:" in res.stdout and "max_iter:" in res.stdout and "data:" in res.stdout
    assert not files_under(tmp_path)


# ---------------------------------------------------------------------------- hardware


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_asked_on_a_machine_without_cuda(processed: Path, tmp_path: Path) -> None:
    data = shutil.copy(processed, tmp_path / "p.h5")
    before = snapshot(tmp_path)
    res = cli(tmp_path, "reconstruct", "data=full", f"data.path={data}", "hardware=gpu")
    assert_refused(res, tmp_path, before, "hardware.device=cuda", "CUDA is not available", "hardware=cpu")


def test_device_auto_picks_what_is_there() -> None:
    import torch
    from omegaconf import OmegaConf

    from mrirecon.tasks.common import device_of

    for preset in ("ddp", "cpu"):
        cfg = OmegaConf.create(
            {"hardware": OmegaConf.load(Path(__file__).parents[1] / "conf" / "hardware" / f"{preset}.yaml")}
        )
        expected = "cuda" if preset == "ddp" and torch.cuda.is_available() else "cpu"
        assert device_of(cfg).type == expected
