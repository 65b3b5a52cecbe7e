"""Data augmentation: the paper's elastic deformation (Sec. 3.1) and an albumentations alternative.

Paper (Sec. 3.1): "we generate smooth deformations using random displacement vectors on a
coarse 3 by 3 grid. The displacements are sampled from a Gaussian distribution with 10 pixels
standard deviation. Per-pixel displacements are then computed using bicubic interpolation."
:func:`elastic_deform` implements exactly that, in three exposed steps so that a notebook can
plot each of them:

1. :func:`coarse_displacements` draws the ``(2, grid, grid)`` displacement vectors, every
   component i.i.d. N(0, sigma**2) pixels (``sigma`` is the standard deviation per axis).
2. :func:`displacement_field` interpolates them to a per-pixel ``(2, H, W)`` field with a
   *cubic spline* ("bicubic interpolation"). **Grid placement:** the ``grid x grid`` points sit
   on the image corners and are evenly spaced in between, i.e. coarse point ``(i, j)`` is at
   pixel ``(i * (H - 1) / (grid - 1), j * (W - 1) / (grid - 1))`` (for 3x3: the four corners, the
   four edge mid-points and the centre). The spline interpolates, so the field equals the drawn
   vector exactly at every grid point; between grid points its standard deviation is somewhat
   smaller than ``sigma``. The spline's boundary condition is "mirror" (whole-sample
   symmetric), so the field has zero normal derivative at the image border. The grid is
   ``grid x grid`` whatever the aspect ratio (spacing differs per axis for non-square images).

   Because the grid is tied to the image, the same ``sigma`` deforms a small patch more
   strongly: the largest displacement gradient of a draw (median over draws, sigma=10, 3x3) is
   about 0.14 on 572x572, 0.32 on 256x256 and 0.64 on 128x128 (where folds become possible).
   To keep the paper's strength on small patches, ``tile`` (:class:`ElasticDeformation`,
   :func:`elastic_deform`) lays the grid over a virtual paper-sized tile (572 pixels) and
   evaluates the field only on the patch, which sits at a uniformly random place in that tile:
   exactly the field the patch would get if the whole tile were deformed and the patch cut
   from it. :func:`tile_displacement_field` computes that window of the tile's field. The
   patch sampler (:class:`unet_core.data.sampler.PatchSampler`, ``context``) hands the
   transform the patch with ``context`` pixels of real image around it, so that pixels pulled
   in from beyond the patch come from the image, as in the deformed tile, not from a mirror of
   the patch; the transform deforms that window and the sampler keeps its centre.

   The Freiburg group's later public Caffe code (the ``CreateDeformation`` layer of the 3D
   U-Net / U-Net plugin releases) parametrises the grid differently: a fixed spacing in pixels,
   control points on a lattice reaching beyond the image, and cubic *B-spline approximation*
   (the drawn values are not attained). We follow the 2015 paper's wording instead.
3. :func:`warp` resamples the arrays. Convention: ``out[y, x] = in[y + field[0, y, x],
   x + field[1, y, x]]`` (backward mapping; component 0 is the row, 1 the column displacement).
   Samples falling outside the image are mirrored ("mirror": ``d c b | a b c d | c b a``, the
   same extrapolation the paper uses for the overlap-tile strategy, Fig. 2; OpenCV calls it
   ``BORDER_REFLECT_101``).

Images are resampled with a spline of order ``order`` (3 = cubic, the default; 1 = bilinear).
Integer images are rounded and clipped to their dtype's range (cubic splines overshoot at sharp
edges); float images are returned in their dtype and are *not* clipped.

Masks (label images, field-of-view masks, instance labellings; any dtype, bool included) are
resampled by **nearest neighbour**, not by thresholding a smoothly resampled float: nearest
neighbour never invents a label value, so it works unchanged for binary masks, multi-class
labels and instance labellings (which a threshold cannot handle), and it samples each mask at
exactly the same (rounded) position as the image, so image, labels and FOV move together.
The price is a sub-pixel staircase on label boundaries, which is invisible at the deformation's
scale (a 10-pixel displacement over a ~286-pixel grid spacing barely stretches a pixel).
Weight maps (:mod:`unet_core.weights`) are best recomputed from the deformed instance labels.

Deviations / choices not fixed by the paper: the spline family and boundary condition for the
field interpolation (cubic spline, mirror), the image interpolation order (cubic spline) and the
boundary extrapolation (mirror). The paper also names shifts, rotations and gray-value
variations as the invariances it needs ("we primarily need shift and rotation invariance as
well as robustness to deformations and gray value variations") without specifying them;
``make_augmentation("paper")`` applies only the specified elastic deformation, and
``"paper_full"`` (:class:`PaperAugmentation`) all four: the elastic deformation, a rotation by
a uniformly drawn angle, the shift of the random patch position (every augmentation has it)
and a random contrast and brightness.

:func:`albumentations_pipeline` is the modern alternative (flips, 90-degree rotations,
ElasticTransform, GridDistortion, brightness/contrast); ``"albumentations_paper_elastic"``
(:class:`WithPaperElastic`) is that pipeline with its elastic step swapped for the paper's
deformation, so the two differ in the elastic step alone. :func:`make_augmentation` selects
one of :data:`AUGMENTATIONS`. Every transform has the call convention
``transform(image, *masks, rng=None) -> (image, *masks)``: it always returns a tuple (also with
no masks), preserves the image dtype and every mask's dtype, and is deterministic given ``rng``
(a :class:`numpy.random.Generator`, or an int seed).

Explained in chapter 3 (elastic deformation); chapter 6 measures the choice of augmentation.
"""

from __future__ import annotations

import functools
import math
import numbers
import os
import random
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from scipy import ndimage

RngLike = np.random.Generator | int | None
AUGMENTATIONS: tuple[str, ...] = ("paper", "paper_full", "albumentations",
                                  "albumentations_paper_elastic", "none")
#: The augmentations that use the paper's elastic deformation (and its ``tile``).
PAPER_ELASTIC: tuple[str, ...] = ("paper", "paper_full", "albumentations_paper_elastic")


class Augmentation(Protocol):
    """Call convention shared by every transform of this module."""

    def __call__(
        self, image: np.ndarray, *masks: np.ndarray, rng: RngLike = None
    ) -> tuple[np.ndarray, ...]: ...


# -- validation helpers ---------------------------------------------------------------------------
def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0 (standard deviation in pixels), got {sigma!r}")
    return float(sigma)


def _check_grid(grid: int) -> int:
    if isinstance(grid, bool) or not isinstance(grid, numbers.Integral) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2 (points per axis), got {grid!r}")
    return int(grid)


def _check_order(order: int) -> int:
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or not 0 <= order <= 5:
        raise ValueError(f"order must be an integer spline order in 0..5, got {order!r}")
    return int(order)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {image.shape}")
    if image.dtype == bool or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise ValueError(f"image must have an integer or floating dtype, got {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"image must not be empty, got shape {image.shape}")
    return image


def _check_masks(masks: Sequence[np.ndarray], shape: tuple[int, ...]) -> list[np.ndarray]:
    out = []
    for i, mask in enumerate(masks):
        mask = np.asarray(mask)
        if mask.shape != tuple(shape[:2]):
            raise ValueError(
                f"masks[{i}] has shape {mask.shape}, expected (H, W) = {tuple(shape[:2])} "
                "to match the image"
            )
        out.append(mask)
    return out


def _rng(rng: RngLike) -> np.random.Generator:
    if rng is not None and not isinstance(rng, np.random.Generator | numbers.Integral):
        raise ValueError(f"rng must be a numpy Generator, an int seed or None, got {rng!r}")
    return np.random.default_rng(rng)


# -- the paper's elastic deformation ---------------------------------------------------------------
def coarse_displacements(grid: int = 3, sigma: float = 10.0, rng: RngLike = None) -> np.ndarray:
    """Random displacement vectors on a ``grid x grid`` lattice (paper Sec. 3.1: 3x3, 10 px).

    Returns a float64 array ``(2, grid, grid)``: component 0 is the row (y) displacement,
    component 1 the column (x) displacement, each entry i.i.d. N(0, sigma**2) in pixels.
    """
    grid, sigma = _check_grid(grid), _check_sigma(sigma)
    return _rng(rng).normal(0.0, sigma, size=(2, grid, grid))


@functools.lru_cache(maxsize=64)
def _spline_matrix(n: int, g: int) -> np.ndarray:
    """``(n, g)`` matrix that cubic-spline-interpolates ``g`` corner-aligned samples to ``n``.

    Sample ``j`` sits at output position ``j * (n - 1) / (g - 1)``. The spline is linear in its
    samples, so column ``j`` is the interpolant of the unit vector ``e_j`` (mirror boundary).
    """
    positions = np.linspace(0.0, g - 1.0, n)[None, :]
    eye = np.eye(g)
    columns = [ndimage.map_coordinates(eye[j], positions, order=3, mode="mirror") for j in range(g)]
    matrix = np.stack(columns, axis=1)
    matrix.flags.writeable = False
    return matrix


def displacement_field(coarse: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Interpolate coarse displacements ``(2, gy, gx)`` to a per-pixel field ``(2, H, W)``.

    Bicubic (cubic-spline, mirror boundary) interpolation with the coarse points on the image
    corners and evenly spaced in between (see the module docstring). ``shape`` is ``(H, W)``
    (extra trailing entries, e.g. channels, are ignored). The field is exact at the grid points
    and identically zero when ``coarse`` is zero.
    """
    coarse = np.asarray(coarse, dtype=np.float64)
    if coarse.ndim != 3 or coarse.shape[0] != 2 or min(coarse.shape[1:]) < 2:
        raise ValueError(f"coarse must have shape (2, gy, gx) with gy, gx >= 2, got {coarse.shape}")
    if len(shape) < 2 or min(int(shape[0]), int(shape[1])) < 1:
        raise ValueError(f"shape must start with (H, W), H, W >= 1, got {tuple(shape)}")
    height, width = int(shape[0]), int(shape[1])
    rows = _spline_matrix(height, coarse.shape[1])  # (H, gy)
    cols = _spline_matrix(width, coarse.shape[2])  # (W, gx)
    return np.stack([rows @ c @ cols.T for c in coarse])


def _window_spline_matrix(tile: int, g: int, start: int, n: int) -> np.ndarray:
    """Rows ``start .. start + n - 1`` of ``_spline_matrix(tile, g)``, also for rows outside
    ``0 .. tile - 1`` (the spline continued by its mirror boundary)."""
    positions = (start + np.arange(n, dtype=np.float64))[None, :] * ((g - 1.0) / (tile - 1.0))
    eye = np.eye(g)
    return np.stack([ndimage.map_coordinates(eye[j], positions, order=3, mode="mirror")
                     for j in range(g)], axis=1)


def tile_displacement_field(coarse: np.ndarray, tile: int, window: tuple[int, int, int, int],
                            ) -> np.ndarray:
    """The ``(2, h, w)`` window of the field :func:`displacement_field` gives a ``tile x tile``
    image: rows ``top .. top + h - 1`` and columns ``left .. left + w - 1`` of
    ``displacement_field(coarse, (tile, tile))``, with ``window = (top, left, h, w)``; rows
    and columns outside the tile continue the spline (mirror boundary)."""
    coarse = np.asarray(coarse, dtype=np.float64)
    if coarse.ndim != 3 or coarse.shape[0] != 2 or min(coarse.shape[1:]) < 2:
        raise ValueError(f"coarse must have shape (2, gy, gx) with gy, gx >= 2, got {coarse.shape}")
    top, left, height, width = (int(v) for v in window)
    if tile < 2 or height < 1 or width < 1:
        raise ValueError(f"need tile >= 2 and a window of at least 1x1, got {tile}, {window}")
    rows = _window_spline_matrix(tile, coarse.shape[1], top, height)
    cols = _window_spline_matrix(tile, coarse.shape[2], left, width)
    return np.stack([rows @ c @ cols.T for c in coarse])


def _mirror_index(index: np.ndarray, n: int) -> np.ndarray:
    """Map integer indices into ``0..n-1`` by whole-sample mirroring (``d c b | a b c d``)."""
    if n == 1:
        return np.zeros_like(index)
    if index.min() >= 0 and index.max() < n:
        return index
    period = 2 * (n - 1)
    index = np.mod(index, period)
    return np.where(index >= n, period - index, index)


def warp(array: np.ndarray, field: np.ndarray, order: int = 3) -> np.ndarray:
    """Resample ``array`` (``(H, W)`` or ``(H, W, C)``) along a displacement ``field``.

    ``out[y, x] = array[y + field[0, y, x], x + field[1, y, x]]`` with mirror extrapolation.
    ``order`` 0 is nearest neighbour (exact gather, any dtype; used for masks), 1..5 a spline of
    that order (3 = cubic). With ``order > 0`` integer arrays are rounded and clipped to their
    dtype's range, bool arrays are resampled as 0/1 floats and thresholded at 0.5, floating
    arrays keep their dtype. A zero field returns an exact copy.
    """
    order = _check_order(order)
    array = np.asarray(array)
    field = np.asarray(field)
    if array.ndim not in (2, 3):
        raise ValueError(f"array must have shape (H, W) or (H, W, C), got {array.shape}")
    if field.shape != (2, *array.shape[:2]):
        expected = (2, *array.shape[:2])
        raise ValueError(f"field must have shape (2, H, W) = {expected}, got {field.shape}")
    if not np.any(field):
        return array.copy()
    return _resample(array, _positions(field), order)


def _positions(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sampling positions ``(rows, cols)``, each ``(H, W)``, of a displacement field."""
    _, height, width = field.shape
    rows = np.arange(height, dtype=np.float64)[:, None] + field[0]
    cols = np.arange(width, dtype=np.float64)[None, :] + field[1]
    return rows, cols


def _resample(
    array: np.ndarray, positions: tuple[np.ndarray, np.ndarray], order: int
) -> np.ndarray:
    """Core of :func:`warp` for validated inputs and precomputed sampling positions."""
    rows, cols = positions  # any shape: the output's (H, W)
    height, width = array.shape[:2]
    if order == 0:
        r = _mirror_index(np.floor(rows + 0.5).astype(np.intp), height)
        c = _mirror_index(np.floor(cols + 0.5).astype(np.intp), width)
        flat = array.reshape(height * width, *array.shape[2:])
        return flat[r * width + c]
    coords = np.stack([rows, cols])
    supported = array.dtype.kind in "iu" or array.dtype in (np.float32, np.float64)
    source = array if supported else array.astype(np.float64)  # bool, float16, longdouble
    planes = source[..., None] if source.ndim == 2 else source
    out = np.empty((*rows.shape, planes.shape[2]), dtype=np.float64)
    for ch in range(planes.shape[2]):
        ndimage.map_coordinates(planes[..., ch], coords, output=out[..., ch], order=order,
                                mode="mirror")
    out = out[..., 0] if array.ndim == 2 else out
    if array.dtype == bool:
        return out > 0.5
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(array.dtype)
    return out.astype(array.dtype, copy=False)


def elastic_deform(
    image: np.ndarray,
    *masks: np.ndarray,
    sigma: float = 10.0,
    grid: int = 3,
    rng: RngLike = None,
    order: int = 3,
    tile: int | None = None,
    context: int = 0,
) -> tuple[np.ndarray, ...]:
    """The paper's elastic deformation (Sec. 3.1) of an image and any number of masks.

    Draws ``coarse_displacements(grid, sigma, rng)``, interpolates them bicubically with
    :func:`displacement_field` and resamples the image with a spline of ``order`` (mirror
    boundary) and every mask by nearest neighbour with the *same* field (see the module
    docstring for the grid placement and why masks use nearest neighbour).

    Args:
        image: ``(H, W)`` or ``(H, W, C)``, integer or floating dtype (kept on output).
        *masks: ``(H, W)`` arrays of any dtype (bool masks, label or instance images, the FOV);
            values and dtype are preserved.
        sigma: standard deviation of each displacement component in pixels (paper: 10);
            ``sigma=0`` returns exact copies.
        grid: coarse points per axis (paper: 3).
        rng: a :class:`numpy.random.Generator` (advanced in place) or an int seed.
        order: spline order for the image (3 = bicubic, 1 = bilinear, 0 = nearest).
        tile: ``None``: the grid spans the array. An int (paper: 572): the grid spans a
            ``tile x tile`` tile and the patch, the array without its ``context`` border, sits
            at a uniformly drawn position inside it (drawn after the displacements), so a
            small patch is deformed as strongly as the paper deformed its tiles. The patch
            must fit in the tile.
        context: with ``tile``, the width of the border around the patch that is there only
            as a source of pixels (the caller keeps the centre); its field continues the
            tile's.

    Returns:
        ``(image, *masks)`` as a tuple, even when there are no masks.
    """
    sigma, grid, order = _check_sigma(sigma), _check_grid(grid), _check_order(order)
    image = _check_image(image)
    mask_list = _check_masks(masks, image.shape)
    generator = _rng(rng)
    coarse = coarse_displacements(grid, sigma, generator)
    if tile is None:
        field = displacement_field(coarse, image.shape)
    else:
        top, left = _tile_position(image.shape, int(tile), int(context), generator)
        field = tile_displacement_field(coarse, int(tile), (top - context, left - context,
                                                            *image.shape[:2]))
    if not np.any(field):  # sigma == 0: exact identity
        return (image.copy(), *(m.copy() for m in mask_list))
    positions = _positions(field)
    return (_resample(image, positions, order), *(_resample(m, positions, 0) for m in mask_list))


def _tile_position(shape: Sequence[int], tile: int, context: int,
                   rng: np.random.Generator) -> tuple[int, int]:
    """A uniformly drawn top-left corner of the patch (``shape`` less the context border)
    inside a ``tile x tile`` tile."""
    if isinstance(context, bool) or context < 0:
        raise ValueError(f"context must be an integer >= 0, got {context!r}")
    patch = (int(shape[0]) - 2 * context, int(shape[1]) - 2 * context)
    if min(patch) < 1 or max(patch) > tile:
        raise ValueError(f"the patch {patch[0]}x{patch[1]} (array {tuple(shape[:2])} less a "
                         f"context of {context}) must fit in the {tile}x{tile} tile")
    return (int(rng.integers(0, tile - patch[0] + 1)), int(rng.integers(0, tile - patch[1] + 1)))


class ElasticDeformation:
    """Picklable ``transform(image, *masks, rng=None)`` applying :func:`elastic_deform`.

    ``tile`` and ``context`` as in :func:`elastic_deform`: the sampler reads ``context`` and
    passes patches with that much image around them."""

    def __init__(self, sigma: float = 10.0, grid: int = 3, order: int = 3,
                 tile: int | None = None, context: int = 0) -> None:
        self.sigma, self.grid = _check_sigma(sigma), _check_grid(grid)
        self.order = _check_order(order)
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, numbers.Integral)
                                 or tile < 2):
            raise ValueError(f"tile must be None or an integer >= 2 (pixels), got {tile!r}")
        if isinstance(context, bool) or not isinstance(context, numbers.Integral) or context < 0:
            raise ValueError(f"context must be an integer >= 0 (pixels), got {context!r}")
        if context and tile is None:
            raise ValueError("context needs a tile: without one the grid spans the whole array")
        self.tile = None if tile is None else int(tile)
        self.context = int(context)

    def __call__(
        self, image: np.ndarray, *masks: np.ndarray, rng: RngLike = None
    ) -> tuple[np.ndarray, ...]:
        return elastic_deform(image, *masks, sigma=self.sigma, grid=self.grid, rng=rng,
                              order=self.order, tile=self.tile, context=self.context)

    def __repr__(self) -> str:
        extra = "" if self.tile is None else f", tile={self.tile}, context={self.context}"
        return (f"ElasticDeformation(sigma={self.sigma}, grid={self.grid}, "
                f"order={self.order}{extra})")


class NoAugmentation:
    """The identity ``transform(image, *masks, rng=None)``: validates, then returns copies."""

    def __call__(
        self, image: np.ndarray, *masks: np.ndarray, rng: RngLike = None
    ) -> tuple[np.ndarray, ...]:
        image = _check_image(image)
        _rng(rng)
        return (image.copy(), *(m.copy() for m in _check_masks(masks, image.shape)))

    def __repr__(self) -> str:
        return "NoAugmentation()"


def rotation_context(patch: int) -> int:
    """Pixels around a ``patch x patch`` window that a rotation by at most 45 degrees about its
    centre pulls in: its half-diagonal times ``2 sin(22.5 deg)``."""
    return math.ceil(patch / math.sqrt(2.0) * 2.0 * math.sin(math.pi / 8.0))


def _centre(array: np.ndarray, context: int) -> np.ndarray:
    return array[context:array.shape[0] - context, context:array.shape[1] - context]


def _paste_centre(window: np.ndarray, centre: np.ndarray, context: int) -> np.ndarray:
    """A copy of ``window`` whose centre (``context`` in from each side) is ``centre``."""
    out = window.copy()
    _centre(out, context)[...] = centre
    return out


class PaperAugmentation:
    """The paper's augmentation in full (Sec. 3.1): elastic deformation, rotation, grey values.

    On each call, as ``transform(window, *masks, rng=None)`` where ``window`` is the patch with
    ``context`` pixels of image around it (:class:`~unet_core.data.sampler.PatchSampler`):

    1. the paper's elastic field (:func:`tile_displacement_field`, ``sigma`` on a ``grid`` over
       a ``tile``-sized tile, the patch at a uniform place in it), on the patch's pixels;
    2. a rotation about the patch centre by ``90 k + phi`` degrees, ``k`` uniform in 0..3 and
       ``phi`` uniform in [-45, 45] (so the angle is uniform on the circle): ``phi`` rotates
       the sampling positions together with the elastic field (one resampling), ``k`` turns
       the result exactly (``np.rot90``; non-square patches: ``k`` in {0, 2});
    3. grey values (image only): ``a * x + b`` with the contrast ``a`` uniform in
       ``1 +- contrast`` and the brightness ``b`` uniform in ``+- brightness`` (image units,
       [0, 1] for the project's inputs), not clipped.

    Shifts are the random patch positions of the sampler. Only the centre (the patch) is
    resampled, from the whole window; the returned window's ``context`` border is the input's,
    unchanged, since the sampler keeps only the centre. ``context`` must cover the elastic
    displacements and the rotation (:func:`rotation_context`); beyond it the window is
    mirrored. The paper states none of the ranges of steps 2 and 3: they are ours.
    """

    def __init__(self, sigma: float = 10.0, grid: int = 3, tile: int = 572, context: int = 0,
                 order: int = 3, contrast: float = 0.2, brightness: float = 0.1) -> None:
        self.sigma, self.grid = _check_sigma(sigma), _check_grid(grid)
        self.order = _check_order(order)
        if isinstance(tile, bool) or not isinstance(tile, numbers.Integral) or tile < 2:
            raise ValueError(f"tile must be an integer >= 2 (pixels), got {tile!r}")
        if isinstance(context, bool) or not isinstance(context, numbers.Integral) or context < 0:
            raise ValueError(f"context must be an integer >= 0 (pixels), got {context!r}")
        self.tile, self.context = int(tile), int(context)
        self.contrast = _check_nonnegative("contrast", contrast)
        self.brightness = _check_nonnegative("brightness", brightness)

    def __call__(
        self, image: np.ndarray, *masks: np.ndarray, rng: RngLike = None
    ) -> tuple[np.ndarray, ...]:
        image = _check_image(image)
        mask_list = _check_masks(masks, image.shape)
        g = _rng(rng)
        c = self.context
        coarse = coarse_displacements(self.grid, self.sigma, g)
        top, left = _tile_position(image.shape, self.tile, c, g)
        h, w = image.shape[0] - 2 * c, image.shape[1] - 2 * c
        field = tile_displacement_field(coarse, self.tile, (top, left, h, w))  # (2, h, w)
        phi = math.radians(float(g.uniform(-45.0, 45.0)))
        k = int(g.integers(0, 4)) if h == w else 2 * int(g.integers(0, 2))
        contrast = float(g.uniform(1.0 - self.contrast, 1.0 + self.contrast))
        brightness = float(g.uniform(-self.brightness, self.brightness))
        # Source position of patch pixel (y, x): the centre m plus (y, x) - m turned by phi,
        # plus the elastic displacement, in window coordinates (offset by the context).
        y, x = np.indices((h, w), dtype=np.float64)
        my, mx = (h - 1) / 2.0, (w - 1) / 2.0
        cos, sin = math.cos(phi), math.sin(phi)
        rows = c + my + cos * (y - my) - sin * (x - mx) + field[0]
        cols = c + mx + sin * (y - my) + cos * (x - mx) + field[1]
        out_image = _resample(image, (rows, cols), self.order)
        out_image = np.rot90(out_image, k, axes=(0, 1))
        scaled = out_image.astype(np.float64) * contrast + brightness
        out_image = (np.clip(np.rint(scaled), *_int_range(image.dtype)).astype(image.dtype)
                     if np.issubdtype(image.dtype, np.integer) else scaled.astype(image.dtype))
        out_masks = [np.rot90(_resample(m, (rows, cols), 0), k) for m in mask_list]
        return (_paste_centre(image, out_image, c),
                *(_paste_centre(m, o, c) for m, o in zip(mask_list, out_masks, strict=True)))

    def __repr__(self) -> str:
        return (f"PaperAugmentation(sigma={self.sigma}, grid={self.grid}, tile={self.tile}, "
                f"context={self.context}, order={self.order}, contrast={self.contrast}, "
                f"brightness={self.brightness})")


def _int_range(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


class WithPaperElastic:
    """An augmentation pipeline whose elastic step is the paper's deformation.

    ``transform(window, *masks, rng=None)``: with probability ``p`` the paper's deformation
    (``elastic``, an :class:`ElasticDeformation` with a tile and the window's ``context``) of
    the whole window, then ``rest`` (e.g. :func:`albumentations_pipeline` with
    ``elastic_p=0``) on the centre patch. The rest's flips and 90-degree turns commute in
    distribution with the paper's field (its grid and its draws are symmetric), so the order
    matches ``rest`` with the elastic step in its place. The context border comes back as
    the input's (the sampler keeps the centre).
    """

    def __init__(self, elastic: ElasticDeformation, rest: Augmentation, p: float = 0.5) -> None:
        self.elastic, self.rest = elastic, rest
        self.p = _check_probability("p", p)
        self.context = elastic.context

    def __call__(
        self, image: np.ndarray, *masks: np.ndarray, rng: RngLike = None
    ) -> tuple[np.ndarray, ...]:
        image = _check_image(image)
        mask_list = _check_masks(masks, image.shape)
        g = _rng(rng)
        deformed = (self.elastic(image, *mask_list, rng=g) if g.random() < self.p
                    else (image, *mask_list))
        c = self.context
        done = self.rest(*(np.ascontiguousarray(_centre(a, c)) for a in deformed), rng=g)
        return tuple(_paste_centre(a, d, c) for a, d in zip((image, *mask_list), done,
                                                             strict=True))

    def __repr__(self) -> str:
        return f"WithPaperElastic({self.elastic!r}, {self.rest!r}, p={self.p})"


# -- albumentations alternative --------------------------------------------------------------------
def _import_albumentations() -> Any:
    """Import albumentations lazily (it takes seconds) without its network update check."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations

    return albumentations


def _check_probability(name: str, p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def _check_nonnegative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
        math.isfinite(value) and value >= 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class AlbumentationsAugmentation:
    """``transform(image, *masks, rng=None)`` running an albumentations ``Compose``.

    Built by :func:`albumentations_pipeline`; see there for the transforms and their defaults.

    Determinism: every call draws a 64-bit seed from ``rng`` and installs *one shared*
    ``numpy``/``random`` generator pair in the Compose with ``Compose.set_random_state``, so the
    whole call is a function of ``rng``. (``A.Compose(..., seed=s)`` and
    ``Compose.set_random_seed(s)`` in albumentations 2.0.8 instead seed every child transform
    with the *same* seed, which makes sibling transforms draw identical numbers: a horizontal
    and a vertical flip with equal ``p`` then always fire together.)

    Masks: albumentations would force its own dtype rules on them (in 2.0.8 a bool mask makes
    cv2 fail and int64 labels come back as int32), so masks are not passed as masks. Instead
    two float32 maps holding every pixel's row and column index go through the pipeline as
    masks (nearest-neighbour, mirror border), and each mask is then gathered at the resulting
    source indices. The result is exactly what
    nearest-neighbour resampling of the mask would give, for any dtype and any number of masks.

    Image dtypes: uint8 is passed as is; floating images go through float32 (albumentations'
    float convention: values in [0, 1], which brightness/contrast assumes and clips to) and come
    back in their dtype; uint16 is scaled to [0, 1] float32 and back. Other dtypes raise.
    """

    def __init__(self, square: Any, non_square: Any, description: str) -> None:
        self.compose_square, self.compose_non_square = square, non_square
        self.description = description

    def __call__(
        self, image: np.ndarray, *masks: np.ndarray, rng: RngLike = None
    ) -> tuple[np.ndarray, ...]:
        image = _check_image(image)
        mask_list = _check_masks(masks, image.shape)
        if image.dtype not in (np.uint8, np.uint16) and not np.issubdtype(image.dtype, np.floating):
            raise ValueError(
                f"image dtype {image.dtype} is not supported; use uint8, uint16 or a float dtype"
            )
        seed = int(_rng(rng).integers(0, 2**63))
        height, width = image.shape[:2]
        compose = self.compose_square if height == width else self.compose_non_square
        compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

        if image.dtype == np.uint16:
            work = image.astype(np.float32) / np.float32(65535.0)
        elif image.dtype == np.uint8:
            work = image
        else:
            work = image.astype(np.float32)
        work = np.ascontiguousarray(work)
        rows, cols = np.indices((height, width), dtype=np.float32)
        result = compose(image=work, masks=[rows, cols])
        out = np.asarray(result["image"])
        if out.ndim == 3 and image.ndim == 2:
            out = out[..., 0]
        if image.dtype == np.uint16:
            out = np.clip(np.rint(out * 65535.0), 0, 65535).astype(np.uint16)
        else:
            out = out.astype(image.dtype, copy=False)
        src_rows, src_cols = (np.rint(np.asarray(m)).astype(np.intp) for m in result["masks"])
        return (out, *(m[src_rows, src_cols] for m in mask_list))

    def __repr__(self) -> str:
        return f"AlbumentationsAugmentation({self.description})"


def albumentations_pipeline(
    *,
    flips: bool = True,
    rotate90: bool = True,
    elastic_p: float = 0.5,
    elastic_alpha: float = 300.0,
    elastic_sigma: float = 20.0,
    grid_distortion_p: float = 0.3,
    grid_steps: int = 5,
    grid_distort_limit: float = 0.3,
    brightness_contrast_p: float = 0.5,
    brightness_limit: float = 0.2,
    contrast_limit: float = 0.2,
) -> AlbumentationsAugmentation:
    """A modern augmentation pipeline on albumentations (not in the paper).

    In order, each with its own probability: horizontal and vertical flip (p=0.5 each),
    a random multiple of 90 degrees (p=0.5; square inputs only, because it would transpose a
    non-square shape; the flips already give 180 degrees), ``A.ElasticTransform`` (Simard-style
    Gaussian-smoothed per-pixel noise; ``elastic_sigma`` is the smoothing scale in pixels and
    ``elastic_alpha`` the gain -- albumentations normalises the noise by its maximum, so the
    resulting displacement depends on the image size: with the defaults the RMS displacement
    is roughly 3.4 px at 128x128 and 1.3 px at 572x572), ``A.GridDistortion``
    (``grid_steps`` cells per axis, ``grid_distort_limit`` relative cell-size change) and
    ``A.RandomBrightnessContrast``. Geometric transforms interpolate images bilinearly, masks
    by nearest neighbour, and mirror at the border (``BORDER_REFLECT_101``, as the paper's
    deformation does). Set a probability to 0 to drop a transform.

    Returns an :class:`AlbumentationsAugmentation`, called as
    ``transform(image, *masks, rng=None) -> (image, *masks)``, deterministic given ``rng``.
    """
    import cv2

    A = _import_albumentations()
    checked = _check_pipeline_numbers(
        elastic_p=elastic_p, elastic_alpha=elastic_alpha, elastic_sigma=elastic_sigma,
        grid_distortion_p=grid_distortion_p, grid_steps=grid_steps,
        grid_distort_limit=grid_distort_limit, brightness_contrast_p=brightness_contrast_p,
        brightness_limit=brightness_limit, contrast_limit=contrast_limit,
    )
    description = (
        f"flips={flips}, rotate90={rotate90}, elastic_p={elastic_p}, "
        f"elastic_alpha={checked['elastic_alpha']}, elastic_sigma={elastic_sigma}, "
        f"grid_distortion_p={grid_distortion_p}, "
        f"grid_steps={grid_steps}, grid_distort_limit={checked['grid_distort_limit']}, "
        f"brightness_contrast_p={brightness_contrast_p}, "
        f"brightness_limit={checked['brightness_limit']}, "
        f"contrast_limit={checked['contrast_limit']}"
    )
    return AlbumentationsAugmentation(
        _albumentations_compose(A, cv2, checked, flips=flips, rotate90=rotate90),
        _albumentations_compose(A, cv2, checked, flips=flips, rotate90=False),
        description,
    )


def _check_pipeline_numbers(
    *,
    elastic_p: float,
    elastic_alpha: float,
    elastic_sigma: float,
    grid_distortion_p: float,
    grid_steps: int,
    grid_distort_limit: float,
    brightness_contrast_p: float,
    brightness_limit: float,
    contrast_limit: float,
) -> dict[str, Any]:
    """Check :func:`albumentations_pipeline`'s numbers; returns them by name, as floats
    (``elastic_sigma`` as given, ``grid_steps`` as an int)."""
    checked: dict[str, Any] = {
        "elastic_p": _check_probability("elastic_p", elastic_p),
        "grid_distortion_p": _check_probability("grid_distortion_p", grid_distortion_p),
        "brightness_contrast_p": _check_probability("brightness_contrast_p", brightness_contrast_p),
    }
    checked["elastic_alpha"] = _check_nonnegative("elastic_alpha", elastic_alpha)
    if _check_nonnegative("elastic_sigma", elastic_sigma) < 1:
        raise ValueError(f"elastic_sigma must be >= 1 (albumentations), got {elastic_sigma!r}")
    checked["elastic_sigma"] = elastic_sigma
    if isinstance(grid_steps, bool) or not isinstance(grid_steps, numbers.Integral) or (
        grid_steps < 1
    ):
        raise ValueError(f"grid_steps must be a positive integer, got {grid_steps!r}")
    checked["grid_steps"] = int(grid_steps)
    checked["grid_distort_limit"] = _check_nonnegative("grid_distort_limit", grid_distort_limit)
    checked["brightness_limit"] = _check_nonnegative("brightness_limit", brightness_limit)
    checked["contrast_limit"] = _check_nonnegative("contrast_limit", contrast_limit)
    return checked


def _albumentations_compose(
    A: Any, cv2: Any, checked: dict[str, Any], *, flips: bool, rotate90: bool
) -> Any:
    """The ``A.Compose`` of :func:`albumentations_pipeline` (``checked``: its numbers)."""
    mirror = cv2.BORDER_REFLECT_101
    nearest = cv2.INTER_NEAREST
    transforms: list[Any] = []
    if flips:
        transforms += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if rotate90:
        transforms.append(A.RandomRotate90(p=0.5))
    transforms += [
        A.ElasticTransform(alpha=checked["elastic_alpha"], sigma=checked["elastic_sigma"],
                           border_mode=mirror, mask_interpolation=nearest,
                           p=checked["elastic_p"]),
        A.GridDistortion(num_steps=checked["grid_steps"],
                         distort_limit=checked["grid_distort_limit"], border_mode=mirror,
                         mask_interpolation=nearest, p=checked["grid_distortion_p"]),
        A.RandomBrightnessContrast(brightness_limit=checked["brightness_limit"],
                                   contrast_limit=checked["contrast_limit"],
                                   p=checked["brightness_contrast_p"]),
    ]
    return A.Compose(transforms, p=1.0)


def make_augmentation(kind: str, **kwargs: Any) -> Augmentation:
    """Select an augmentation by name, one of :data:`AUGMENTATIONS`.

    ``kwargs`` go to :class:`ElasticDeformation` (``"paper"``: ``sigma``, ``grid``,
    ``order``, ``tile``, ``context``), :class:`PaperAugmentation` (``"paper_full"``),
    :func:`albumentations_pipeline` (``"albumentations"``), or to the elastic step of
    :class:`WithPaperElastic` (``"albumentations_paper_elastic"``, plus its probability
    ``p``); ``"none"`` takes none. The result is called as
    ``transform(image, *masks, rng=None) -> (image, *masks)``.
    """
    if kind == "paper":
        return ElasticDeformation(**kwargs)
    if kind == "paper_full":
        return PaperAugmentation(**kwargs)
    if kind == "albumentations":
        return albumentations_pipeline(**kwargs)
    if kind == "albumentations_paper_elastic":
        p = kwargs.pop("p", 0.5)
        return WithPaperElastic(ElasticDeformation(**kwargs),
                                albumentations_pipeline(elastic_p=0.0), p=p)
    if kind == "none":
        if kwargs:
            raise ValueError(f"kind='none' takes no options, got {sorted(kwargs)}")
        return NoAugmentation()
    raise ValueError(f"kind={kind!r} is not valid; expected one of {', '.join(AUGMENTATIONS)}")
