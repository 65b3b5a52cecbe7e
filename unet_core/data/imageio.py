"""Reading images and binary masks with validation (one place for every file format quirk).

Every reader raises :class:`~unet_core.data.errors.DataError` naming the file when it is
missing, unreadable, truncated, of an unsupported mode or of the wrong size; nothing is skipped.

How masks are binarised (:func:`binarize_mask`), whatever their PIL mode:

* ``"1"`` (1-bit): used as is.
* ``"P"`` (palette): **the palette index is the label**, the palette colour is ignored. A
  palette only says how to *display* an index; in label images (DRIVE's ``2nd_manual`` GIFs,
  PASCAL-VOC-style PNGs) the index carries the meaning: index 0 is background and any other
  index is foreground. DRIVE's second observer uses index 0 = background (colour (4, 2, 4)) and
  index 1 = vessel (colour (252, 254, 252)). More than two distinct indices (a multi-class
  label image) raise. One ambiguity is detected and raised rather than guessed: a mask that
  uses a single index whose palette colour contradicts it (only index 0, displayed bright, as
  Pillow writes a uniformly white grey-level GIF when optimising its palette; or only a
  non-zero index displayed dark).
* ``"L"``, ``"I"``, ``"I;16"``, ``"F"`` (grey levels) and multi-page TIFF arrays: with one
  level, foreground iff that level is non-zero; with exactly two levels, the higher one is
  foreground (so 0/255, 0/1 and 0/65535 masks all work); with more than two levels (a mask
  that was resampled or lossily compressed) foreground is ``value >= full_scale / 2``, where
  the full scale is 1 for floats in [0, 1], else 255, 65535 or the maximum, whichever first
  covers the data.
* ``"RGB"``: if the three channels are equal, as ``"L"``; otherwise (coloured annotations on a
  black background) the per-pixel maximum over the channels, as ``"L"``.
* ``"LA"``, ``"RGBA"``, ``"PA"``: the alpha channel is dropped, then as above.

Every other mode (CMYK, YCbCr, ...) raises.

Truncated files are detected because the whole file is decoded (``Image.load``), which fails
on missing bytes, unless some other code has set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` to
True (this module never does).

Used by every chapter that reads files; chapter 8 reads a reader's own image with
:func:`read_image`, which scales 16-bit and float images by their type's range (as training
scales 8-bit ones by 255), not per image.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unet_core.data.errors import DataError

#: File names ignored when listing a folder (operating-system litter, not data).
IGNORED_NAMES: frozenset[str] = frozenset({"Thumbs.db", "desktop.ini"})

_MASK_MODES = ("1", "P", "PA", "L", "LA", "I", "I;16", "I;16L", "I;16B", "F", "RGB", "RGBA")


# -- files and folders ------------------------------------------------------------------------
def list_files(folder: Path, what: str, suffixes: Iterable[str] | None = None) -> list[Path]:
    """Non-hidden regular files of ``folder``, sorted by name.

    Raises DataError if the folder is missing or holds no file. With ``suffixes`` (e.g.
    ``(".png",)``, compared case-insensitively), any other file raises DataError: nothing is
    silently skipped except hidden files (``.DS_Store``, ...) and :data:`IGNORED_NAMES`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"missing folder {folder}: expected a folder of {what}")
    files = sorted(
        p for p in folder.iterdir()
        if not p.name.startswith(".") and p.name not in IGNORED_NAMES and not p.is_dir()
    )
    if not files:
        raise DataError(f"empty folder {folder}: expected {what}")
    if suffixes is not None:
        allowed = tuple(s.lower() for s in suffixes)
        for p in files:
            if not p.name.lower().endswith(allowed):
                raise DataError(
                    f"unexpected file {p} in a folder of {what}: expected only "
                    f"{' or '.join(allowed)} files"
                )
    return files


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"missing {what}: {path} does not exist")
    if not path.is_file():
        raise DataError(f"{what} {path} is not a regular file")


@contextmanager
def _open(path: Path, what: str) -> Iterator[Image.Image]:
    """The decoded first frame of ``path`` as a PIL image; every failure is a DataError."""
    path = Path(path)
    _require_file(path, what)
    try:
        with Image.open(path) as im:
            im.load()  # decode everything now: a truncated file fails here, not later
            yield im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"cannot read {what} {path}: {exc} (the file is truncated, corrupt or not an image)"
        ) from exc


def _load_pil(path: Path, what: str) -> tuple[str, np.ndarray, list[int] | None]:
    """Decode the first frame of ``path``: ``(mode, array, palette or None)``."""
    with _open(path, what) as im:
        mode = im.mode
        palette = im.getpalette() if mode in ("P", "PA") else None
        array = np.asarray(im).copy()
    if array.size == 0:
        raise DataError(f"{what} {path} is empty (0 pixels)")
    return mode, array, palette


class _LogRecords(logging.Handler):
    """Collects the warnings a library logs (tifffile reports damaged files only this way)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _tifffile_read(path: Path, what: str, **kwargs: Any) -> np.ndarray:
    """``tifffile.imread(path, **kwargs)``; a failure, or a damaged file that tifffile only
    logs a warning about, is a DataError naming the file."""
    import tifffile

    records = _LogRecords()
    logger = logging.getLogger("tifffile")
    logger.addHandler(records)
    try:
        array = np.asarray(tifffile.imread(path, **kwargs))
    except Exception as exc:  # tifffile fails in many ways (ValueError, struct.error, ...)
        raise DataError(
            f"cannot read {what} {path}: {exc} (the file is truncated, corrupt or not a TIFF)"
        ) from exc
    finally:
        logger.removeHandler(records)
    if records.messages:
        raise DataError(
            f"cannot read {what} {path}: {records.messages[0]} (the file is truncated or corrupt)"
        )
    return array


def read_tiff_stack(path: Path, what: str) -> np.ndarray:
    """Read a (multi-page) greyscale TIFF as ``(N, H, W)`` with tifffile; one page gives N=1.

    tifffile skips pages it cannot reach in a damaged file and only *logs* a warning; any
    such warning is turned into a DataError here, so a truncated volume never loads short.
    """
    path = Path(path)
    _require_file(path, what)
    stack = _tifffile_read(path, what)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or stack.size == 0:
        raise DataError(
            f"{what} {path} has shape {stack.shape}: expected a stack of greyscale pages (N, H, W)"
        )
    return stack


# -- images -----------------------------------------------------------------------------------
def read_rgb(path: Path, what: str = "image") -> np.ndarray:
    """An 8-bit colour image as ``(H, W, 3) uint8`` (RGBA: alpha dropped; other modes raise)."""
    mode, array, _ = _load_pil(path, what)
    if mode not in ("RGB", "RGBA"):
        raise DataError(f"{what} {path} has mode {mode!r}: expected an 8-bit RGB colour image")
    return np.ascontiguousarray(array[..., :3])


def read_gray(path: Path, what: str = "image") -> np.ndarray:
    """An 8-bit greyscale image as ``(H, W) uint8``.

    Accepts mode L, LA (alpha dropped) and RGB/RGBA whose three colour channels are equal
    (a grey image saved as colour); anything else raises DataError.
    """
    mode, array, _ = _load_pil(path, what)
    if mode == "L":
        return array
    if mode == "LA":
        return np.ascontiguousarray(array[..., 0])
    if mode in ("RGB", "RGBA"):
        rgb = array[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., 0])
        raise DataError(f"{what} {path} is a colour image: expected 8-bit greyscale (mode L)")
    raise DataError(f"{what} {path} has mode {mode!r}: expected 8-bit greyscale (mode L)")


#: Modes of more than 8 bits per pixel; :func:`read_image` scales them by their type's range.
WIDE_MODES: tuple[str, ...] = ("I;16", "I;16B", "I;16L", "I", "F")
_TIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path: Path, what: str = "image") -> np.ndarray:
    """Any image Pillow reads, as ``(H, W, 3)`` (colour) or ``(H, W)`` (grey).

    8-bit images come back as uint8, as the data-set loaders return them: RGB, RGBA (alpha
    dropped), palette, CMYK, YCbCr, ... become RGB; L, LA and 1-bit become grey.

    Deeper images come back as float32 in [0, 1], scaled by **their type's range**, as 8-bit
    ones are by 255 in training (:func:`unet_core.data.prepare.prepare_image`), never
    stretched per image (a stretch would brighten a dark photograph and change what the
    model sees):

    * 16-bit grey (``I;16``, ``I;16B``, ``I;16L``): divided by 65535, so a 16-bit copy
      ``v * 257`` of an 8-bit image reads as that image (``v / 255``);
    * 32-bit integer (``I``): divided by 65535 when every value fits in 16 bits (how Pillow
      hands over many 16-bit files), else by 2**31 - 1; negative values raise;
    * 32-bit float (``F``): taken as already in [0, 1] and **clipped** to it; NaN or
      infinite values raise;
    * TIFFs with more than 8 bits per colour sample (16-bit or float RGB, which Pillow reduces
      to 8 bits or cannot open) are read with tifffile and scaled the same way (uint16 by
      65535, floats clipped to [0, 1]).

    A 12-bit camera's values stored in 16 bits therefore read dark (at most 4095 / 65535);
    scale such files to the full range before predicting. This is the reader of ``predict``
    and of the explorer's own images; the data-set loaders use the stricter :func:`read_rgb`
    and :func:`read_gray`. Every failure is a :class:`DataError` naming the file.
    """
    path = Path(path)
    with warnings.catch_warnings():
        # Pillow warns about damaged metadata (EXIF) of files it decodes; the pixels are what
        # is read here, and a file whose pixels cannot be decoded raises below
        warnings.simplefilter("ignore", UserWarning)
        try:
            array = _read_with_pillow(path, what)
        except DataError as exc:
            if path.suffix.lower() not in _TIFF_SUFFIXES or not path.is_file():
                raise
            try:  # e.g. a float RGB TIFF, which Pillow cannot open
                return _read_deep_tiff(path, what)
            except DataError:
                raise exc from None
    return _read_deep_tiff(path, what) if array is None else array


def _read_with_pillow(path: Path, what: str) -> np.ndarray | None:
    """:func:`read_image` through Pillow; None for a TIFF of more than 8 bits per sample."""
    with _open(path, what) as im:
        if im.mode in WIDE_MODES:
            return _unit_range(np.asarray(im), f"{what} {path} (mode {im.mode!r})")
        if im.format == "TIFF" and _tiff_bits(im) > 8:
            return None
        if im.mode in ("L", "1", "LA"):
            return np.asarray(im.convert("L")).copy()
        return np.asarray(im.convert("RGB")).copy()


def _tiff_bits(im: Image.Image) -> int:
    bits = getattr(im, "tag_v2", {}).get(258, 8)  # BitsPerSample, one value per sample
    return int(max(bits)) if isinstance(bits, tuple | list) else int(bits)


def _read_deep_tiff(path: Path, what: str) -> np.ndarray:
    """The first page of a TIFF with tifffile: ``(H, W)`` or ``(H, W, 3)`` in [0, 1]."""
    array = _tifffile_read(path, what, key=0)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[2] not in (3, 4):
        array = np.moveaxis(array, 0, 2)  # planar colour: (C, H, W) -> (H, W, C)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[:, :, :3]  # alpha dropped
    elif array.ndim == 3 and array.shape[2] == 2:
        array = array[:, :, 0]  # grey and alpha
    elif array.ndim != 2:
        raise DataError(
            f"{what} {path} has shape {array.shape}: expected a grey (H, W) or colour "
            "(H, W, 3) image"
        )
    if array.size == 0:
        raise DataError(f"{what} {path} is empty (0 pixels)")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return _unit_range(array, f"{what} {path}")


def _unit_range(values: np.ndarray, source: str) -> np.ndarray:
    """Deeper-than-8-bit values as float32 in [0, 1], scaled by their type's range."""
    if np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
        if not np.isfinite(values).all():
            raise DataError(f"{source} holds NaN or infinite values: expected intensities in "
                            "[0, 1]")
        return np.clip(values, 0.0, 1.0)
    if not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"{source} has pixel type {values.dtype}: expected integers or floats")
    lo, hi = int(values.min()), int(values.max())
    if lo < 0:
        raise DataError(f"{source} has negative values (minimum {lo}): expected non-negative "
                        "intensities")
    # 16-bit values (also those Pillow hands over as 32-bit "I"), else the type's maximum
    # (2**31 - 1 for Pillow's signed 32-bit "I")
    scale = 65535.0 if hi <= 65535 else float(np.iinfo(values.dtype).max)
    return (values.astype(np.float64) / scale).astype(np.float32)


# -- masks ------------------------------------------------------------------------------------
def _full_scale(values: np.ndarray) -> float:
    top = float(values.max())
    if np.issubdtype(values.dtype, np.floating) and top <= 1.0:
        return 1.0
    for scale in (255.0, 65535.0):
        if top <= scale:
            return scale
    return top


def _binarize_levels(values: np.ndarray) -> np.ndarray:
    """Grey-level rule of the module docstring, for a 2-D array of levels."""
    if values.dtype == np.uint8:
        levels = np.flatnonzero(np.bincount(values.ravel(), minlength=256))
    else:
        levels = np.unique(values)
    if levels.size == 1:
        return np.full(values.shape, bool(levels[0] != 0))
    if levels.size == 2:
        return values == levels[1]
    return values >= _full_scale(values) / 2


def binarize_mask(
    values: np.ndarray,
    mode: str | None = None,
    palette: list[int] | None = None,
    source: str = "mask",
) -> np.ndarray:
    """Binarise a decoded mask to ``(H, W) bool`` (rules in the module docstring).

    Args:
        values: the decoded array (``np.asarray`` of a PIL image, or a TIFF page).
        mode: the PIL mode, or None for a plain array (grey-level rule; a trailing axis of 3
            or 4 is treated as RGB(A)).
        palette: the flat RGB palette of a ``"P"`` image, used only to detect ambiguity.
        source: names the file in error messages.
    """
    values = np.asarray(values)
    if mode is None:
        if values.ndim == 3 and values.shape[-1] in (3, 4):
            mode = "RGB"
        elif values.ndim == 2:
            mode = "L"
        else:
            raise DataError(f"{source} has shape {values.shape}: expected a 2-D mask")
    if mode not in _MASK_MODES:
        raise DataError(
            f"{source} has mode {mode!r}: expected a binary mask in one of {', '.join(_MASK_MODES)}"
        )
    if mode in ("LA", "PA", "RGBA"):
        values = values[..., :-1] if mode == "RGBA" else values[..., 0]
        mode = {"LA": "L", "PA": "P", "RGBA": "RGB"}[mode]
    if mode == "1":
        return values.astype(bool)
    if mode == "P":
        return _binarize_palette(values, palette, source)
    if mode == "RGB":
        rgb = values[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            values = rgb[..., 0]
        else:
            values = rgb.max(axis=-1)
    return _binarize_levels(values)


def _binarize_palette(index: np.ndarray, palette: list[int] | None, source: str) -> np.ndarray:
    used = np.flatnonzero(np.bincount(index.ravel().astype(np.int64)))
    if used.size > 2:
        raise DataError(
            f"{source} is a palette image using {used.size} indices {used.tolist()[:8]}: "
            "expected a binary mask (index 0 = background, one non-zero index = foreground)"
        )
    if used.size == 1 and palette is not None and len(palette) >= 3 * (int(used[0]) + 1):
        r, g, b = palette[3 * int(used[0]) : 3 * int(used[0]) + 3]
        bright = (r + g + b) / 3 >= 128
        if bright == (used[0] == 0):
            shown = "bright" if bright else "dark"
            raise DataError(
                f"{source} is a palette image using only index {int(used[0])}, displayed "
                f"{shown} (colour {(r, g, b)}): ambiguous, since the index says "
                f"{'background' if used[0] == 0 else 'foreground'} everywhere; re-save it as "
                "a grey-level (mode L, 0/255) mask"
            )
    return index != 0


def read_mask(path: Path, what: str = "mask") -> np.ndarray:
    """A binary mask as ``(H, W) bool`` whatever its mode (see :func:`binarize_mask`)."""
    mode, array, palette = _load_pil(path, what)
    return binarize_mask(array, mode, palette, source=f"{what} {path}")


def check_mask_shape(
    mask: np.ndarray, mask_path: Path, image_shape: tuple[int, ...], image_path: Path, what: str
) -> None:
    """Raise DataError unless ``mask`` is ``H x W`` like its image (``image_shape[:2]``)."""
    if mask.shape[:2] != tuple(image_shape[:2]):
        h, w = mask.shape[:2]
        raise DataError(
            f"{what} {mask_path} is {h}x{w} (HxW) but its image {image_path} is "
            f"{image_shape[0]}x{image_shape[1]}: expected the same size"
        )
