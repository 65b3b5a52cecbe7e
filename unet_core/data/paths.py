"""Where the data sets live: one setting, the ``UNET_DATA_DIR`` environment variable.

The README's "Data" section and the Reproduce page explain the setting.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "UNET_DATA_DIR"


def data_dir() -> Path:
    """The data directory: ``$UNET_DATA_DIR`` if set, else ``./data`` (relative to the cwd).

    Real data sets are expected at ``data_dir() / "DRIVE"`` and ``data_dir() / "isbi2012"``;
    synthetic stand-ins are cached under ``data_dir() / "synthetic"`` (see
    :func:`unet_core.data.resolve_dataset`). The path is returned as given, not resolved.
    """
    return Path(os.environ.get(DATA_DIR_ENV, "./data"))



def shown_path(path: str | Path) -> str:
    """``path`` as a page may print it: relative to the data directory
    (``$UNET_DATA_DIR/DRIVE``) when it lies inside it, else only its last part, never an
    absolute path of the machine that built the page."""
    target, root = Path(path).resolve(), data_dir().resolve()
    if target == root or root in target.parents:
        return "/".join(("$" + DATA_DIR_ENV, *target.relative_to(root).parts))
    return target.name
