"""ISBI 2012 EM segmentation challenge (Cardona et al. 2010), the U-Net paper's own task.

Two on-disk layouts are read, chosen per split (``layout="auto"``):

* PNG folders (as in ``shared/data/isbi2012``)::

      train/images/00.png ... 29.png   512x512 greyscale slices
      train/labels/00.png ... 29.png   255 = cell interior, 0 = membrane (boundary)
      test/images/00.png ...           test labels are not public (a test/labels folder, if
                                       present, is read like the training one)

* the challenge's multi-page TIFFs: ``train-volume.tif``, ``train-labels.tif`` (same
  convention), ``test-volume.tif`` (and ``test-labels.tif`` if present).

If both layouts exist for a split, ``"auto"`` raises rather than pick one silently.

Naming: the challenge's labels are *cell-interior* maps (255 = interior). The samples store
the complement, ``membranes``, True on boundary pixels (label 0): the thin class that the
paper's weighted loss emphasises, and the positive class of the book's metrics.
:attr:`IsbiSample.labels` gives back the challenge convention.

Used in chapter 4 (the weight map) and chapter 7 (membranes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from unet_core.data.errors import DataError
from unet_core.data.imageio import (
    binarize_mask,
    check_mask_shape,
    list_files,
    read_gray,
    read_mask,
    read_tiff_stack,
)
from unet_core.validation import check_choice as _check_choice

ISBI_SPLITS: tuple[str, ...] = ("train", "test")
ISBI_LAYOUTS: tuple[str, ...] = ("auto", "png", "tiff")
Layout = Literal["auto", "png", "tiff"]


@dataclass(frozen=True, eq=False)
class IsbiSample:
    """One EM slice.

    Attributes:
        name: the slice's name: the PNG stem (``"00"``), or for a TIFF page its two-digit
            index (``"00"`` for the first page), so both layouts give the same names.
        image: ``(H, W) uint8`` greyscale slice.
        membranes: ``(H, W) bool``, True on membrane (boundary) pixels, i.e. where the
            challenge label is 0; None when the split has no labels (the public test set).
        path: the image file (the PNG, or the multi-page TIFF).
        frame: the page index within a multi-page TIFF, None for a PNG.
    """

    name: str
    image: np.ndarray = field(repr=False)
    membranes: np.ndarray | None = field(repr=False)
    path: Path
    frame: int | None = None

    @property
    def labels(self) -> np.ndarray | None:
        """The challenge convention: ``(H, W) uint8``, 255 = cell interior, 0 = membrane."""
        if self.membranes is None:
            return None
        return np.where(self.membranes, 0, 255).astype(np.uint8)


def _stem_key(path: Path) -> tuple[int, str]:
    stem = path.name.rsplit(".", 1)[0]
    return (int(stem) if stem.isdigit() else 1 << 62, stem)


def _load_png(root: Path, split: str) -> list[IsbiSample]:
    base = root / split
    images = sorted(list_files(base / "images", "EM slices (*.png)", (".png",)), key=_stem_key)
    labels_dir = base / "labels"
    has_labels = split == "train" or labels_dir.exists()
    labels: dict[str, Path] = {}
    if has_labels:
        found = list_files(labels_dir, "label images (*.png, 255 = interior)", (".png",))
        labels = {p.name: p for p in found}
        names = {p.name for p in images}
        for name, path in labels.items():
            if name not in names:
                raise DataError(f"label {path} has no image: expected {base / 'images' / name}")
    samples = []
    for path in images:
        image = read_gray(path, "EM slice")
        membranes = None
        if has_labels:
            if path.name not in labels:
                raise DataError(f"image {path} has no label: expected {labels_dir / path.name}")
            label_path = labels[path.name]
            interior = read_mask(label_path, "label image")
            check_mask_shape(interior, label_path, image.shape, path, "label image")
            membranes = ~interior
        samples.append(IsbiSample(path.stem, image, membranes, path))
    return samples


def _load_tiff(root: Path, split: str) -> list[IsbiSample]:
    volume_path = root / f"{split}-volume.tif"
    labels_path = root / f"{split}-labels.tif"
    volume = read_tiff_stack(volume_path, "EM volume")
    if volume.dtype != np.uint8:
        raise DataError(f"EM volume {volume_path} has dtype {volume.dtype}: expected uint8")
    labels = None
    if split == "train" or labels_path.exists():
        labels = read_tiff_stack(labels_path, "label volume")
        if labels.shape != volume.shape:
            raise DataError(
                f"label volume {labels_path} has shape {labels.shape} (pages, H, W) but "
                f"{volume_path} has {volume.shape}: expected the same"
            )
    samples = []
    for i, image in enumerate(volume):
        membranes = None
        if labels is not None:
            membranes = ~binarize_mask(labels[i], source=f"label volume {labels_path} page {i}")
        samples.append(IsbiSample(f"{i:02d}", image, membranes, volume_path, frame=i))
    return samples


def isbi_layout(root: str | Path, split: str = "train") -> Literal["png", "tiff"]:
    """Which layout holds ``split`` under ``root``; raises DataError if none or both."""
    _check_choice("split", split, ISBI_SPLITS)
    root = Path(root)
    png = (root / split / "images").exists()
    tiff = (root / f"{split}-volume.tif").exists()
    if png and tiff:
        raise DataError(
            f"both {root / split / 'images'} and {root / f'{split}-volume.tif'} exist: "
            "pass layout='png' or layout='tiff' to choose"
        )
    if not (png or tiff):
        raise DataError(
            f"no ISBI 2012 {split!r} data under {root}: expected {root / split / 'images'}/"
            f"*.png or {root / f'{split}-volume.tif'}"
        )
    return "png" if png else "tiff"


def load_isbi2012(
    root: str | Path, split: str = "train", *, layout: Layout = "auto"
) -> list[IsbiSample]:
    """Load one split of the ISBI 2012 data from ``root`` (PNG folders or multi-page TIFFs).

    Args:
        root: the folder holding ``train/`` and ``test/`` or ``*-volume.tif``.
        split: ``"train"`` or ``"test"``.
        layout: ``"png"``, ``"tiff"`` or ``"auto"`` (whichever exists; both is an error).

    Returns:
        Samples sorted by numeric name; ``membranes`` is None for the test split unless it
        has labels.

    Raises:
        ValueError: unknown split or layout.
        DataError: missing, empty, unreadable or truncated files, an image without its label
            (or a label without its image), a label whose size differs from its image, a
            non-8-bit image.
    """
    _check_choice("split", split, ISBI_SPLITS)
    _check_choice("layout", layout, ISBI_LAYOUTS)
    root = Path(root)
    chosen = isbi_layout(root, split) if layout == "auto" else layout
    return _load_png(root, split) if chosen == "png" else _load_tiff(root, split)
