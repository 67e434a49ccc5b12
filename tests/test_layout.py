"""The layout is the architecture: imports run one way between the subpackages, the module
graph has no cycles, and no module grows past ~400 lines without saying why at its top.

The layers, from the top (see ARCHITECTURE.md); a module may import its own subpackage and
any layer below, never one above or beside it. Imports under ``if TYPE_CHECKING:`` are for
the type checker only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "aevb"
LAYERS = [
    {"__init__"},  # the flat public API re-exports everything
    {"cli"},
    {"tabular", "viz", "sklearn", "pyro"},
    {"training"},
    {"evaluation"},
    {"models"},
    {"inference"},
    {"nn"},
    {"distributions", "data"},
    {"errors", "_version", "files"},
]
RANK = {name: len(LAYERS) - i for i, names in enumerate(LAYERS) for name in names}
MAX_LINES = 400
LONG_REASON = "Longer than 400 lines because"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of the aevb modules ``path`` (or ``source`` as if it were there)
    imports at run time, at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] == "aevb":
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "aevb")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text() if source is None else source))
    modules = {_module_name(p) for p in SRC.rglob("*.py")}
    return {name for name in found if name in modules and name != module}


MODULES = sorted(SRC.rglob("*.py"))


def test_every_subpackage_has_a_layer() -> None:
    packages = {_package(_module_name(p)) for p in MODULES}
    assert packages <= set(RANK), packages - set(RANK)


def _upward(path: Path, source: str | None = None) -> list[str]:
    importer = _package(_module_name(path))
    return [
        name
        for name in _runtime_imports(path, source)
        if _package(name) != importer and RANK[_package(name)] >= RANK[importer]
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_run_one_way(path: Path) -> None:
    upward = _upward(path)
    assert not upward, f"{path} may not import {upward}: move the code down a layer"


def test_the_module_graph_has_no_cycles() -> None:
    graph = {_module_name(p): _runtime_imports(p) for p in MODULES}
    for start in graph:  # a package's __init__ importing its own modules is not a cycle
        graph[start] = {m for m in graph[start] if not start.startswith(m + ".")}
    done: set[str] = set()

    def walk(node: str, stack: list[str]) -> None:
        if node in stack:
            pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(node) :], node]))
        if node in done:
            return
        for child in sorted(graph.get(node, ())):
            walk(child, [*stack, node])
        done.add(node)

    for node in sorted(graph):
        walk(node, [])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_readable(path: Path) -> None:
    text = path.read_text()
    if len(text.splitlines()) > MAX_LINES:
        docstring = ast.get_docstring(ast.parse(text)) or ""
        assert LONG_REASON in docstring, (
            f"{path.name} has {len(text.splitlines())} lines: split it by concept, or say "
            f"why not at its top ('{LONG_REASON} ...')"
        )


def test_the_checks_can_fail() -> None:
    """An upward import, also inside a function, is reported; a type-only one is not."""
    vae = SRC / "models" / "vae.py"
    assert "aevb.inference.objectives" in _runtime_imports(vae)  # relative names resolved
    lazy = "def f():\n    from ..training.trainer import Trainer\n"
    assert _upward(vae, lazy) == ["aevb.training.trainer", "aevb.training.trainer.Trainer"][:1]
    typing_only = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..cli import main\n"
    )
    assert _upward(vae, typing_only) == []
