"""Habits the code keeps, checked on the source: short functions, modules under ~400 lines, and
imports that point one way, down the layers of LAYERS (docs/development.md draws them)."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PACKAGE = ROOT / "mrirecon"
MAX_LINES = 60
MAX_MODULE_LINES = 400
# The packages (and top-level modules) of mrirecon, top layer first: a module imports only from its
# own package or from a layer below its own. Packages in one layer do not import each other
# (physics knows nothing about networks, networks nothing about physics).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),
    ("tasks",),
    ("studies",),
    ("training",),
    ("evaluation",),
    ("losses",),
    ("methods",),
    ("data",),
    ("solvers",),
    ("physics", "nets"),
    ("io", "registry", "arguments"),
    ("errors", "__init__"),
)
LAYER_OF = {name: depth for depth, names in enumerate(LAYERS) for name in names}


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


def owner(module: str) -> str:
    """The package or top-level module of a dotted mrirecon name ('mrirecon.physics.fft' ->
    'physics'; 'mrirecon' and 'mrirecon.__version__' -> '__init__')."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__version__":
        return "__init__"
    return parts[1]


def wrong_imports(path: Path, root: Path = ROOT) -> list[str]:
    """The imports of `path` (a module under root/mrirecon) that do not point down LAYERS."""
    here = owner(".".join(path.relative_to(root).with_suffix("").parts))
    if here not in LAYER_OF:
        return [f"{path.relative_to(root)}: {here} is in no layer of LAYERS"]
    wrong = []
    for name in sorted(imported(path)):
        there = owner(name)
        if there != here and LAYER_OF.get(there, -1) <= LAYER_OF[here]:
            wrong.append(f"{path.relative_to(root)} imports {name}")
    return wrong


def test_imports_point_down_the_layers():
    wrong = [line for path in modules() for line in wrong_imports(path)]
    assert not wrong, "; ".join(wrong)


def test_the_layer_check_sees_an_upward_and_a_sideways_import(tmp_path):
    (tmp_path / "mrirecon" / "physics").mkdir(parents=True)
    module = tmp_path / "mrirecon" / "physics" / "m.py"
    module.write_text("from mrirecon.nets import unet\nimport mrirecon.methods.base\nfrom mrirecon.io import files\n")
    assert wrong_imports(module, tmp_path) == [
        "mrirecon/physics/m.py imports mrirecon.methods.base",
        "mrirecon/physics/m.py imports mrirecon.nets",
        "mrirecon/physics/m.py imports mrirecon.nets.unet",
    ]


def test_no_module_is_longer_than_400_lines():
    long = [
        f"{p.relative_to(ROOT)} ({n})" for p in modules() if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split by responsibility: " + "; ".join(long)


def test_the_import_check_sees_both_import_forms(tmp_path):
    (tmp_path / "m.py").write_text("import mrirecon.nets.unet\nfrom mrirecon.methods import base\nimport numpy\n")
    assert imported(tmp_path / "m.py") >= {"mrirecon.nets.unet", "mrirecon.methods", "mrirecon.methods.base"}
    assert "numpy" not in imported(tmp_path / "m.py")
