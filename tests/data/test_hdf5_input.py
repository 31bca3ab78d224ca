"""HDF5 inputs hold their own data: external raw storage, external links and virtual datasets are
refused in every HDF5 file mrirecon reads (source files of each format, processed files,
evaluate's recon.h5), and so are soft links that lead nowhere; each is one error line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from formats_helpers import centred_fftn, phantom_coils, write_fastmri, write_ismrmrd
from helpers import fake_run, refused, run_main, tiny_arrays, write_h5

from mrirecon.data.completion import ReadOptions
from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.source import open_source
from mrirecon.errors import UserError
from mrirecon.evaluation.runs import Damaged, load

THREADS = "hardware.threads=1"


def _replace(f: h5py.File, name: str, make: Callable[[h5py.Group, str, np.ndarray], None]) -> None:
    """Replace dataset `name` of `f` by what `make(group, leaf, values)` puts there."""
    values = f[name][()]
    group_name, _, leaf = name.rpartition("/")
    group = f[group_name] if group_name else f
    del group[leaf]
    make(group, leaf, values)


def external_storage(folder: Path) -> Callable[[h5py.Group, str, np.ndarray], None]:
    """The dataset's bytes kept in a file outside the HDF5 file (as `imgs` pointing at
    /etc/passwd was): here a raw file holding the same values."""

    def make(group: h5py.Group, leaf: str, values: np.ndarray) -> None:
        raw = folder / f"{leaf}.raw"
        raw.write_bytes(np.ascontiguousarray(values).tobytes())
        group.create_dataset(leaf, shape=values.shape, dtype=values.dtype, external=[(str(raw), 0, raw.stat().st_size)])

    return make


def external_link(folder: Path) -> Callable[[h5py.Group, str, np.ndarray], None]:
    """The name an external link to the same values in another HDF5 file."""

    def make(group: h5py.Group, leaf: str, values: np.ndarray) -> None:
        other = folder / f"{leaf}_other.h5"
        with h5py.File(other, "w") as f:
            f[leaf] = values
        group[leaf] = h5py.ExternalLink(str(other), leaf)

    return make


def virtual_missing(folder: Path) -> Callable[[h5py.Group, str, np.ndarray], None]:
    """A virtual dataset whose source file does not exist: it reads as zeros."""

    def make(group: h5py.Group, leaf: str, values: np.ndarray) -> None:
        layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype)
        layout[...] = h5py.VirtualSource(str(folder / "missing.h5"), leaf, shape=values.shape)
        group.create_virtual_dataset(leaf, layout)

    return make


def dangling(folder: Path) -> Callable[[h5py.Group, str, np.ndarray], None]:
    def make(group: h5py.Group, leaf: str, values: np.ndarray) -> None:
        group[leaf] = h5py.SoftLink("/nowhere")

    return make


def loop(folder: Path) -> Callable[[h5py.Group, str, np.ndarray], None]:
    def make(group: h5py.Group, leaf: str, values: np.ndarray) -> None:
        group[leaf] = h5py.SoftLink("/loop_b")
        group.file["loop_b"] = h5py.SoftLink(f"{group.name.rstrip('/')}/{leaf}")

    return make


KINDS = {
    "external_storage": (external_storage, "keeps its data in external files"),
    "external_link": (external_link, "is an external link"),
    "virtual_dataset": (virtual_missing, "is a virtual dataset"),
    "dangling_soft_link": (dangling, "leads nowhere"),
    "soft_link_loop": (loop, "leads nowhere"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_open_hdf5_refuses_data_outside_the_file(tmp_path: Path, kind: str) -> None:
    from mrirecon.data.hdf5_input import HDF5InputError, open_hdf5

    make, words = KINDS[kind]
    path = write_h5(tmp_path / "f.h5", {"a": np.arange(6, dtype=np.float32), "b": np.ones(3)})
    with h5py.File(path, "a") as f:
        f.create_group("g")["c"] = np.zeros(2)
        _replace(f, "g/c", make(tmp_path))
    with pytest.raises(HDF5InputError) as info:
        open_hdf5(path)
    assert str(info.value).startswith(f"{path}: HDF5 object 'g/c' ") and words in info.value.reason
    assert "\n" not in str(info.value)


def test_open_hdf5_follows_soft_links_within_the_file(tmp_path: Path) -> None:
    from mrirecon.data.hdf5_input import open_hdf5

    path = write_h5(tmp_path / "f.h5", {"a": np.arange(4.0)})
    with h5py.File(path, "a") as f:
        f["b"] = h5py.SoftLink("/a")
        f.create_group("g")["c"] = h5py.SoftLink("/b")
    with open_hdf5(path) as f:
        assert f["g/c"][()].tolist() == [0, 1, 2, 3]


# ---------------------------------------------------------------------------- every input


def _deepinpy(tmp: Path) -> tuple[Path, str]:
    arrays = tiny_arrays(n=2, coils=2, shape=(8, 8))
    arrays["imgs"] = np.abs(arrays["imgs"]).astype(np.float32)  # external storage of complex: not in HDF5 2
    return write_h5(tmp / "src.h5", arrays), "imgs"


def _raw(tmp: Path) -> tuple[Path, str]:
    return write_h5(tmp / "src.h5", {"ksp": tiny_arrays(n=2, coils=2, shape=(8, 8))["ksp"]}), "ksp"


def _fastmri(tmp: Path) -> tuple[Path, str]:
    write_fastmri(tmp / "src.h5", np.stack([phantom_coils(2, (8, 8))]), (4, 4))
    return tmp / "src.h5", "reconstruction_rss"


def _ismrmrd(tmp: Path) -> tuple[Path, str]:
    return write_ismrmrd(tmp / "src.h5", centred_fftn(phantom_coils(2, (4, 6, 4)), (1, 2, 3))), "dataset/xml"


SOURCES = {"deepinpy": _deepinpy, "raw": _raw, "fastmri": _fastmri, "ismrmrd": _ismrmrd}


@pytest.mark.parametrize("kind", ["external_storage", "external_link", "virtual_dataset"])
@pytest.mark.parametrize("fmt", list(SOURCES))
def test_every_source_format_refuses_data_outside_the_file(tmp_path: Path, fmt: str, kind: str) -> None:
    """Detection and reading of each raw format go through the one checked open."""
    path, name = SOURCES[fmt](tmp_path)
    make, words = KINDS[kind]
    with h5py.File(path, "a") as f:
        if kind == "external_storage" and f[name].dtype.kind in "OS":  # variable-length strings cannot be external
            name = {"dataset/xml": "dataset/data"}.get(name, name)
        _replace(f, name, make(tmp_path))
    with pytest.raises(UserError) as info:
        open_source(str(path), ReadOptions()).close()
    assert f"HDF5 object '{name}'" in str(info.value) and words in str(info.value)


def test_preprocess_refuses_imgs_in_external_storage(tmp_path: Path, capsys, monkeypatch) -> None:
    """The reported case: `imgs` stored in another file (there /etc/passwd) was preprocessed with
    exit 0 and that file's bytes in the output. Now: one line, nothing written."""
    source, _ = _deepinpy(tmp_path)
    with h5py.File(source, "a") as f:
        _replace(f, "imgs", external_storage(tmp_path))
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.h5"
    code, _, err = run_main(
        capsys, "preprocess", "data=full", f"data.source={source}", f"data.path={out}", THREADS, "hydra.run.dir=run"
    )
    refused(code, err, str(source), "'imgs'", "external files", "imgs.raw")
    assert not out.exists()


@pytest.mark.parametrize("kind", list(KINDS))
def test_reconstruct_refuses_a_processed_file_with_data_outside_it(
    tiny_processed: Path, tmp_path: Path, kind: str, capsys, monkeypatch
) -> None:
    """A processed file whose `imgs` is a virtual dataset of a missing file read as zeros: a
    normal-looking NRMSE 1.0 row. Every kind is refused on open, with one line."""
    path = tmp_path / "p.h5"
    path.write_bytes(tiny_processed.read_bytes())
    make, words = KINDS[kind]
    with h5py.File(path, "a") as f:
        _replace(f, "imgs", make(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        capsys, "reconstruct", "method=zero_filled", "data=full", f"data.path={path}", "data.split=all", THREADS,
        "hydra.run.dir=run",
    )  # fmt: skip
    refused(code, err, str(path), "'imgs'", words)
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_deepinpy_file_checks_every_open(tmp_path: Path) -> None:
    """A file changed after it was opened once is checked again when a DataLoader worker (or any
    new process) opens it."""
    path = write_h5(tmp_path / "p.h5", tiny_arrays(n=2, coils=2, shape=(8, 8)))
    data = DeepInPyFile(path)
    data.close()
    with h5py.File(path, "a") as f:
        _replace(f, "ksp", external_link(tmp_path))
    with pytest.raises(UserError, match="'ksp' is an external link"):
        data.read(0)


@pytest.mark.parametrize("kind", ["external_link", "virtual_dataset", "external_storage"])
def test_evaluate_skips_a_recon_h5_with_data_outside_it(tmp_path: Path, kind: str) -> None:
    run = fake_run(tmp_path / "run", "cg_sense", "full", np.array([30.0, 31.0]))
    make, words = KINDS[kind]
    with h5py.File(run / "recon.h5", "a") as f:
        _replace(f, "recon" if kind != "external_storage" else "slices", make(tmp_path))
    with pytest.raises(Damaged, match=rf"^recon.h5 is unreadable \(HDF5 object '(recon|slices)' .*{words}"):
        load(run, "slice")
