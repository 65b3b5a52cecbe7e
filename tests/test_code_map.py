"""The README's layout table and the book's code map name every module, and only real ones."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> set[str]:
    return {p.relative_to(ROOT / package).as_posix() for p in (ROOT / package).rglob("*.py")}


def _named_in_readme() -> set[str]:
    """Module paths in the README's layout table: each package's row (``| `unet_core/` |``,
    ``| `unet_core/data/` |``, ...) names its modules in one cell."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Layout"):text.index("## More")]
    names: set[str] = set()
    for line in table.splitlines():
        row = re.match(r"\| `((?:unet_core|unet_train|unet_book)/(?:\w+/)?)` \|", line)
        if row:
            names |= {row.group(1) + n for n in re.findall(r"`(\w+\.py)`", line)}
    return names


def _named_in_code_map(package: str) -> set[str]:
    text = (ROOT / "book" / "code_map.md").read_text()
    section = text[text.index(f"## `{package}`"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    return set(re.findall(r"`((?:\w+/)?\w+\.py)`", section))


@pytest.mark.parametrize("package", ["unet_core", "unet_train", "unet_book"])
def test_readme_layout_names_every_module_and_no_other(package):
    named = {n.split("/", 1)[1] for n in _named_in_readme() if n.startswith(package + "/")}
    modules = {m for m in _modules(package) if Path(m).name != "__init__.py"}
    assert named == modules, (f"README layout: missing {sorted(modules - named)}, "
                              f"not in the tree {sorted(named - modules)}")


@pytest.mark.parametrize("package", ["unet_core", "unet_train", "unet_book"])
def test_code_map_page_names_every_module_and_no_other(package):
    named = _named_in_code_map(package)
    modules = {m for m in _modules(package) if Path(m).name != "__init__.py"}
    assert named == modules, (f"book/code_map.md: missing {sorted(modules - named)}, "
                              f"not in the tree {sorted(named - modules)}")
