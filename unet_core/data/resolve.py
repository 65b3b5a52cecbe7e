"""Find a data set: the real one under the data directory, else a cached synthetic stand-in.

:func:`resolve_dataset` looks for ``data_dir() / "DRIVE"`` or ``data_dir() / "isbi2012"``. If
the folder is absent it writes the synthetic stand-in (same layout, so the same loaders read
it) to ``data_dir() / "synthetic" / "DRIVE"`` (or ``isbi2012``) once, and reuses it while its
completion marker matches the generator options. Whenever synthetic data is returned, a
:class:`SyntheticDataWarning` (a ``UserWarning``) is issued through :mod:`warnings`, so it is
visible by default, can be filtered (``warnings.simplefilter("ignore",
SyntheticDataWarning)``) and is captured by pytest; numbers from synthetic data are not
DRIVE or ISBI results.

Every chapter says whether it used the real data or the stand-in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet_core.data.drive import DriveSample, load_drive
from unet_core.data.errors import DataError
from unet_core.data.isbi2012 import IsbiSample, load_isbi2012
from unet_core.data.paths import DATA_DIR_ENV, data_dir
from unet_core.data.synthetic_drive import write_synthetic_drive
from unet_core.data.synthetic_isbi import write_synthetic_isbi2012
from unet_core.validation import check_choice as _check_choice

DATASETS: tuple[str, ...] = ("drive", "isbi2012")
FOLDERS: dict[str, str] = {"drive": "DRIVE", "isbi2012": "isbi2012"}
MARKER = ".synthetic-complete.json"
#: Bump when a generator changes its output, so stale caches are rebuilt.
GENERATOR_VERSION = 1

_WRITERS: dict[str, Callable[..., Path]] = {
    "drive": write_synthetic_drive,
    "isbi2012": write_synthetic_isbi2012,
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "drive": {"n_train": 20, "n_test": 20, "size": [584, 565], "seed": 0},
    "isbi2012": {"n_train": 30, "n_test": 30, "size": 512, "seed": 0, "scale": 1.0},
}


class SyntheticDataWarning(UserWarning):
    """Issued whenever a synthetic stand-in is used instead of a real data set."""


@dataclass(frozen=True)
class ResolvedDataset:
    """Where a data set is: ``root`` (the folder the loader takes) and whether it is synthetic."""

    name: str
    root: Path
    synthetic: bool

    def load(self, split: str | None = None) -> list[DriveSample] | list[IsbiSample]:
        """Load a split with the data set's loader (default: its training split)."""
        if self.name == "drive":
            return load_drive(self.root, "training" if split is None else split)
        return load_isbi2012(self.root, "train" if split is None else split)


def _looks_real(name: str, folder: Path) -> bool:
    if name == "drive":
        return (folder / "training" / "images").is_dir() or (folder / "test" / "images").is_dir()
    return any(
        (folder / split / "images").is_dir() or (folder / f"{split}-volume.tif").is_file()
        for split in ("train", "test")
    )


def _normalise(options: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(options), sort_keys=True))


def _cache_is_complete(cache: Path, expected: dict[str, Any]) -> bool:
    try:
        marker = json.loads((cache / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker == expected


def resolve_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    synthetic_options: Mapping[str, Any] | None = None,
) -> ResolvedDataset:
    """Locate data set ``name`` (``"drive"`` or ``"isbi2012"``), real if present, else synthetic.

    Args:
        name: ``"drive"`` or ``"isbi2012"``.
        root: the data directory to search (default :func:`data_dir`, i.e. ``$UNET_DATA_DIR``
            or ``./data``). Real data is ``root/DRIVE`` or ``root/isbi2012``.
        synthetic_options: overrides for the synthetic writer (``n_train``, ``n_test``,
            ``size``, ``seed``; defaults: DRIVE's 20 + 20 images of 584x565, ISBI's 30 + 30
            slices of 512x512). The cache is rebuilt when they change.

    Returns:
        ``ResolvedDataset(name, root, synthetic)``; ``root`` is what the loader takes.

    Raises:
        ValueError: unknown name or option.
        DataError: ``root/DRIVE`` (or ``root/isbi2012``) exists but does not hold the
            expected layout (rather than silently falling back to synthetic data).
    """
    _check_choice("name", name, DATASETS)
    base = data_dir() if root is None else Path(root)
    real = base / FOLDERS[name]
    if real.exists():
        if not _looks_real(name, real):
            raise DataError(
                f"{real} exists but does not hold the {FOLDERS[name]} layout (see "
                f"unet_core.data.load_{'drive' if name == 'drive' else 'isbi2012'}); fix or "
                f"remove it, or point {DATA_DIR_ENV} elsewhere"
            )
        return ResolvedDataset(name, real, synthetic=False)

    options = dict(_DEFAULTS[name])
    unknown = set(synthetic_options or {}) - set(options)
    if unknown:
        raise ValueError(
            f"unknown synthetic option(s) {', '.join(sorted(unknown))}; expected "
            f"{', '.join(options)}"
        )
    options.update(synthetic_options or {})
    expected = _normalise({"dataset": name, "version": GENERATOR_VERSION, "options": options})
    cache = base / "synthetic" / FOLDERS[name]
    if not _cache_is_complete(cache, expected):
        _build_cache(name, cache, options, expected)
    warnings.warn(
        SyntheticDataWarning(
            f"real {FOLDERS[name]} data not found at {real}: using the synthetic stand-in at "
            f"{cache}. Results on it are not {FOLDERS[name]} results; set {DATA_DIR_ENV} to a "
            f"folder holding {FOLDERS[name]}/ to use the real data."
        ),
        stacklevel=2,
    )
    return ResolvedDataset(name, cache, synthetic=True)


def _build_cache(name: str, cache: Path, options: dict[str, Any], expected: dict) -> None:
    """Write the stand-in into a temporary sibling, then move it into place atomically."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}.tmp-", dir=cache.parent))
    try:
        writer_options = dict(options)
        if isinstance(writer_options["size"], list):
            writer_options["size"] = tuple(writer_options["size"])
        _WRITERS[name](tmp, **writer_options)
        (tmp / MARKER).write_text(json.dumps(expected, sort_keys=True, indent=1))
        if cache.exists():  # an incomplete or outdated cache of ours: replace it
            if _cache_is_complete(cache, expected):  # another process just finished it
                return
            shutil.rmtree(cache)
        try:
            os.replace(tmp, cache)
        except OSError:
            if not _cache_is_complete(cache, expected):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
