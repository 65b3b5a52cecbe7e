"""The package's layering, read from the source (``ast``), not from what happens to import.

* three layers: ``unet_core`` (the paper) imports neither the run machinery ``unet_train`` nor
  the book package ``unet_book``; ``unet_train`` builds on ``unet_core`` and never imports
  ``unet_book``; neither imports matplotlib, ipywidgets or IPython;
* no module of the three packages imports another module of the project inside a function (the
  usual way to dodge an import circle), and the module-level import graph has no cycle;
* the book package is built on the library, never the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("unet_core", "unet_train", "unet_book")
#: What each library package may not import (read from every import, functions included).
FORBIDDEN = {
    "unet_core": ("matplotlib", "ipywidgets", "IPython", "unet_train", "unet_book"),
    "unet_train": ("matplotlib", "ipywidgets", "IPython", "unet_book"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(tree: ast.AST, top_level_only: bool) -> list[tuple[str, int]]:
    """``(imported module, line)``; ``from a.b import c`` counts as ``a.b`` and ``a.b.c``."""
    found: list[tuple[str, int]] = []
    nodes = tree.body if top_level_only else ast.walk(tree)  # type: ignore[attr-defined]
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, node.lineno))
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def _function_level_imports(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    found += _imports(ast.Module(body=[inner], type_ignores=[]), True)
    return found


def _graph() -> dict[str, set[str]]:
    """Module-level project imports; importing ``a.b.c`` also runs ``a.b``'s ``__init__``."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _ in _imports(ast.parse(path.read_text()), top_level_only=True):
            parts = target.split(".")
            for k in range(1, len(parts) + 1):
                prefix = ".".join(parts[:k])
                if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                    graph[name].add(prefix)
    return graph


@pytest.mark.parametrize("name", sorted(m for m in _modules() if m.split(".")[0] in FORBIDDEN))
def test_library_layers_import_nothing_above_them(name):
    forbidden = FORBIDDEN[name.split(".")[0]]
    tree = ast.parse(_modules()[name].read_text())
    bad = [(t, line) for t, line in _imports(tree, top_level_only=False)
           if t.split(".")[0] in forbidden]
    assert not bad, f"{name} imports {bad}: {name.split('.')[0]} must not depend on {forbidden}"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_function_level_project_import(name):
    tree = ast.parse(_modules()[name].read_text())
    bad = [(t, line) for t, line in _function_level_imports(tree)
           if t.split(".")[0] in PACKAGES]
    assert not bad, f"{name} imports project modules inside functions: {bad}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None`` (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_import_graph_has_no_cycle():
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_checks_can_fail():
    """A planted cycle and a planted function-level import are found."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("def f():\n    from unet_book.results import plot_history\n")
    assert _function_level_imports(tree)[0] == ("unet_book.results", 2)


@pytest.mark.parametrize(("upper", "lower"), [("unet_train", "unet_core"),
                                              ("unet_book", "unet_core"),
                                              ("unet_book", "unet_train")])
def test_each_layer_builds_on_the_one_below(upper, lower):
    graph = _graph()
    assert any(t.split(".")[0] == lower for m, ts in graph.items()
               if m.split(".")[0] == upper for t in ts)
