"""Shared fixtures. Torch runs on one thread; the CLI runs in subprocesses."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import pytest
import torch
from helpers import preprocess_tiny, run_cli, tiny_arrays, write_h5

torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that run the CLI on the preprocessed sample are end-to-end runs: mark them slow
    (`scripts/test -m "not slow"` is the quick run)."""
    for item in items:
        if "sample_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


SAMPLE_VARIANTS = ("4bit_full", "8bit_full", "4bit_quarter", "8bit_quarter", "full", "quarter")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder where the embedded sample was preprocessed into SAMPLE_VARIANTS
    (outputs/data/<variant>.h5), once per test session."""
    cwd = tmp_path_factory.mktemp("sample")
    res = run_cli("preprocess", "-m", f"data={','.join(SAMPLE_VARIANTS)}", cwd=cwd)
    assert res.returncode == 0, res.stderr
    return cwd


@pytest.fixture
def tiny_h5(tmp_path: Path) -> Path:
    """A valid 6-slice, 4-coil, 32x24 DeepInPy file (no splits stored)."""
    return write_h5(tmp_path / "tiny.h5", tiny_arrays())


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny file preprocessed as variant `full` (in this process, once per session): a
    processed file with every key and attribute preprocess writes. Tests copy it to change it."""
    return preprocess_tiny(tmp_path_factory.mktemp("tiny_processed"))
