"""The typed header of a processed file (data/header.py): every attribute preprocess writes is a
typed field (none is left over as an untyped extra), the writer's attributes read back as the same
header, a file of preprocess must carry all of them (older files are remade, not guessed at), and
`producer` reads only the attribute that names the subcommand."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import main_in_process, tiny_arrays, write_h5

from mrirecon.data.h5 import DeepInPyFile, Slice, producer
from mrirecon.data.h5_writer import DeepInPyWriter
from mrirecon.data.header import PROCESSED, SPLITS, Compression, Header, Variant
from mrirecon.errors import UserError

FULL = Header(
    producer="preprocess",
    version="0.1.0",
    created="2026-01-02T03:04:05+00:00",
    source="scan.cfl",
    source_id="/data/scan.cfl",
    source_attrs={"cfl_axes": "1,2", "readouts": '{"imaging": 24, "noise": 3}', "subject_id": "knee-7", "max": 2.5},
    variant=Variant(4, 0.25, name="4bit_quarter", noise="0.01"),
    splits={"train": (0, 1), "val": (), "test": (2,)},
    transpose=True,
    has_reference=False,
    has_rss=True,
    recon_size=(30, 20),
    mask="acquired",
    maps="source",
    noise_std_definition="noise std per k-space sample",
    prewhitened=True,
    coil_compression=Compression("SVD: 8 -> 4 virtual coils", 8, 0.9, 0.95),
)


def write(path: Path, header: Header, n: int = 3) -> Path:
    arrays = tiny_arrays(n=n)
    with DeepInPyWriter(path, n, 4, (32, 24), header, volumes=np.zeros(n, np.int64)) as w:
        for i in range(n):
            rss = np.abs(arrays["imgs"][i]).astype(np.float32)
            w.write(i, Slice(arrays["imgs"][i], arrays["maps"][i], arrays["ksp"][i], arrays["masks"][i], 0.1, rss))
    return path


def test_every_field_is_written_and_read_back(tmp_path: Path) -> None:
    with DeepInPyFile(write(tmp_path / "f.h5", FULL)) as f:
        assert f.header == FULL and f.header.extra == {}
        assert f.header.cfl_axes == (1, 2) and f.header.readouts == {"imaging": 24, "noise": 3}
        assert f.attrs["bits"] == 4 and f.attrs["source_cfl_axes"] == "1,2" and f.attrs["prewhitened"] == 1
        assert f.split_indices("test").tolist() == [2] and f.read(0).rss is not None
    with DeepInPyFile(tmp_path / "f.h5", transpose=True) as f:  # read as a source with data.transpose
        assert f.header.recon_size == (20, 30) and f.recon_size == (20, 30) and f.shape == (24, 32)


def test_complex_images_are_bits_none_and_stored_as_minus_one(tmp_path: Path) -> None:
    header = dataclasses.replace(FULL, variant=Variant(None, 1.0, name="full", noise="source"))
    with DeepInPyFile(write(tmp_path / "f.h5", header)) as f:
        assert f.attrs["bits"] == -1 and f.header.variant == Variant(None, 1.0, "full", "source")


def test_a_users_file_records_nothing_and_gets_the_defaults(tiny_h5: Path) -> None:
    with DeepInPyFile(tiny_h5) as f:
        assert f.header == Header()
        h = f.header
        assert h.variant is None and h.splits is None and h.has_reference and h.cfl_axes == (0, 1)
    assert producer(tiny_h5) is None


def test_every_attribute_preprocess_writes_is_a_typed_field(tiny_processed: Path) -> None:
    """Nothing preprocess writes is left untyped, and the header stores exactly what is on disk."""
    with DeepInPyFile(tiny_processed) as f:
        h = f.header
        stored = dict(f.attrs)
    assert h.extra == {} and h.producer == "preprocess" and h.variant == Variant(None, 1.0, "full", "source")
    assert h.mask == "stored" and h.maps == "source" and h.coil_compression is None and not h.prewhitened
    assert h.splits is not None and sorted(sum(h.splits.values(), ())) == list(range(6))
    written = h.attributes()
    assert sorted(written) == sorted(stored)
    for name, value in stored.items():
        assert np.array_equal(written[name], value) and np.asarray(written[name]).dtype == np.asarray(value).dtype


def test_coil_compression_is_recorded_in_the_header(tmp_path: Path) -> None:
    tiny = write_h5(tmp_path / "tiny.h5", tiny_arrays())
    out = tmp_path / "cc.h5"
    code = main_in_process(
        "preprocess", "data=full", f"data.source={tiny}", f"data.path={out}", "data.coils=2", "hardware.threads=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert code == 0
    with DeepInPyFile(out) as f:
        c = f.header.coil_compression
    assert c is not None and c.coils_acquired == 4 and "4 -> 2 virtual coils" in c.description
    assert 0 < c.energy_min <= c.energy_mean <= 1


@pytest.mark.parametrize("name", PROCESSED)
def test_a_processed_file_without_an_attribute_is_refused(tiny_processed: Path, tmp_path: Path, name: str) -> None:
    """Files of preprocess carry every attribute: one missing (an older file) is refused in one
    line naming it, instead of a default guessed for it."""
    path = Path(shutil.copy(tiny_processed, tmp_path / "p.h5"))
    with h5py.File(path, "a") as f:
        del f.attrs[name]
    with pytest.raises(UserError) as info:
        DeepInPyFile(path)
    message = str(info.value)
    assert message.startswith(str(path)) and f"'{name}' is missing" in message and "\n" not in message


@pytest.mark.parametrize("key", ["noise_std", "subject", "volume", "acquired"])
def test_a_processed_file_without_a_per_slice_key_is_refused(tiny_processed: Path, tmp_path: Path, key: str) -> None:
    path = Path(shutil.copy(tiny_processed, tmp_path / "p.h5"))
    with h5py.File(path, "a") as f:
        del f[key]
    with pytest.raises(UserError, match=f"key '{key}' is missing"):
        DeepInPyFile(path)


def test_producer_reads_only_the_subcommand_attribute(tmp_path: Path) -> None:
    """Files written before `mrirecon_subcommand` are no longer recognised by their other keys."""
    old = write_h5(tmp_path / "old.h5", tiny_arrays(), {"mrirecon_version": "0.0.9"})
    assert producer(old) is None
    new = write_h5(tmp_path / "new.h5", tiny_arrays(), {"mrirecon_subcommand": "preprocess"})
    assert producer(new) == "preprocess"


@pytest.mark.parametrize(
    ("attrs", "names"),
    [
        ({"bits": 4}, ("'scale' is missing",)),
        ({"variant": "full", "scale": 1.0}, ("'bits' is missing",)),
        ({"bits": 4, "scale": 0.0}, ("'scale'", "(0, 1]")),
        ({"coil_compression": "SVD"}, ("'coils_acquired' is missing",)),
        ({"source_readouts": "[1, 2]"}, ("'source_readouts'", "readout counts")),
        ({"mask": 3}, ("'mask'", "a string")),
    ],
)
def test_a_partial_or_malformed_record_is_refused(tmp_path: Path, attrs: dict, names: tuple[str, ...]) -> None:
    path = write_h5(tmp_path / "f.h5", tiny_arrays(), attrs)
    with pytest.raises(UserError) as info:
        DeepInPyFile(path)
    assert all(name in str(info.value) for name in names), info.value


def test_the_header_refuses_what_it_cannot_store() -> None:
    with pytest.raises(ValueError, match="source_id"):
        Header(source_attrs={"id": "x"})
    with pytest.raises(ValueError, match="BART"):
        Header(source_attrs={"cfl_axes": "3,3"})
    assert SPLITS == ("train", "val", "test")
