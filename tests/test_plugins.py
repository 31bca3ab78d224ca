"""Plug-ins register themselves (mrirecon/registry.py): a registry finds every module of its
package, and an external plug-in named in MRIRECON_PLUGINS (a temporary package written here)
is listed by the registry, `--help` and config composition, is tested by tests/test_configs.py
without an edit there, and runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import one_error_line, run_cli

from mrirecon.cli.app import main
from mrirecon.registry import PLUGINS_ENV, PluginError, Registry, plugin_conf_dirs

TESTS = Path(__file__).parent
PLUGIN = "mrirecon_throwaway_plugin"

METHOD = '''
"""Landweber iterations x <- x + step A^H (y - A x), from x = A^H y (a throwaway plug-in)."""

import torch

from mrirecon.methods import Method, register
from mrirecon.methods.base import check_positive_int


@register("landweber")
class Landweber(Method):
    """Args: iterations (>= 1); step (maps normalised to sum |S|^2 = 1: 0 < step < 2)."""

    def __init__(self, iterations: int = 10, step: float = 1.0) -> None:
        self.iterations = check_positive_int("iterations", iterations)
        self.step = float(step)

    def reconstruct(self, y, op, noise_std=None):
        x = op.adjoint(y)
        for _ in range(self.iterations - 1):
            x = x + self.step * op.adjoint(y - op.forward(x))
        return x
'''

CONFIG = """\
# Landweber iterations from the zero-filled image (a throwaway plug-in).
name: landweber
iterations: 5  # gradient steps on 0.5 ||A x - y||^2
step: 1.0  # step size
"""


@pytest.fixture
def plugin(tmp_path: Path) -> dict[str, str]:
    """A plug-in package (one method and its config) in a temporary folder; the environment
    variables that make mrirecon load it."""
    package = tmp_path / "src" / PLUGIN
    (package / "conf" / "method").mkdir(parents=True)
    (package / "__init__.py").write_text('"""A throwaway mrirecon plug-in."""\n')
    (package / "landweber.py").write_text(textwrap.dedent(METHOD))
    (package / "conf" / "method" / "landweber.yaml").write_text(CONFIG)
    path = os.pathsep.join([str(tmp_path / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {"PYTHONPATH": path, PLUGINS_ENV: PLUGIN}


LISTING = """
import contextlib, io, json
from mrirecon.cli.app import main
from mrirecon.methods import REGISTRY
from mrirecon.cli.overrides import compose
from mrirecon.cli.configs import group_options
help = io.StringIO()
with contextlib.redirect_stdout(help):
    main(["reconstruct", "--help"])
method = compose("reconstruct", ["method=landweber", "method.iterations=3"]).method
print(json.dumps({"registered": sorted(REGISTRY), "options": group_options("method"),
                  "method": dict(method), "help": help.getvalue()}))
"""


def test_an_external_plugin_is_listed_by_the_registry_help_and_configs(plugin, tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", LISTING], env={**os.environ, **plugin}, cwd=tmp_path, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert {"landweber", "cg_sense"} <= set(found["registered"]) and "landweber" in found["options"]
    assert found["method"] == {"name": "landweber", "iterations": 3, "step": 1.0}
    assert "landweber" in found["help"] and "Landweber iterations from the zero-filled image" in found["help"]


PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rA"]


@pytest.mark.slow
def test_the_config_and_registry_tests_take_an_external_plugin_without_an_edit(plugin, tmp_path):
    """tests/test_configs.py, run with the plug-in loaded, builds and runs it from its config."""
    res = subprocess.run(
        [*PYTEST, str(TESTS / "test_configs.py"), "-k", "landweber or registered or names_a_known"],
        env={**os.environ, **plugin},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-3000:]
    assert "PASSED" in res.stdout and "test_every_method_builds_from_its_config_and_runs[landweber-None]" in res.stdout


def test_reconstruct_runs_an_external_plugin_on_the_sample(plugin, sample_dir, tmp_path):
    """`mrirecon reconstruct method=landweber` on the preprocessed sample (quarter scale)."""
    data = sample_dir / "outputs" / "data" / "quarter.h5"
    res = run_cli("reconstruct", "method=landweber", "data=quarter", f"data.path={data}", cwd=tmp_path, env=plugin)
    assert res.returncode == 0, res.stderr
    (summary_file,) = tmp_path.glob("outputs/reconstruct/*/*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["method"] == "landweber" and summary["method_config"] == {
        "name": "landweber",
        "iterations": 5,
        "step": 1.0,
    }
    assert summary["num_slices"] == 3 and 0 < summary["mean"]["nrmse"] < 1


def test_a_missing_plugin_is_one_error_line_naming_the_variable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(PLUGINS_ENV, "mrirecon_no_such_plugin")
    with pytest.raises(PluginError, match="mrirecon_no_such_plugin"):
        plugin_conf_dirs()
    assert main(["reconstruct", "method=cg_sense"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {PLUGINS_ENV}: no module named 'mrirecon_no_such_plugin'")
    res = run_cli("reconstruct", cwd=tmp_path, env={PLUGINS_ENV: "mrirecon_no_such_plugin"})
    assert PLUGINS_ENV in one_error_line(res) and not (tmp_path / "outputs").exists()


THINGS = """
from mrirecon.registry import Registry

THINGS = Registry("thing", "{package}")
"""

THING = """
from {package} import THINGS


@THINGS.register("{name}")
class Thing:
    pass
"""


def test_a_registry_finds_every_module_of_its_package_and_refuses_a_name_twice(tmp_path, monkeypatch):
    package = tmp_path / "mrirecon_throwaway_things"
    package.mkdir()
    (package / "__init__.py").write_text(THINGS.format(package=package.name))
    for module, name in (("first", "a"), ("second", "b"), ("_private", "hidden")):
        (package / f"{module}.py").write_text(THING.format(package=package.name, name=name))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    try:
        import mrirecon_throwaway_things as things  # type: ignore[import-not-found]

        registry: Registry[type] = things.THINGS
        assert sorted(registry) == ["a", "b"] and registry["a"].__module__ == f"{package.name}.first"
        with pytest.raises(ValueError, match=r"unknown thing 'c' \(expected one of a, b\)"):
            registry.lookup("c")
        with pytest.raises(ValueError, match="thing 'a' is registered twice"):
            registry.add("a", type("Other", (), {}))
        registry.add("a", registry["a"])  # the same class again (a re-imported module): no error
    finally:
        for module in [m for m in sys.modules if m.startswith(package.name)]:
            del sys.modules[module]
