"""The paper's pixel-wise loss weight map, Eq. 2 (Ronneberger et al. 2015, Sec. 3, Fig. 3d).

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))

with ``w_c`` the class-frequency balancing weight, ``d1`` the distance to the border of the
nearest cell and ``d2`` the distance to the border of the second nearest cell; the paper uses
``w0 = 10`` and ``sigma ~ 5`` pixels. The input is an *instance labelling*: an integer array with
0 for background (including the separation borders / membranes) and 1..K for the cells;
:func:`instances_from_membranes` builds one from an ISBI-style membrane label image.

Definitions and choices (the paper does not fix them):

* **Distances.** ``d_k(x)`` is the Euclidean distance from the centre of pixel ``x`` to the
  centre of the nearest pixel of cell ``k`` (``scipy.ndimage.distance_transform_edt``), so it is
  0 on cell ``k`` and 1 on a background pixel touching it. ``d1 <= d2`` are the two smallest
  ``d_k(x)`` over *distinct* cells (:func:`distance_maps`). In a 2-pixel gap between two
  cells the gap pixels have ``{d1, d2} = {1, 2}``, so ``d1 + d2 = 3`` (measuring to the pixel
  *edges* instead would give the gap width, 2).
* **Fewer than two cells.** With one cell ``d2 = inf`` everywhere, so the separation term is
  exactly 0 and ``w = w_c``: there is no border between two cells to learn. With no cells
  ``d1 = d2 = inf`` as well.
* **Where the separation term applies.** Eq. 2 is written for every pixel, and the text says the
  weights "force the network to learn the small separation borders that we introduce between
  touching cells", and Fig. 3d is "a pixel-wise loss weight to force the network to learn the
  border pixels". By default
  (``where="background"``) the term is added on background pixels only and cell pixels get
  ``w_c``. ``where="all"`` evaluates Eq. 2 literally on every pixel: inside cell ``k`` then
  ``d1 = 0`` and ``d2`` is the distance to the nearest other cell, so the high weights also
  spill a few pixels into the cells on both sides of a narrow gap. Cells that touch directly
  (no background pixel between them) get no separation weight with ``where="background"``:
  introduce the separation border first, as the paper does ("computed using morphological
  operations").
* **Class balancing** ``w_c``: two classes, background (label 0) and foreground (label > 0).
  ``class_weights=None`` uses the frequencies of *this* label image:
  ``w_c = N / (C * n_c)`` for each of the ``C`` classes present (``n_c`` pixels of class ``c``
  among ``N``), i.e. inverse frequency normalised so that the mean of ``w_c`` over the image is
  1 and both classes carry the same total weight. The paper balances "the frequency of pixels
  from a certain class in the training data set": for data-set frequencies compute
  :func:`balanced_class_weights` over all training labels once and pass the pair as
  ``class_weights``. An explicit ``(w_background, w_foreground)`` pair or a mapping with keys
  ``0``/``1`` (or ``"background"``/``"foreground"``) is used as given.
* **Speed.** ``d_k`` is computed per cell inside its bounding box grown by a cut-off radius,
  not on the whole image (``O(K)`` full-image transforms take seconds for K ~ 200). For
  :func:`weight_map` the radius is ``sigma * sqrt(2 * ln(w0 / 1e-6))`` (28 px for the paper's
  values): wherever ``d1 + d2`` exceeds it the separation term is below 1e-6, so the result
  differs from the exact one by less than 1e-6 everywhere (before rounding to float32).

Explained in chapter 4 (the loss and its weight map).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

ClassWeights = Sequence[float] | Mapping[int | str, float] | None
Where = Literal["background", "all"]
WHERE: tuple[str, ...] = ("background", "all")

#: Largest value of the separation term that weight_map may drop (absolute, in weight units).
TERM_TOLERANCE = 1e-6


# -- input handling ------------------------------------------------------------------------------
def _as_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Validate an instance labelling and relabel it to consecutive ids 1..K (0 stays 0)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels.astype(np.int32)
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must be an integer (or bool) array, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} must be non-negative (0 = background, 1..K = cells)")
    values, inverse = np.unique(labels, return_inverse=True)
    if values.size and values[0] != 0:
        inverse = inverse + 1  # no background pixel: ids start at 1 all the same
    return inverse.reshape(labels.shape).astype(np.int32)


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


# -- instances -----------------------------------------------------------------------------------
def instances_from_membranes(
    mask: np.ndarray,
    *,
    interior_value: float | bool | None = None,
    connectivity: int = 1,
    min_size: int = 0,
) -> np.ndarray:
    """Instance labelling = connected components of the cell interiors.

    Args:
        mask: ``(H, W)`` label image. By default every non-zero (True) pixel is cell interior,
            which is right for ISBI 2012 labels (255 = interior, 0 = membrane) and for a boolean
            interior mask.
        interior_value: if given, interior is ``mask == interior_value`` instead; pass
            ``interior_value=0`` (or ``False``) for a membrane mask whose membranes are non-zero.
        connectivity: 1 (4-neighbourhood, default) or 2 (8-neighbourhood). 4-connectivity keeps
            two cells apart across a one-pixel *diagonal* membrane, which 8-connectivity would
            step through and merge.
        min_size: components with fewer pixels are set to background (0).

    Returns:
        ``int32`` labels, 0 = background/membrane, cells numbered 1..K consecutively.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {mask.shape}")
    if connectivity not in (1, 2) or isinstance(connectivity, bool):
        raise ValueError(f"connectivity must be 1 (4-neighbours) or 2 (8-neighbours), "
                         f"got {connectivity!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral) or min_size < 0:
        raise ValueError(f"min_size must be a non-negative integer, got {min_size!r}")
    interior = mask != 0 if interior_value is None else mask == interior_value
    structure = ndimage.generate_binary_structure(2, connectivity)
    labels, _ = ndimage.label(interior, structure=structure)
    if min_size > 1:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = True
        keep = np.cumsum(~small) * ~small  # new consecutive ids, 0 for dropped components
        labels = keep[labels]
    return labels.astype(np.int32)


# -- distances -----------------------------------------------------------------------------------
def _two_nearest(labels: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and second smallest ``d_k``, exact where <= ``radius`` and ``inf`` beyond.

    ``labels`` must be consecutive (from :func:`_as_labels`). Each cell's distance transform is
    computed in its bounding box grown by ``ceil(radius)`` pixels, which holds every pixel with
    ``d_k <= radius``; the running minimum and second minimum are kept in place.
    """
    height, width = labels.shape
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    pad = int(math.ceil(min(radius, height + width)))
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rs, cs = box
        window = (slice(max(rs.start - pad, 0), min(rs.stop + pad, height)),
                  slice(max(cs.start - pad, 0), min(cs.stop + pad, width)))
        dk = ndimage.distance_transform_edt(labels[window] != k)
        a, b = d1[window], d2[window]  # views
        np.minimum(b, np.maximum(a, dk), out=b)
        np.minimum(a, dk, out=a)
    d1[d1 > radius] = np.inf
    d2[d2 > radius] = np.inf
    return d1, d2


def distance_maps(
    labels: np.ndarray, max_distance: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(d1, d2)``: distances to the nearest and second-nearest cell of every pixel (Eq. 2).

    ``labels`` is an instance labelling (0 = background, 1..K = cells; any non-negative integer
    ids). Distances are pixel-centre Euclidean distances, 0 on the cell itself (module
    docstring); ``d1 <= d2`` everywhere; ``d2 = inf`` where there is no second cell and
    ``d1 = d2 = inf`` without cells. Returns two float64 ``(H, W)`` arrays.

    ``max_distance=None`` gives exact values everywhere: the per-cell search radius starts at
    32 px and doubles until no finite distance can be missing, which in crowded images (EM) is
    reached quickly but with large empty areas may cost one whole-image distance transform per
    cell. A finite ``max_distance`` is faster: values above it are reported as ``inf``.
    """
    labels = _as_labels(labels)
    if max_distance is not None:
        if not isinstance(max_distance, numbers.Real) or isinstance(max_distance, bool) or not (
            max_distance >= 0
        ):
            raise ValueError(f"max_distance must be a number >= 0 or None, got {max_distance!r}")
        return _two_nearest(labels, float(max_distance))
    n_cells = int(labels.max(initial=0))
    full = math.hypot(*labels.shape)  # no two pixels are farther apart
    radius = 32.0
    while True:
        d1, d2 = _two_nearest(labels, radius)
        # Beyond `radius` a value is unknown, unless it is truly infinite because there are not
        # enough cells (d1 with no cell, d2 with one cell).
        unresolved = bool(np.isinf(d2).any()) if n_cells >= 2 else False
        unresolved |= bool(np.isinf(d1).any()) and n_cells >= 1
        if not unresolved or radius >= full:
            return d1, d2
        radius = min(2.0 * radius, full)


# -- class balance -------------------------------------------------------------------------------
def balanced_class_weights(label_maps: Iterable[np.ndarray],
                           masks: Iterable[np.ndarray | None] | None = None,
                           ) -> tuple[float, float]:
    """Data-set ``(w_background, w_foreground)`` with ``w_c = N / (C * n_c)`` (mean weight 1).

    Counts background (0) and foreground (> 0) pixels over all ``label_maps`` (instance or
    binary labels); ``C`` is the number of classes present. An absent class gets weight 1.
    ``masks`` (one boolean ``(H, W)`` mask or ``None`` per label map, e.g. DRIVE's field of
    view) restricts the count to the pixels the loss sees: on DRIVE the vessels are 8.6 % of
    the whole images but 12.5 % of the pixels inside the FOV.
    """
    counts = np.zeros(2, dtype=np.int64)
    mask_list = None if masks is None else list(masks)
    for k, labels in enumerate(label_maps):
        labels = np.asarray(labels)
        mask = None if mask_list is None else mask_list[k]
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != labels.shape:
                raise ValueError(f"mask {k} has shape {mask.shape}, its label map "
                                 f"{labels.shape}")
            labels = labels[mask]
        fg = int(np.count_nonzero(labels))
        counts += (labels.size - fg, fg)
    return _balanced(counts)


def _balanced(counts: np.ndarray) -> tuple[float, float]:
    present = counts > 0
    total, n_present = int(counts.sum()), int(present.sum())
    w = [total / (n_present * n) if n else 1.0 for n in counts]
    return float(w[0]), float(w[1])


def _class_weight_pair(class_weights: ClassWeights) -> tuple[float, float]:
    if isinstance(class_weights, Mapping):
        keys = set(class_weights)
        for bg, fg in ((0, 1), ("background", "foreground")):
            if keys == {bg, fg}:
                pair = (class_weights[bg], class_weights[fg])
                break
        else:
            raise ValueError("class_weights mapping must have exactly the keys 0 and 1 (or "
                             f"'background' and 'foreground'), got {sorted(map(str, keys))}")
    elif isinstance(class_weights, Sequence) and not isinstance(class_weights, str):
        if len(class_weights) != 2:
            raise ValueError("class_weights must be (w_background, w_foreground), got "
                             f"{len(class_weights)} values")
        pair = (class_weights[0], class_weights[1])
    else:
        raise ValueError("class_weights must be None, a (w_background, w_foreground) pair or a "
                         f"mapping, got {class_weights!r}")
    return (_check_positive("class_weights[background]", pair[0], allow_zero=True),
            _check_positive("class_weights[foreground]", pair[1], allow_zero=True))


def class_weight_map(labels: np.ndarray, class_weights: ClassWeights = None) -> np.ndarray:
    """``w_c(x)`` of Eq. 2 as a float64 ``(H, W)`` map (see the module docstring)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got shape {labels.shape}")
    foreground = labels != 0
    if class_weights is None:
        fg = int(np.count_nonzero(foreground))
        w_bg, w_fg = _balanced(np.array([labels.size - fg, fg]))
    else:
        w_bg, w_fg = _class_weight_pair(class_weights)
    return np.where(foreground, w_fg, w_bg)


# -- Eq. 2 ---------------------------------------------------------------------------------------
def weight_map(
    labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: ClassWeights = None,
    *,
    where: Where = "background",
) -> np.ndarray:
    """The loss weight map of Eq. 2, ``w_c + w0 * exp(-(d1 + d2)**2 / (2 sigma**2))``.

    Args:
        labels: ``(H, W)`` instance labelling, 0 = background/border, 1..K = cells (any
            non-negative integer ids). A bool array is read as *one* cell: label a binary mask
            with :func:`instances_from_membranes` first.
        w0: amplitude of the separation term (paper: 10); 0 gives ``w_c``.
        sigma: its width in pixels (paper: ~5).
        class_weights: None (balance this image's class frequencies, mean ``w_c`` = 1), or
            ``(w_background, w_foreground)``, or a mapping ``{0: .., 1: ..}``.
        where: ``"background"`` (default) adds the separation term on background pixels only,
            ``"all"`` on every pixel (module docstring).

    Returns:
        float32 ``(H, W)`` weights, within ``TERM_TOLERANCE`` of the exact Eq. 2.
    """
    weights, term = _eq2_terms(labels, w0, sigma, class_weights, where)
    return (weights if term is None else weights + term).astype(np.float32)


def class_and_weight_maps(
    labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: ClassWeights = None,
    *,
    where: Where = "background",
) -> tuple[np.ndarray, np.ndarray]:
    """``(weight_map(labels, 0, ...), weight_map(labels, w0, ...))``: the class-balance map
    ``w_c`` alone and the whole map of Eq. 2 (:func:`weight_map`), from one labelling and one
    ``w_c`` (a comparison of the two computes each term once)."""
    weights, term = _eq2_terms(labels, w0, sigma, class_weights, where)
    return weights.astype(np.float32), (weights if term is None else weights + term).astype(
        np.float32)


def _eq2_terms(labels: np.ndarray, w0: float, sigma: float, class_weights: ClassWeights,
               where: Where) -> tuple[np.ndarray, np.ndarray | None]:
    """``(w_c, separation term)`` of Eq. 2 in float64, the term ``None`` where it is 0."""
    w0 = _check_positive("w0", w0, allow_zero=True)
    sigma = _check_positive("sigma", sigma)
    if where not in WHERE:
        raise ValueError(f"where={where!r} is not valid; expected one of {', '.join(WHERE)}")
    cells = _as_labels(labels)
    weights = class_weight_map(cells, class_weights)
    if w0 <= TERM_TOLERANCE or cells.max(initial=0) < 2:
        return weights, None  # term <= tolerance, or exactly 0 with < 2 cells
    cutoff = sigma * math.sqrt(2.0 * math.log(w0 / TERM_TOLERANCE))
    d1, d2 = _two_nearest(cells, cutoff)
    term = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    if where == "background":
        term[cells != 0] = 0.0
    return weights, term
