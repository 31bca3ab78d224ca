"""Every malformed key or attribute of a processed file is one error line: a list of corruptions
of a valid processed file (every attribute its typed header parses, data/header.py, and every
per-slice key; missing ones too, since a file of preprocess carries them all),
each read as the tasks read it, and the reported ones through `reconstruct` and `train` in this
process; and keys of the wrong kind in the raw sources (fastMRI, raw k-space) that preprocess
reads."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from formats_helpers import phantom_coils, write_fastmri
from helpers import refused, run_main, tiny_arrays, write_h5

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.source import ReadOptions, open_source
from mrirecon.errors import UserError

THREADS = "hardware.threads=1"


def attr(name: str, value: object) -> Callable[[h5py.File], None]:
    return lambda f: f.attrs.__setitem__(name, value)


def key(name: str, value: object) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        if name in f:
            del f[name]
        f[name] = value

    return change


def link(name: str, target: object) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[name]
        f[name] = target
        if isinstance(target, h5py.SoftLink):
            f[target.path.lstrip("/")] = h5py.SoftLink(f"/{name}")  # a loop

    return change


def without(name: str) -> Callable[[h5py.File], None]:
    """Remove the attribute or, when there is none of that name, the key `name`."""

    def change(f: h5py.File) -> None:
        if name in f.attrs:
            del f.attrs[name]
        else:
            del f[name]

    return change


def group(name: str) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        if name in f:
            del f[name]
        f.create_group(name)

    return change


N = 6  # slices of the tiny processed file
CORRUPTIONS: dict[str, tuple[Callable[[h5py.File], None], tuple[str, ...]]] = {
    # attributes (written by preprocess, read by train and reconstruct)
    "source_cfl_axes_text": (attr("source_cfl_axes", "x,y"), ("'source_cfl_axes'", "'x,y'")),
    "source_cfl_axes_same": (attr("source_cfl_axes", "0,0"), ("'source_cfl_axes'",)),
    "source_cfl_axes_number": (attr("source_cfl_axes", 5), ("'source_cfl_axes'",)),
    "bits_text": (attr("bits", "eight"), ("'bits'", "-1 (complex), 4 or 8")),
    "bits_value": (attr("bits", 3), ("'bits'",)),
    "prewhitened_text": (attr("prewhitened", "yes"), ("'prewhitened'",)),
    "has_reference_text": (attr("has_reference", "false"), ("'has_reference'",)),
    "transpose_number": (attr("transpose", 7), ("'transpose'",)),
    "source_id_number": (attr("source_id", 5), ("'source_id'", "a string")),
    "noise_definition_array": (attr("noise_std_definition", np.arange(3)), ("'noise_std_definition'",)),
    "coil_compression_number": (attr("coil_compression", 1), ("'coil_compression'",)),
    "recon_size_text": (attr("recon_size", np.array([b"a", b"b"])), ("'recon_size'",)),
    "recon_size_zero": (attr("recon_size", np.array([0, 5])), ("'recon_size'",)),
    "split_text": (attr("split_test", np.array([b"a"])), ("'split_test'",)),
    "split_out_of_range": (attr("split_test", np.array([100])), ("'split_test'", "[0, 5]")),
    "scale_text": (attr("scale", "quarter"), ("'scale'", "(0, 1]")),
    "mask_number": (attr("mask", 3), ("'mask'", "a string")),
    "maps_number": (attr("maps", 1), ("'maps'", "a string")),
    "producer_number": (attr("mrirecon_subcommand", 1), ("'mrirecon_subcommand'", "a string")),
    "source_id_missing": (without("source_id"), ("'source_id'", "missing", "preprocess")),
    "split_val_missing": (without("split_val"), ("'split_val'", "missing")),
    # per-slice keys
    "noise_std_short": (key("noise_std", np.ones(2, np.float32)), ("'noise_std'", "(2,)", f"({N},)")),
    "noise_std_text": (key("noise_std", np.array([b"x"] * N)), ("'noise_std'",)),
    "noise_std_group": (group("noise_std"), ("'noise_std'", "a group")),
    "noise_std_negative": (key("noise_std", -np.ones(N, np.float32)), ("'noise_std'", ">= 0")),
    "subject_text": (key("subject", np.array([b"a"] * N)), ("'subject'", "integers")),
    "subject_short": (key("subject", np.arange(2)), ("'subject'",)),
    "subject_float": (key("subject", np.arange(N) + 0.5), ("'subject'",)),
    "volume_short": (key("volume", np.arange(2)), ("'volume'", f"({N},)")),
    "volume_missing": (without("volume"), ("'volume'", "missing")),
    "acquired_columns": (key("acquired", np.zeros((N, 3), np.int64)), ("'acquired'",)),
    "acquired_outside": (key("acquired", np.tile([0, 99, 0, 24], (N, 1))), ("'acquired'",)),
    "rss_shape": (key("rss", np.ones((N, 4, 4), np.float32)), ("'rss'",)),
    "masks_values": (key("masks", np.full((N, 32, 24), 0.5, np.float32)), ("'masks'", "0.5")),
    "imgs_nan": (key("imgs", np.full((N, 32, 24), np.nan, np.complex64)), ("'imgs'", "non-finite")),
    # links
    "noise_std_dangling_external": (link("noise_std", h5py.ExternalLink("/gone.h5", "x")), ("'noise_std'",)),
    "subject_soft_link_loop": (link("subject", h5py.SoftLink("/other")), ("subject", "soft link", "leads nowhere")),
}
REPORTED = (
    "source_cfl_axes_text",
    "noise_std_short",
    "subject_text",
    "noise_std_dangling_external",
    "subject_soft_link_loop",
)


def corrupted(source: Path, folder: Path, case: str) -> Path:
    path = folder / f"{case}.h5"
    shutil.copy(source, path)
    with h5py.File(path, "a") as f:
        CORRUPTIONS[case][0](f)
    return path


def read_as_the_tasks_do(path: Path) -> None:
    """What train and reconstruct read of a processed file: open, splits, subjects, the BART
    plane, every slice (with its noise std and acquired region)."""
    with DeepInPyFile(path) as data:
        data.split_indices("test")
        data.subjects()
        for i in range(len(data)):
            data.read(i)
        assert data.header.cfl_axes


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_every_malformed_key_or_attribute_is_refused_by_the_reader(tiny_processed: Path, tmp_path: Path, case: str):
    path = corrupted(tiny_processed, tmp_path, case)
    with pytest.raises(UserError) as info:
        read_as_the_tasks_do(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert all(name in message for name in CORRUPTIONS[case][1]), message


def test_the_uncorrupted_file_reads(tiny_processed: Path) -> None:
    """The corruptions above are the only difference: the file itself is read."""
    read_as_the_tasks_do(tiny_processed)


@pytest.mark.parametrize("case", REPORTED)
def test_reconstruct_refuses_the_reported_malformed_files_in_one_line(
    tiny_processed: Path, tmp_path: Path, case: str, capsys, monkeypatch
) -> None:
    """The reported tracebacks (exit 1), now one line and exit 2."""
    path = corrupted(tiny_processed, tmp_path, case)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys, "reconstruct", "method=zero_filled", "data=full", f"data.path={path}", "output.cfl=true",
        "figures=0", THREADS, "hydra.run.dir=run",
    )  # fmt: skip
    refused(code, err, str(path), *CORRUPTIONS[case][1])
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_train_refuses_a_malformed_bits_attribute_in_one_line(
    tiny_processed: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """train reads `bits` (int(): a traceback for 'eight' before)."""
    path = corrupted(tiny_processed, tmp_path, "bits_text")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys, "train", "method=dbp", "model=resnet", "data=full", f"data.path={path}", "train.epochs=1",
        "model.channels=4", "model.num_blocks=1", THREADS, "hydra.run.dir=run",
    )  # fmt: skip
    refused(code, err, str(path), *CORRUPTIONS["bits_text"][1])


# ---------------------------------------------------------------------------- raw sources


def _fastmri(tmp: Path) -> Path:
    write_fastmri(tmp / "src.h5", np.stack([phantom_coils(2, (32, 32))]), (16, 16))
    return tmp / "src.h5"


def _raw(tmp: Path) -> Path:
    a = tiny_arrays(n=2, coils=2, shape=(16, 16))
    return write_h5(tmp / "src.h5", {"ksp": a["ksp"], "imgs": a["imgs"], "masks": a["masks"]})


SOURCE_CORRUPTIONS = {
    "fastmri_header_group": (_fastmri, group("ismrmrd_header"), ("'ismrmrd_header'", "a group")),
    "fastmri_mask_group": (_fastmri, group("mask"), ("'mask'", "a group")),
    "fastmri_rss_group": (_fastmri, group("reconstruction_rss"), ("'reconstruction_rss'", "a group")),
    "raw_ksp_group": (_raw, group("ksp"), ("'ksp'", "a group")),
    "raw_imgs_group": (_raw, group("imgs"), ("'imgs'", "a group")),
    "raw_masks_text": (_raw, key("masks", np.full((2, 16, 16), b"a")), ("'masks'", "numeric")),
}


@pytest.mark.parametrize("case", list(SOURCE_CORRUPTIONS))
def test_source_key_of_the_wrong_kind_is_refused_on_open(tmp_path: Path, case: str) -> None:
    make, change, names = SOURCE_CORRUPTIONS[case]
    path = make(tmp_path)
    with h5py.File(path, "a") as f:
        change(f)
    with pytest.raises(UserError) as info:
        open_source(str(path), ReadOptions()).close()
    assert str(info.value).startswith(str(path)) and all(n in str(info.value) for n in names), info.value
