"""Habits the code keeps, checked on the source: short functions, and dependencies that point
one way (cli -> tasks -> methods -> physics / solvers / nets; physics knows nothing about
networks, networks nothing about physics)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import ROOT

PACKAGE = ROOT / "mrirecon"
MAX_LINES = 60
# subpackage -> the mrirecon subpackages/modules it must not import
FORBIDDEN = {
    "physics": ("nets", "methods", "trainables", "tasks", "cli", "training"),
    "solvers": ("nets", "methods", "trainables", "tasks", "cli", "training"),
    "nets": ("physics", "solvers", "methods", "trainables", "tasks", "cli"),
    "methods": ("trainables", "tasks", "cli", "training"),
    "data": ("methods", "nets", "trainables", "tasks", "cli", "training"),
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def functions(path: Path) -> list[tuple[str, int]]:
    """(name:line, length in lines including signature and docstring) of every function."""
    tree = ast.parse(path.read_text())
    return [
        (f"{path.name}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1)
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None
    ]


def imported(path: Path) -> set[str]:
    """The mrirecon modules `path` imports (absolute names, e.g. 'mrirecon.physics.sense')."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return {name for name in names if name.startswith("mrirecon")}


def test_no_function_is_longer_than_60_lines():
    long = [f"{name} ({n} lines)" for path in modules() for name, n in functions(path) if n > MAX_LINES]
    assert not long, "split into named steps: " + "; ".join(long)


def test_the_length_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def f():\n{body}\n")
    assert functions(tmp_path / "long.py")[0][1] == MAX_LINES + 1


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_dependencies_point_one_way(layer):
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for name in imported(path)
        if any(name == f"mrirecon.{f}" or name.startswith(f"mrirecon.{f}.") for f in FORBIDDEN[layer])
    ]
    assert not wrong, "; ".join(wrong)


def test_the_import_check_sees_both_import_forms(tmp_path):
    (tmp_path / "m.py").write_text("import mrirecon.nets.unet\nfrom mrirecon.methods import base\nimport numpy\n")
    assert imported(tmp_path / "m.py") >= {"mrirecon.nets.unet", "mrirecon.methods", "mrirecon.methods.base"}
    assert "numpy" not in imported(tmp_path / "m.py")
