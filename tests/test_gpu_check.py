"""scripts/gpu_check: the GPU check stays runnable until a GPU machine runs it. Its dry run takes
every step (CUDA tests, timings, CLI smoke runs) on the CPU at a tiny size."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_failing_step_is_a_row_not_a_crash():
    gpu_check = load_script()
    table = gpu_check.Table()
    table.run("divides", lambda: 1 / 0)
    table.run("works", lambda: gpu_check.Row("", seconds="0.1"))
    assert [(r.step, r.status) for r in table.rows] == [("divides", "FAIL"), ("works", "ok")]
    assert "ZeroDivisionError" in table.rows[0].note
    assert "| divides | FAIL |" in table.markdown()


def test_every_dependency_is_found_in_the_project_environment():
    """gpu_deps lists what a machine's own Python lacks; the project's .venv lacks nothing."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_deps.py")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == ""


@pytest.mark.slow
def test_dry_run_takes_every_step(tmp_path: Path):
    out = tmp_path / "table.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(ROOT / "scripts" / "gpu_check"), "--dry-run", "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("dry run (CPU, tiny size)")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| step")]
    steps = [row.split(" | ")[0].lstrip("| ") for row in rows]
    assert len(steps) == 15 and all(" | ok | " in row for row in rows), text
    assert "skipped" in rows[0]  # the CUDA tests are collected, and skip without CUDA
    assert any(s.startswith("dbp train step, DeepInPy ResNet k7, bf16") for s in steps)
    assert "torchrun train hardware=ddp" in steps
