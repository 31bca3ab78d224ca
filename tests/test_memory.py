"""Declared sizes are checked against the memory available before anything is allocated: the
rule (mrirecon/io/memory.py: what one input makes mrirecon hold at once must fit in half of the
available memory) and every reader that allocates what a file declares (processed HDF5,
ISMRMRD, fastMRI, raw k-space, recon.h5, a checkpoint's network). Each refusal is one line
naming the file and its dimensions. The tests fake the available memory (`available`)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from formats_helpers import fastmri_header, ismrmrd_header, write_acquisitions
from helpers import ROOT, fake_run, refused, run_main, tiny_arrays, write_h5

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.source import ReadOptions, open_source
from mrirecon.errors import UserError
from mrirecon.evaluation.runs import Damaged, load
from mrirecon.io import memory
from mrirecon.io.checkpoint_entries import FORMAT
from mrirecon.io.files import save_checkpoint

GB = 10**9
THREADS = "hardware.threads=1"


@pytest.fixture
def available(monkeypatch: pytest.MonkeyPatch):
    """Set the memory that mrirecon.io.memory reports as available (bytes)."""

    def set_to(nbytes: float) -> None:
        monkeypatch.setattr(memory, "available_bytes", lambda: int(nbytes))

    return set_to


def test_available_memory_is_at_most_what_the_machine_has() -> None:
    total = memory._proc_kb("/proc/meminfo", "MemTotal") or 2**62
    assert 0 < memory.available_bytes() <= total


def test_available_memory_follows_the_address_space_limit() -> None:
    """Under `ulimit -v` (the limit that gave the reported MemoryError tracebacks) the address
    space left is what counts, not the machine's free memory."""
    limit = 3 * GB
    code = "from mrirecon.io.memory import available_bytes; print(available_bytes())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    ).stdout
    assert 0 < int(out) < limit


def test_require_refuses_more_than_half_of_the_available_memory(available) -> None:
    available(2 * GB)
    memory.require(0.99 * GB, "x.h5: declares 1 slice")
    with pytest.raises(UserError) as info:
        memory.require(1.01 * GB, "x.h5: declares 1 slice")
    assert str(info.value).startswith(
        "x.h5: declares 1 slice, which needs 1.0 GB at once, more than half of the 2.0 GB"
    )


# ---------------------------------------------------------------------------- processed files


def declared_deepinpy(path: Path, n: int, c: int, x: int, y: int) -> Path:
    """A DeepInPy file that declares (n, c, x, y) arrays and holds none of their data (a few KB)."""
    with h5py.File(path, "w") as f:
        for key, shape, dtype in (
            ("imgs", (n, x, y), np.complex64),
            ("maps", (n, c, x, y), np.complex64),
            ("ksp", (n, c, x, y), np.complex64),
            ("masks", (n, x, y), np.float32),
        ):
            f.create_dataset(key, shape=shape, dtype=dtype, chunks=(1, *shape[1:-2], 64, 64))
        for k, split in enumerate(("train", "val", "test")):
            f.attrs[f"split_{split}"] = np.arange(k, n, 3)
    return path


def test_processed_file_declaring_gigabytes_is_refused_on_open(tmp_path: Path, available) -> None:
    """The reported file: 10 KB declaring 15 x 8 x 6000 x 6000 reached 3.3 GB and a MemoryError."""
    path = declared_deepinpy(tmp_path / "big.h5", 15, 8, 6000, 6000)
    assert path.stat().st_size < 20_000
    available(4 * GB)
    with pytest.raises(UserError) as info:
        DeepInPyFile(path)
    assert str(info.value).startswith(f"{path}: declares 15 slices of 8 coils x 6000x6000")
    assert "4.6 GB" in str(info.value) and "4.0 GB of memory available" in str(info.value)


def test_reconstruct_refuses_a_processed_file_too_large_for_the_memory(
    tmp_path: Path, available, capsys, monkeypatch
) -> None:
    path = declared_deepinpy(tmp_path / "big.h5", 3, 4, 2000, 2000)  # 256 MB a slice: k-space and maps
    available(300e6)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys, "reconstruct", "method=zero_filled", "data=full", f"data.path={path}", THREADS, "hydra.run.dir=run"
    )
    refused(code, err, str(path), "3 slices of 4 coils x 2000x2000", "256 MB", "300 MB of memory available")
    assert not (tmp_path / "run" / "metrics.csv").exists()


# ---------------------------------------------------------------------------- raw sources


def declared_ismrmrd(path: Path, encoded: tuple[int, int, int], coils: int = 8) -> Path:
    """An ISMRMRD file of 200 readouts (10 x 20 phase encodes at the centre) whose header declares
    the encoded matrix `encoded`."""
    import ismrmrd

    ex, ey, ez = encoded

    def acquisitions():
        for k in range(200):
            acq = ismrmrd.Acquisition(data=np.ones((coils, ex), np.complex64))
            acq.idx.kspace_encode_step_1 = ey // 2 + k % 10
            acq.idx.kspace_encode_step_2 = ez // 2 + k // 10
            acq.center_sample = ex // 2
            yield acq

    return write_acquisitions(path, ismrmrd_header(encoded, encoded, coils), acquisitions())


def test_ismrmrd_header_declaring_gigabytes_is_refused_before_reading(tmp_path: Path, available) -> None:
    """The reported file: 800 KB declaring y = 30000, z = 2000 ran 115 s to 4.1 GB and a traceback."""
    path = declared_ismrmrd(tmp_path / "big.h5", (32, 30000, 2000))
    assert path.stat().st_size < 1_000_000
    available(6 * GB)
    with pytest.raises(UserError) as info:
        open_source(str(path), ReadOptions())
    message = str(info.value)
    assert message.startswith(f"{path}: ISMRMRD header declares an encoded matrix 32x30000x2000 of 8 coils")
    assert "8.2 GB at once" in message and "6.0 GB of memory available" in message


def test_ismrmrd_file_within_the_memory_opens(tmp_path: Path, available) -> None:
    path = declared_ismrmrd(tmp_path / "small.h5", (32, 20, 40))
    need = 2 * 8 * 8 * 20 * 40 + 8 * 20 * 40  # one slice's k-space and maps (8 coils), the line counts
    available(2 * need)
    open_source(str(path), ReadOptions()).close()
    available(2 * need - 2)
    with pytest.raises(UserError, match="encoded matrix 32x20x40"):
        open_source(str(path), ReadOptions())


def test_fastmri_kspace_declaring_gigabytes_is_refused(tmp_path: Path, available) -> None:
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", shape=(2, 16, 20000, 10000), dtype=np.complex64, chunks=(1, 1, 64, 64))
        f["ismrmrd_header"] = fastmri_header((20000, 10000), (320, 320))
    available(8 * GB)
    with pytest.raises(UserError, match=r"'kspace' declares 2 slices of 16 coils x 20000x10000 .* 51\.2 GB"):
        open_source(str(path), ReadOptions())


def test_raw_kspace_declaring_gigabytes_is_refused(tmp_path: Path, available) -> None:
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("ksp", shape=(2, 8, 20000, 20000), dtype=np.complex64, chunks=(1, 1, 64, 64))
    available(8 * GB)
    with pytest.raises(UserError, match=r"k-space declares 2 slices of 8 coils x 20000x20000 .* 51\.2 GB"):
        open_source(str(path), ReadOptions())


def test_recon_h5_declaring_gigabytes_is_a_damaged_run(tmp_path: Path, available) -> None:
    run = fake_run(tmp_path / "run", "cg_sense", "full", np.array([30.0, 31.0]))
    with h5py.File(run / "recon.h5", "a") as f:
        for key in ("recon", "imgs"):
            del f[key]
            f.create_dataset(key, shape=(2, 50000, 50000), dtype=np.complex64, chunks=(1, 64, 64))
    available(8 * GB)
    with pytest.raises(Damaged, match=r"declares images of 50000x50000 .* 40\.0 GB"):
        load(run, "slice")


# ---------------------------------------------------------------------------- checkpoints


def dbp_checkpoint(path: Path, **model: int) -> Path:
    """A small trained-looking dbp + resnet checkpoint whose model config is then changed by `model`
    (the weights stay those of the small network)."""
    from registered import trainable

    fresh = trainable("dbp", "resnet", (32, 24))
    state = {**fresh.checkpoint_state(), "model": fresh.module.state_dict(), "config": {}, "format": FORMAT}
    state["model_config"] = {**state["model_config"], **model}
    save_checkpoint(path, state)
    return path


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def test_checkpoint_whose_config_describes_a_huge_network_is_refused_before_it_is_built(
    tmp_path: Path, available, capsys, monkeypatch
) -> None:
    """The reported file: 60 KB with channels=6000 reached 4.2 GB before its error. Its network
    is sized on the meta device: nothing is allocated, whatever the config says."""
    path = dbp_checkpoint(tmp_path / "big.pt", channels=6000, num_blocks=8)
    assert path.stat().st_size < 100_000
    monkeypatch.chdir(tmp_path)
    available(4 * GB)
    before = _peak_rss()
    code, _, err = run_main(
        capsys, "reconstruct", "method=dbp", f"checkpoint={path}", "data=full", THREADS, "hydra.run.dir=run"
    )
    refused(code, err, f"checkpoint: {path}: its config", "channels=6000", "weights", "4.0 GB of memory available")
    assert _peak_rss() - before < 500e6


def test_checkpoint_whose_weights_do_not_fit_its_config_is_refused_before_it_is_built(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """With memory enough for the network its config describes, the weights that do not fit it
    are found on the meta device, before the real network is built."""
    path = dbp_checkpoint(tmp_path / "big.pt", channels=6000)
    monkeypatch.chdir(tmp_path)
    before = _peak_rss()
    code, _, err = run_main(
        capsys, "reconstruct", "method=dbp", f"checkpoint={path}", "data=full", THREADS, "hydra.run.dir=run"
    )
    refused(code, err, f"checkpoint: {path} does not match its own config", "size mismatch")
    assert _peak_rss() - before < 500e6


@pytest.mark.parametrize("method, model", [("dbp", "resnet"), (None, "flow"), ("unet_image", "fastmri_unet")])
def test_every_family_is_sized_on_the_meta_device(method: str | None, model: str, available) -> None:
    """The dry build of each family's network (the flow's nflows couplings compute with small
    index tensors while they build) allocates no large tensor and counts every weight."""
    from registered import model_name, trainable, trained_method

    from mrirecon.training.trainables import family_for
    from mrirecon.training.trainables.base import dry_build

    family = family_for(trained_method(method), model_name(model))
    fresh = trainable(method, model, (32, 32), keys={})  # the configs' full sizes
    state = {**fresh.checkpoint_state(), "model": fresh.module.state_dict()}
    tensors = [*fresh.module.parameters(), *fresh.module.buffers()]
    weights = sum(t.numel() * t.element_size() for t in tensors)
    available(2 * weights + 1)
    dry_build(family, state, "x.pt")
    available(2 * weights - 1)
    with pytest.raises(UserError, match="describes a network of more than"):
        dry_build(family, state, "x.pt")
    assert torch.nn.modules.module._global_parameter_registration_hooks == {}  # the guard cleans up


def test_tiny_h5_still_reads_with_the_machine_memory(tmp_path: Path) -> None:
    DeepInPyFile(write_h5(tmp_path / "t.h5", tiny_arrays())).read(0)


class _ReadsItsWeights:
    """A family whose build reads a value of a large tensor (the meta device cannot: the dry
    build leaves it to the real build, which runs under the same size guard)."""

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> torch.nn.Module:
        layer = torch.nn.Linear(300, 300)  # 90,000 weights: made on the meta device in the dry build
        if float(layer.weight.abs().sum()) < 0:
            raise AssertionError
        return layer


def test_a_build_the_meta_device_cannot_run_falls_back_to_the_guarded_real_build(available) -> None:
    from mrirecon.training.trainables.base import dry_build
    from mrirecon.training.trainables.sizing import size_guard

    dry_build(_ReadsItsWeights, {}, "x.pt")  # type: ignore[arg-type]
    available(2 * 4 * 300 * 301 + 2)
    with size_guard("checkpoint: x.pt"):
        _ReadsItsWeights.from_checkpoint({})
    available(2 * 4 * 300 * 300 - 2)
    with pytest.raises(
        UserError, match=r"^checkpoint: x.pt describes a network of more than 90,000 weights \(360 kB\)"
    ):
        with size_guard("checkpoint: x.pt"):
            _ReadsItsWeights.from_checkpoint({})
