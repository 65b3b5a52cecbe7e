"""DRIVE (Staal et al. 2004): retinal fundus photographs with manual vessel segmentations.

The U-Net paper does not use DRIVE; the book uses it as a second, colour, data set. The
official layout under ``root`` (the ``DRIVE`` folder itself)::

    training/images/21_training.tif ...      RGB TIFF, 584x565 (HxW)
    training/1st_manual/21_manual1.gif ...   vessels (first observer), mode L 0/255
    training/mask/21_training_mask.gif ...   field of view (FOV), mode L 0/255
    test/images/01_test.tif ...
    test/1st_manual/01_manual1.gif ...       the ground truth of the standard protocol
    test/2nd_manual/01_manual2.gif ...       second observer, palette mode P, index 1 = vessel
    test/mask/01_test_mask.gif ...

:func:`load_drive` reads one split, checks that every image has each of its masks (and every
mask its image), that the sizes agree, and binarises the masks (rules in
:mod:`unet_core.data.imageio`). Files are matched by their numeric id (``21`` in
``21_training.tif``) and samples are sorted by it.

Used from chapter 2 on; chapter 5 trains and chapter 6 evaluates on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet_core.data.errors import DataError
from unet_core.data.imageio import check_mask_shape, list_files, read_mask, read_rgb
from unet_core.validation import check_choice as _check_choice

DRIVE_SPLITS: tuple[str, ...] = ("training", "test")

# folder -> file-name template ("{id}" is the numeric id), per split.
_IMAGE = {"training": "{id}_training.tif", "test": "{id}_test.tif"}
_MASKS = {
    "1st_manual": ("vessel mask (1st_manual)", "{id}_manual1.gif"),
    "2nd_manual": ("second-observer vessel mask (2nd_manual)", "{id}_manual2.gif"),
    "mask": ("FOV mask", "{id}_{split}_mask.gif"),
}


@dataclass(frozen=True, eq=False)
class DriveSample:
    """One DRIVE photograph with its masks.

    Attributes:
        name: the image file's stem, e.g. ``"21_training"`` or ``"01_test"``.
        image: ``(H, W, 3) uint8`` RGB photograph.
        vessels: ``(H, W) bool`` first-observer vessel mask (``1st_manual``), True on vessels.
        fov: ``(H, W) bool`` field-of-view mask, True inside the circular aperture.
        second_observer: ``(H, W) bool`` second observer's vessel mask (``2nd_manual``), or
            None when the split has none (the official training split).
        path: the image file.
    """

    name: str
    image: np.ndarray = field(repr=False)
    vessels: np.ndarray = field(repr=False)
    fov: np.ndarray = field(repr=False)
    second_observer: np.ndarray | None = field(repr=False)
    path: Path

    @property
    def id(self) -> int:
        """The numeric id (21 for ``21_training``)."""
        return int(self.name.split("_")[0])


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(re.escape("{id}"), r"(\d+)") + r"\Z")


def _index_folder(folder: Path, template: str, what: str) -> dict[int, Path]:
    """Map numeric id -> file for a folder whose every file must match ``template``."""
    example = template.format(id="21")
    files = list_files(folder, f"{what} files named like {example}")
    pattern = _pattern(template)
    by_id: dict[int, Path] = {}
    for path in files:
        match = pattern.match(path.name)
        if match is None:
            raise DataError(f"unexpected file {path}: expected {what} files named like {example}")
        key = int(match.group(1))
        if key in by_id:
            raise DataError(f"{path} and {by_id[key]} have the same id {key}")
        by_id[key] = path
    return by_id


def load_drive(
    root: str | Path, split: str = "training", *, require_second_observer: bool = True
) -> list[DriveSample]:
    """Load one split of DRIVE from its official layout under ``root`` (the ``DRIVE`` folder).

    Args:
        root: the DRIVE folder, containing ``training/`` and ``test/``.
        split: ``"training"`` or ``"test"``.
        require_second_observer: for the test split, require ``2nd_manual`` (as in the
            official release). With False, a missing ``2nd_manual`` folder gives
            ``second_observer=None``; a present one is always loaded and checked. The training
            split has no second observer (None) unless a ``2nd_manual`` folder exists.

    Returns:
        The samples, sorted by numeric id.

    Raises:
        ValueError: unknown split.
        DataError: a missing, empty, unreadable or truncated file or folder, a mask whose size
            differs from its image, an image without one of its masks or a mask without its
            image, an unexpected file name.
    """
    _check_choice("split", split, DRIVE_SPLITS)
    base = Path(root) / split
    if not base.is_dir():
        raise DataError(
            f"missing folder {base}: expected the DRIVE layout (root is the DRIVE folder "
            f"holding {' and '.join(DRIVE_SPLITS)}/)"
        )
    images = _index_folder(base / "images", _IMAGE[split], "DRIVE image")
    folders = ["1st_manual", "mask"]
    if (base / "2nd_manual").exists() or (split == "test" and require_second_observer):
        folders.insert(1, "2nd_manual")
    masks: dict[str, dict[int, Path]] = {}
    for folder in folders:
        what, template = _MASKS[folder]
        template = template.replace("{split}", split)
        found = _index_folder(base / folder, template, what)
        for key, path in images.items():
            if key not in found:
                expected = base / folder / template.format(id=path.name.split("_")[0])
                raise DataError(f"image {path} has no {what}: expected {expected}")
        for key, path in found.items():
            if key not in images:
                raise DataError(
                    f"{what} {path} has no image: expected "
                    f"{base / 'images' / _IMAGE[split].format(id=path.name.split('_')[0])}"
                )
        masks[folder] = found

    samples = []
    for key in sorted(images):
        path = images[key]
        image = read_rgb(path, "DRIVE image")
        loaded: dict[str, np.ndarray] = {}
        for folder, found in masks.items():
            what = _MASKS[folder][0]
            mask = read_mask(found[key], what)
            check_mask_shape(mask, found[key], image.shape, path, what)
            loaded[folder] = mask
        samples.append(
            DriveSample(
                name=path.name.rsplit(".", 1)[0],
                image=image,
                vessels=loaded["1st_manual"],
                fov=loaded["mask"],
                second_observer=loaded.get("2nd_manual"),
                path=path,
            )
        )
    return samples
