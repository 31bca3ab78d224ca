"""The built wheel: it holds every package, module and data file of the checkout, and installed
into a fresh virtual environment it runs preprocess -> train -> reconstruct -> evaluate from a
folder outside the checkout (an editable install would hide a package missing from the wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "mrirecon", "conf")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout (setuptools leaves build/ folders behind),
    offline: no build isolation, no dependencies."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    res = subprocess.run([*cmd, "-w", str(tmp), str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return next(tmp.glob("mrirecon-*.whl"))


def expected_files() -> set[str]:
    """What the wheel must hold: every module of mrirecon/ (so every package: each folder with an
    __init__.py), conf/ as mrirecon/conf, the sample's assets and py.typed."""
    package = ROOT / "mrirecon"
    files = {f"mrirecon/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")}
    files |= {f"mrirecon/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    files |= {f"mrirecon/{p.relative_to(package).as_posix()}" for p in (package / "data" / "assets").iterdir()}
    return files | {"mrirecon/py.typed"}


def test_wheel_holds_every_package_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.parent for p in (ROOT / "mrirecon").rglob("__init__.py")}
    assert {"trainables", "tasks", "data"} <= {p.name for p in packages}
    missing_packages = sorted(
        str(p.relative_to(ROOT)) for p in packages if f"{p.relative_to(ROOT).as_posix()}/__init__.py" not in names
    )
    assert not missing_packages, f"packages missing from the wheel: {missing_packages}"
    assert not sorted(expected_files() - names), "files missing from the wheel"


def test_config_found_in_built_wheel(wheel, tmp_path):
    """conf/ ships inside the wheel as mrirecon/conf and is used from there."""
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = "import mrirecon.cli.app as c; print(c.config_dir())"
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": ""}
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert found.stdout.strip() == str(tmp_path / "site" / "mrirecon" / "conf"), found.stderr


def fresh_venv(folder: Path) -> Path:
    """A virtual environment without mrirecon that reuses this environment's installed
    dependencies (a .pth file puts its site-packages on sys.path: nothing is downloaded). Its
    own site-packages comes first on sys.path, so the installed wheel is what imports."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "mrirecon_test_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


@pytest.mark.slow
def test_installed_wheel_runs_the_main_job(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg", PIP_DISABLE_PIP_VERSION_CHECK="1")
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q"]
    res = subprocess.run([*install, str(wheel)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    work = tmp_path / "work"  # outside the checkout: nothing can come from it
    work.mkdir()
    code = "import mrirecon, mrirecon.training.trainables; print(mrirecon.__file__)"
    where = subprocess.run([str(python), "-c", code], cwd=work, capture_output=True, text=True, env=env)
    assert where.stdout.strip().startswith(str(tmp_path / "venv")), where.stdout + where.stderr
    mrirecon = str(tmp_path / "venv" / "bin" / "mrirecon")
    checkpoint = "runs/train/checkpoints/best.pt"
    tiny = ["model.channels=8", "model.num_blocks=1", "method.num_unrolls=2", "method.cg_max_iter=4"]
    steps = [
        ["preprocess", "data=quarter"],
        ["train", "data=quarter", *tiny, "train.batch_size=5", "train.epochs=1", "hydra.run.dir=runs/train"],
        ["reconstruct", "method=dbp", "data=quarter", f"checkpoint={checkpoint}", "hydra.run.dir=runs/rec"],
        ["evaluate", "runs=[runs/rec]", "hydra.run.dir=runs/eval"],
    ]
    for args in steps:
        res = subprocess.run([mrirecon, *args], cwd=work, capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, f"mrirecon {' '.join(args)}: {res.stderr[-2000:]}"
    assert (work / "outputs" / "data" / "quarter.h5").is_file()
    results = (work / "runs" / "eval" / "results.csv").read_text().splitlines()
    assert len(results) == 2 and ",dbp," in results[1]
