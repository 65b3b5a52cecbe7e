"""Text is the source of truth: every notebook has a py:percent twin, and the two agree."""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TOC = (ROOT / "_toc.yml").read_text()


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_pair_in_sync(ipynb: Path):
    twin = ipynb.with_suffix(".py")
    assert twin.exists(), f"{ipynb.name} has no py:percent twin {twin.name}"
    nb = jupytext.read(ipynb)
    text = jupytext.read(twin)
    formats = nb.metadata.get("jupytext", {}).get("formats", "")
    assert "py:percent" in formats and "ipynb" in formats, (
        f"{ipynb.name}: jupytext pairing metadata missing (formats={formats!r})"
    )
    assert _cells(nb) == _cells(text), (
        f"{ipynb.name} and {twin.name} have drifted apart: run `make sync`"
    )


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_calls_the_library(ipynb: Path):
    """d2l's rule: notebooks explain and call the library (unet_core, or the book's own
    unet_book built on it), they never re-implement it."""
    nb = jupytext.read(ipynb.with_suffix(".py"))
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    tree = ast.parse("\n".join(line for line in code.splitlines() if not line.startswith("%")))
    classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    assert not classes, f"{ipynb.name} defines classes {classes}: they belong in a package"
    assert "from unet_core" in code or "from unet_book" in code
    assert f"notebooks/{ipynb.stem}" in TOC, f"{ipynb.name} is not in _toc.yml"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(ipynb: Path):
    """Outputs are produced by the build, never committed (keeps diffs reviewable)."""
    nb = jupytext.read(ipynb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("outputs")]
    assert not dirty, f"{ipynb.name}: cells {dirty} carry outputs; run `make sync`"
