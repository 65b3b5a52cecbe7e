"""One atomic file writer for every file a run writes (checkpoints, JSON, CSV, NPZ, PNG).

:func:`atomic_write` hands a callback an open binary file in the destination's folder, then
flushes it to disk (``fsync``) and renames it over the destination (``os.replace``, atomic on
POSIX and Windows). A process killed mid-write leaves the previous file intact and no
half-written destination; the temporary file (``.<name>.<random>.tmp``) is removed on any error.
The thin wrappers below are the only writers the package uses.

Chapter 5 (training) describes the run folder these writers fill.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temporary binary file, fsync it and move it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike[str], obj: Any, indent: int = 1) -> Path:
    """Write ``obj`` as JSON (with a final newline) atomically."""
    return write_text(path, json.dumps(obj, indent=indent) + "\n")


def write_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """Write compressed NumPy arrays (``np.savez_compressed``) atomically."""
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def write_image(path: str | os.PathLike[str], image: Image.Image, **save_kwargs: Any) -> Path:
    """Save a Pillow image atomically; the format comes from the file's suffix."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix; expected .png, .tif, .jpg, ...")
    return atomic_write(path, lambda f: image.save(f, format=fmt, **save_kwargs))
