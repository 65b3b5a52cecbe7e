"""The package's layering, read from the source (``ast``), not from what happens to import.

* ``unet_core`` (the paper and its run machinery) imports neither matplotlib, ipywidgets nor
  the book package ``unet_book``;
* no module of either package imports another module of the project inside a function (the
  usual way to dodge an import circle), and the module-level import graph has no cycle;
* the book package is built on the library, never the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("unet_core", "unet_book")
FORBIDDEN_IN_CORE = ("matplotlib", "ipywidgets", "IPython", "unet_book")


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


@pytest.mark.parametrize("name", sorted(m for m in _modules() if m.startswith("unet_core")))
def test_core_imports_no_plotting_widgets_or_book(name):
    tree = ast.parse(_modules()[name].read_text())
    bad = [(t, line) for t, line in _imports(tree, top_level_only=False)
           if t.split(".")[0] in FORBIDDEN_IN_CORE]
    assert not bad, f"{name} imports {bad}: unet_core must not depend on {FORBIDDEN_IN_CORE}"


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


def test_book_package_is_used_by_no_core_module_and_uses_core():
    graph = _graph()
    book_uses_core = any(t.startswith("unet_core") for m, ts in graph.items()
                         if m.startswith("unet_book") for t in ts)
    assert book_uses_core
