"""Show the library's own source code in a chapter, so that the book and the code cannot drift.

``show_source(UNet.forward)`` returns an :class:`IPython.display.Code` object built from
:func:`inspect.getsource`: it renders with syntax highlighting in JupyterLab, in Notebook and in
the built book alike (a MyST ``literalinclude`` would show only in the book). The code shown is
the code that runs: nothing is copied into the chapter.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

from IPython.display import Code


def source_location(obj: Any) -> str:
    """``unet_core/model.py, lines 120-141``: where ``obj`` is defined, relative to the repo."""
    path = Path(inspect.getsourcefile(obj) or "?").resolve()
    lines, first = inspect.getsourcelines(obj)
    parts = path.parts
    for package in ("unet_core", "unet_train", "unet_book"):
        if package in parts:
            path = Path(*parts[len(parts) - 1 - parts[::-1].index(package):])
            break
    return f"{path.as_posix()}, lines {first}-{first + len(lines) - 1}"


def source_text(obj: Any) -> str:
    """The dedented source of a function, method or class, with a header naming its file."""
    return f"# {source_location(obj)}\n" + textwrap.dedent(inspect.getsource(obj))


def show_source(*objects: Any) -> Code:
    """The source of ``objects`` (functions, methods, classes), one after another."""
    return Code("\n\n".join(source_text(o) for o in objects), language="python")
