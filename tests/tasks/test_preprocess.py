"""preprocess in-process (Hydra's compose API, no CLI start-up): subjects of several files,
splits that never leave train empty, the scale and image-size edge cases; and, in two
subprocesses, that the same command writes the same arrays."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from helpers import TESTS, preprocess_in_process, tiny_arrays, write_h5

from mrirecon.data.h5 import DeepInPyFile
from mrirecon.data.header import SPLITS
from mrirecon.data.splits import check_splits, make_splits
from mrirecon.errors import UserError

run = preprocess_in_process


def split_subjects(f: DeepInPyFile) -> list[list[int]]:
    subjects, splits = f.subjects(), f.splits()
    return [np.unique(subjects[splits[name]]).tolist() for name in SPLITS]


# ---------------------------------------------------------------------------- subjects of several files


@pytest.mark.parametrize("per_subject", [None, 12])
def test_two_12_slice_files_are_two_subjects(tmp_path, per_subject, caplog):
    """Two DeepInPy files without a `subject` key: one subject each (with or without
    data.slices_per_subject=12), never split across train / val / test."""
    a = write_h5(tmp_path / "a.h5", tiny_arrays(n=12, seed=1))
    b = write_h5(tmp_path / "b.h5", tiny_arrays(n=12, seed=2))
    extra = [] if per_subject is None else [f"data.slices_per_subject={per_subject}"]
    with caplog.at_level(logging.INFO):
        f = run(tmp_path, f"data.source=[{a},{b}]", "data.val_fraction=0", "data.test_fraction=0.5", *extra)
    assert f.subjects().tolist() == [0] * 12 + [1] * 12
    assert split_subjects(f) == [[0], [], [1]]
    rule = "one per file" if per_subject is None else "slices_per_subject"
    assert f"2 subjects from 2 files ({rule})" in caplog.text
    assert "ignored" not in caplog.text


def test_slices_per_subject_cuts_files_into_volumes(tmp_path):
    a = write_h5(tmp_path / "a.h5", tiny_arrays(n=12, seed=1))
    b = write_h5(tmp_path / "b.h5", tiny_arrays(n=12, seed=2))
    f = run(tmp_path, f"data.source=[{a},{b}]", "data.slices_per_subject=6")
    assert f.subjects().tolist() == np.repeat([0, 1, 2, 3], 6).tolist()
    check_splits(f.splits(), f.subjects())  # no subject cut
    with pytest.raises(UserError, match=r"^data.slices_per_subject: .*12 slices.*5 slices.*a.h5"):
        run(tmp_path, f"data.source=[{a},{b}]", "data.slices_per_subject=5")


def test_patient_ids_join_files_of_one_patient(tmp_path, caplog):
    """Files that record a patient ID (here the `patient_id` attribute, as fastMRI's) belong to
    that patient: P1's two files are one subject, in one split."""
    paths = [
        write_h5(tmp_path / f"{name}.h5", tiny_arrays(n=3, seed=k), {"patient_id": patient})
        for k, (name, patient) in enumerate((("x", "P1"), ("y", "P2"), ("z", "P1"), ("w", "P3")))
    ]
    f = run(tmp_path, f"data.source=[{','.join(map(str, paths))}]", "data.val_fraction=0.3", "data.test_fraction=0.3")
    assert f.subjects().tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 2, 2, 2]
    assert f.volumes().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]  # per-volume metrics: one per file
    assert f.attrs["source_subject_ids"] == '["P1", "P2", "P3"]'
    assert split_subjects(f) == [[0], [1], [2]]


# ---------------------------------------------------------------------------- coil maps and model error


def phantom_with_cut_maps(tmp_path):
    """A DeepInPy file of the real 4-coil phantom scan (fully sampled, its own noise; Poisson R = 6)
    shipping maps whose support is cut by 12 pixels: the SENSE model cannot explain its rim."""
    import sigpy.mri
    from helpers import ASSETS
    from scipy import ndimage

    from mrirecon.data.completion import espirit_maps, sense_combine

    full = np.load(ASSETS / "phantom_4coil_gre_256.npy")
    maps = espirit_maps(full, 24, 0.02, 0.95)
    img = sense_combine(full, maps)
    maps = maps * ndimage.binary_erosion(np.abs(maps).sum(0) > 0, iterations=12)
    mask = (sigpy.mri.poisson(full.shape[1:], 6.0, calib=(24, 24), seed=2) != 0).astype(np.float32)
    arrays = {"imgs": img[None], "maps": maps[None].astype(np.complex64), "ksp": full[None], "masks": mask[None]}
    return write_h5(tmp_path / "phantom.h5", arrays), maps


def test_model_error_warns_and_data_maps_espirit_is_the_remedy(tmp_path, caplog):
    """Shipped maps that cut the object: one warning line naming the check and data.maps=espirit;
    with data.maps=espirit the maps are re-estimated from the measured k-space and it is silent."""
    source, cut = phantom_with_cut_maps(tmp_path)
    with caplog.at_level(logging.WARNING):
        f = run(tmp_path, f"data.source={source}")
    warnings = [r.getMessage() for r in caplog.records if "model error" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 1 slices" in warnings[0] and "data.maps=espirit" in warnings[0]
    assert np.array_equal(f.read(0).maps, cut) and f.attrs["maps"] == "source"
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        f = run(tmp_path, f"data.source={source}", "data.maps=espirit", "overwrite=true")
    assert "model error" not in caplog.text
    assert f.attrs["maps"].startswith("espirit") and (np.abs(f.read(0).maps).sum(0) > 0).sum() > (cut != 0).any(0).sum()
    with pytest.raises(UserError, match=r"^data.maps: 'sense' is not one of source, espirit"):
        run(tmp_path, f"data.source={source}", "data.maps=sense")


# ---------------------------------------------------------------------------- splits and edge cases


def test_make_splits_never_returns_an_empty_train_split():
    with pytest.raises(ValueError, match="no training subject among 4 subjects"):
        make_splits(np.arange(4), 0.49, 0.49)
    for n in range(1, 40):
        for val, test in ((0.15, 0.2), (0.3, 0.3), (0.45, 0.45), (0.0, 0.5)):
            try:
                s = make_splits(np.arange(n), val, test)
            except ValueError:
                continue
            assert len(s["train"]) >= 1


def test_no_training_subject_is_refused(tmp_path):
    src = write_h5(tmp_path / "four.h5", tiny_arrays(n=4))
    with pytest.raises(UserError) as info:
        run(tmp_path, f"data.source={src}", "data.val_fraction=0.49", "data.test_fraction=0.49")
    message = str(info.value)
    assert "data.val_fraction=0.49" in message and "data.test_fraction=0.49" in message and "4 subjects" in message
    assert not (tmp_path / "out.h5").exists()


def test_too_few_subjects_for_val_and_test_is_said(tmp_path, caplog):
    src = write_h5(tmp_path / "two.h5", tiny_arrays(n=2))
    with caplog.at_level(logging.WARNING):
        f = run(tmp_path, f"data.source={src}")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "data.val_fraction=0.15, data.test_fraction=0.2 with 2 subject" in warnings[0]
    assert "2 train / 0 val / 0 test" in warnings[0] and len(f.splits()["train"]) == 2


def test_stored_split_indices_out_of_range_are_refused(tmp_path):
    attrs = {"split_train": [0, 1, 2], "split_val": [3], "split_test": [4, 99]}
    src = write_h5(tmp_path / "stored.h5", tiny_arrays(), attrs)
    with pytest.raises(UserError, match=r"stored.h5: attribute 'split_test' holds \[4, 99\].*\[0, 5\]"):
        run(tmp_path, f"data.source={src}")
    with pytest.raises(UserError, match="split_test"):
        DeepInPyFile(src).split_indices("test")  # reconstruct and train read splits the same way


@pytest.mark.parametrize(
    "shape, overrides, names",
    [
        ((32, 24), ("data.scale=0.001",), ("data.scale: 0.001", "0x0", "7x7")),
        ((32, 24), ("data=8bit_quarter",), ("data.scale: 0.25", "8x6", "7x7")),
        ((6, 8), (), ("data.source", "6x8", "7x7")),
    ],
)
def test_images_under_7x7_are_refused(tmp_path, shape, overrides, names):
    src = write_h5(tmp_path / "small.h5", tiny_arrays(n=2, shape=shape))
    with pytest.raises(UserError) as info:
        run(tmp_path, f"data.source={src}", *overrides)
    assert all(name in str(info.value) for name in names), str(info.value)
    assert "\n" not in str(info.value) and not (tmp_path / "out.h5").exists()


# ---------------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_preprocess_is_deterministic_across_processes(tmp_path):
    """Two processes (different hash seeds) write the same arrays from a fastMRI file at variant
    8bit_full: ESPIRiT maps, the generated mask, the noise estimate and the regenerated k-space
    with its seeded noise."""
    sys.path.insert(0, str(TESTS))
    from formats_helpers import oversampled_coils, write_fastmri

    write_fastmri(tmp_path / "file1000001.h5", oversampled_coils(2), (32, 32), padding=(4, 44), noise=0.02)
    arrays = []
    for run_id in (1, 2):
        out = tmp_path / f"out{run_id}.h5"
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONHASHSEED=str(run_id))
        args = ["data=8bit_full", "data.source=file1000001.h5", f"data.path={out}", f"hydra.run.dir=run{run_id}"]
        args += ["data.espirit.calib_width=12", "data.mask=fastmri_random", "data.undersampling.accel=4"]
        res = subprocess.run(
            [sys.executable, "-m", "mrirecon", "preprocess", *args], cwd=tmp_path, env=env, capture_output=True
        )
        assert res.returncode == 0, res.stderr
        with h5py.File(out) as f:
            arrays.append({key: f[key][()] for key in f})
    assert arrays[0].keys() == arrays[1].keys() and {"ksp", "maps", "masks", "noise_std"} <= arrays[0].keys()
    for key in arrays[0]:
        assert np.array_equal(arrays[0][key], arrays[1][key]), key
