"""Figure data and figures for the weight-map chapter (paper Sec. 3, Eqs. 1 and 2, Fig. 3).

The weight map itself is computed by :mod:`unet_core.weights` and the loss by
:mod:`unet_core.losses`; this module only prepares what the chapter looks at and draws it.

Figure data (pure functions, tested on their values):

* :func:`two_cells`: a toy labelling, two rectangular cells a given number of pixels apart.
* :func:`instance_colours`: an instance labelling as an RGB picture (paper Fig. 3b), with
  different colours for neighbouring cells (:func:`neighbour_pairs`).
* :func:`near_two_cells`: background pixels within ``k`` pixels of two different cells.
* :func:`densest_window` and :func:`thin_gap_window`: the square window with the most pixels
  of a mask, or of such pixels (where to zoom).
* :func:`thinnest_gap_point` and :func:`gap_profile`: a line across the thinnest gap, normal
  to it, and the values of any map along it.
* :func:`weight_mass_near_borders`: the share of the total weight that lands near two cells,
  over a whole data set, with and without the separation term.
* :func:`blurred_logits` and :func:`per_pixel_loss`: a perturbed prediction and the per-pixel
  terms of the weighted cross-entropy (Eq. 1), whose mean is
  :func:`~unet_core.losses.weighted_cross_entropy`.
* :func:`describe_machine`: one line naming the machine, for reported timings.

Figures (matplotlib; they draw what they are given and return the artists' data):

* :func:`plot_maps`: a grid of maps (optionally zoomed on a window, with the window drawn).
* :func:`plot_profile`: curves along a :class:`GapProfile`, with the gap shaded, and
  :func:`plot_profile_map`: the line drawn on a map around the gap.
* :func:`plot_parameter_grid`: weight maps for a grid of ``w0`` and ``sigma`` values.
* :func:`plot_weight_histogram`: the distribution of weights, per class.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy import ndimage

from unet_book.plotting import show
from unet_core.weights import ClassWeights, class_weight_map, distance_maps, weight_map
from unet_train.devices import processor_name

Window = tuple[slice, slice]

#: Colours of the two classes in the chapter's curves and histograms.
MEMBRANE_COLOUR = "#c62828"
INTERIOR_COLOUR = "#1565c0"


# -- toy data ------------------------------------------------------------------------------------
class TwoCells(NamedTuple):
    """A toy labelling (``labels``: 0 background, cells 1 and 2) and its ``gap`` (bool)."""

    labels: np.ndarray
    gap: np.ndarray


def two_cells(
    gap: int, shape: tuple[int, int] = (40, 60), cell: tuple[int, int] = (20, 15)
) -> TwoCells:
    """Two ``cell``-sized rectangles side by side, ``gap`` background columns apart.

    The pair is centred in an ``int32`` image of ``shape``; the left cell is 1, the right 2,
    the rest 0. ``TwoCells.gap`` marks the background pixels between them (the cells' rows,
    the ``gap`` columns in between). ``gap=0`` makes them touch.
    """
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    h, w = shape
    ch, cw = cell
    if ch > h or 2 * cw + gap > w:
        raise ValueError(f"two {cell} cells {gap} px apart do not fit in {shape}")
    labels = np.zeros(shape, dtype=np.int32)
    top, left = (h - ch) // 2, (w - 2 * cw - gap) // 2
    labels[top : top + ch, left : left + cw] = 1
    labels[top : top + ch, left + cw + gap : left + 2 * cw + gap] = 2
    between = np.zeros(shape, dtype=bool)
    between[top : top + ch, left + cw : left + cw + gap] = True
    return TwoCells(labels, between)


# -- instances as a picture ----------------------------------------------------------------------
#: Distinct colours for cells (matplotlib's tab10 without its grey, and six more).
CELL_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
                "#f7b6d2")


def neighbour_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of cells whose Voronoi regions touch (4-neighbours).

    Every background pixel is given to its nearest cell; two cells are neighbours when their
    regions share an edge, i.e. when nothing but background lies between them.
    """
    labels = np.asarray(labels)
    if labels.max(initial=0) == 0:
        return set()
    _, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    owner = labels[iy, ix]
    pairs: set[tuple[int, int]] = set()
    for a, b in ((owner[:, :-1], owner[:, 1:]), (owner[:-1, :], owner[1:, :])):
        differ = a != b
        lo = np.minimum(a[differ], b[differ])
        hi = np.maximum(a[differ], b[differ])
        pairs |= set(zip(lo.tolist(), hi.tolist(), strict=True))
    return pairs


def instance_colours(
    labels: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.55
) -> np.ndarray:
    """``(H, W, 3)`` float RGB: one colour per cell, background black (or the image).

    Colours come from :data:`CELL_PALETTE`, assigned greedily (cells with most neighbours
    first, each the least used colour that none of its neighbours has) so that neighbouring
    cells (:func:`neighbour_pairs`) differ and all colours are used. With a greyscale
    ``image``, the colours are blended over it with opacity ``alpha`` and the background shows
    the image, as in the paper's Fig. 3b.
    """
    labels = np.asarray(labels)
    n = int(labels.max(initial=0))
    neighbours: dict[int, set[int]] = {k: set() for k in range(1, n + 1)}
    for a, b in neighbour_pairs(labels):
        neighbours[a].add(b)
        neighbours[b].add(a)
    choice: dict[int, int] = {}
    used = [0] * len(CELL_PALETTE)
    for k in sorted(neighbours, key=lambda k: (-len(neighbours[k]), k)):
        taken = {choice[j] for j in neighbours[k] if j in choice}
        free = [i for i in range(len(CELL_PALETTE)) if i not in taken]
        choice[k] = min(free, key=lambda i: (used[i], i)) if free else k % len(CELL_PALETTE)
        used[choice[k]] += 1
    rgb_palette = np.array([to_rgb(c) for c in CELL_PALETTE])
    palette = np.zeros((n + 1, 3))
    for k, i in choice.items():
        palette[k] = rgb_palette[i]
    rgb = palette[labels]
    if image is None:
        return rgb
    grey = np.asarray(image, dtype=float)
    span = grey.max() - grey.min()
    grey = (grey - grey.min()) / (span if span > 0 else 1.0)
    grey = np.repeat(grey[..., None], 3, axis=2)
    cell = (labels > 0)[..., None]
    return np.where(cell, (1 - alpha) * grey + alpha * rgb, grey)


# -- where the gaps are --------------------------------------------------------------------------
def near_two_cells(labels: np.ndarray, k: float) -> np.ndarray:
    """Background pixels within ``k`` px of two different cells (``d2 <= k``), as bool.

    Distances are those of Eq. 2 (:func:`~unet_core.weights.distance_maps`, between pixel
    centres), so a background pixel touching a cell is at distance 1. All pixels of a gap of
    width ``g <= k`` qualify, and the middle pixels of gaps up to ``2k - 1`` wide.
    """
    labels = np.asarray(labels)
    _, d2 = distance_maps(labels, max_distance=k)
    return (labels == 0) & (d2 <= k)


def densest_window(mask: np.ndarray, size: int) -> Window:
    """The ``size`` x ``size`` window (inside the image) holding the most True pixels of ``mask``.

    Ties go to the first window in row-major order of its top-left corner. Returns the
    ``(rows, cols)`` slices.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"size must be in 1..{min(h, w)}, got {size}")
    table = np.zeros((h + 1, w + 1), dtype=np.int64)  # summed-area table
    table[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    counts = (table[size:, size:] - table[:-size, size:] - table[size:, :-size]
              + table[:-size, :-size])
    top, left = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return slice(int(top), int(top) + size), slice(int(left), int(left) + size)


def thin_gap_window(labels: np.ndarray, size: int, k: float = 3) -> Window:
    """The ``size`` x ``size`` window with the most :func:`near_two_cells` pixels (``d2 <= k``)."""
    return densest_window(near_two_cells(labels, k), size)


def thinnest_gap_point(labels: np.ndarray, window: Window | None = None) -> tuple[int, int]:
    """The background pixel (in ``window``) with the smallest ``d1 + d2``: the thinnest gap.

    Among equally thin pixels the one with most equally thin pixels around it (a 5x5
    neighbourhood) is taken, which prefers a straight stretch of gap to a corner.
    """
    labels = np.asarray(labels)
    d1, d2 = distance_maps(labels, max_distance=64)
    total = np.where(labels == 0, d1 + d2, np.inf)
    if window is not None:
        inside = np.zeros(labels.shape, dtype=bool)
        inside[window] = True
        total = np.where(inside, total, np.inf)
    best = float(total.min())
    if not math.isfinite(best):
        raise ValueError("no background pixel lies between two cells")
    thinnest = np.isclose(total, best)
    support = ndimage.uniform_filter(thinnest.astype(float), size=5, mode="constant")
    score = np.where(thinnest, support, -1.0)
    r, c = np.unravel_index(int(np.argmax(score)), labels.shape)
    return int(r), int(c)


@dataclass(frozen=True)
class GapProfile:
    """A straight line across a gap, sampled every ``step`` px (nearest-pixel values).

    Attributes:
        point: the ``(row, col)`` pixel the line is centred on.
        cells: the ids of the two cells it connects (nearest first).
        direction: unit ``(drow, dcol)`` from the first cell towards the second.
        t: signed position along the line, in px from ``point``.
        rows, cols: the pixel sampled at each position.
    """

    point: tuple[int, int]
    cells: tuple[int, int]
    direction: tuple[float, float]
    t: np.ndarray = field(repr=False)
    rows: np.ndarray = field(repr=False)
    cols: np.ndarray = field(repr=False)

    def sample(self, image: np.ndarray) -> np.ndarray:
        """The values of an ``(H, W)`` map along the line."""
        return np.asarray(image)[self.rows, self.cols]

    @property
    def ends(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """The two end points ``(row, col)`` (for drawing the line on a map)."""
        (r0, c0), (dr, dc) = self.point, self.direction
        a, b = float(self.t[0]), float(self.t[-1])
        return (r0 + a * dr, c0 + a * dc), (r0 + b * dr, c0 + b * dc)


def gap_profile(
    labels: np.ndarray,
    point: tuple[int, int],
    half_length: float = 12.0,
    step: float = 0.25,
    reach: float = 6.0,
) -> GapProfile:
    """The line through ``point`` across the gap between the two cells nearest to it.

    The direction is the gradient, at ``point``, of ``d_a - d_b`` (distances to the nearest
    cell ``a`` and the second nearest ``b``, computed within ``reach`` px of the point, or
    further if ``b`` is further away, and smoothed over about a pixel): from ``a`` towards
    ``b``, and for a straight gap along its normal. The line runs
    ``half_length`` px to both sides of ``point``; positions are sampled every ``step`` px
    and read at the nearest pixel.
    """
    labels = np.asarray(labels)
    r0, c0 = int(point[0]), int(point[1])
    rows, cols = np.nonzero(labels)
    if rows.size == 0:
        raise ValueError("labels has no cells")
    dist = np.hypot(rows - r0, cols - c0)
    ids = labels[rows, cols]
    nearest: dict[int, int] = {}  # cell id -> index of its nearest pixel
    for i in np.argsort(dist, kind="stable"):
        nearest.setdefault(int(ids[i]), int(i))
        if len(nearest) == 2:
            break
    if len(nearest) < 2:
        raise ValueError("a gap profile needs two cells")
    (a, ia), (b, ib) = nearest.items()
    # Direction: the gradient of d_a - d_b at the point (smoothed over ~1 px), which grows from
    # cell a towards cell b and, across a straight gap, points along its normal. (The line
    # between the two nearest pixels is often tied on the pixel grid: a diagonal gap would be
    # crossed vertically or horizontally.)
    h, w = labels.shape
    pad = int(math.ceil(max(float(reach), float(dist[ib]) + 2.0)))
    win = (slice(max(r0 - pad, 0), min(r0 + pad + 1, h)),
           slice(max(c0 - pad, 0), min(c0 + pad + 1, w)))
    local = labels[win]
    f = ndimage.distance_transform_edt(local != a) - ndimage.distance_transform_edt(local != b)
    gy, gx = np.gradient(ndimage.gaussian_filter(f, 1.0))
    vec = np.array([gy[r0 - win[0].start, c0 - win[1].start],
                    gx[r0 - win[0].start, c0 - win[1].start]])
    if not np.linalg.norm(vec) > 1e-9:
        vec = np.array([rows[ib] - rows[ia], cols[ib] - cols[ia]], dtype=float)
    unit = vec / np.linalg.norm(vec)
    t = np.arange(-half_length, half_length + step / 2, step)
    # Nearest pixel, halves rounded up (after rounding off float noise in the direction), so
    # that every pixel on an axis-parallel line covers exactly 1 / step samples.
    rr = np.clip(np.floor(np.round(r0 + t * unit[0], 9) + 0.5).astype(int), 0, h - 1)
    cc = np.clip(np.floor(np.round(c0 + t * unit[1], 9) + 0.5).astype(int), 0, w - 1)
    return GapProfile((r0, c0), (a, b), (float(unit[0]), float(unit[1])), t, rr, cc)


# -- weight mass -----------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightMass:
    """Shares (0..1) of a data set's pixels and weights that lie near two cells (``d2 <= k``).

    ``uniform`` is the share of pixels (the share of weight when every pixel weighs 1),
    ``class_only`` the share of the total ``w_c`` (Eq. 2 without the separation term, w0 = 0)
    and ``full`` that of the total ``w`` of Eq. 2; ``of_background`` is the fraction of the
    background (membrane) pixels that are near two cells. ``growth`` is the data set's total
    ``w`` over its total ``w_c`` (the same for every ``k``): how much the separation term adds
    to the loss as a whole.
    """

    k: float
    uniform: float
    class_only: float
    full: float
    of_background: float
    growth: float


def weight_mass_near_borders(
    instance_maps: Iterable[np.ndarray],
    ks: Sequence[float],
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: ClassWeights = None,
) -> list[WeightMass]:
    """Pool over ``instance_maps`` the share of each weight that lands within ``k`` of two cells.

    Every map is weighted by :func:`~unet_core.weights.weight_map` with the given ``w0``,
    ``sigma`` and ``class_weights`` (pass the data-set pair from
    :func:`~unet_core.weights.balanced_class_weights` for the paper's balancing); the shares
    are ratios of sums over all maps together (not means of per-map ratios). One
    :class:`WeightMass` per ``k``, in the order given.
    """
    ks = list(ks)
    near = np.zeros((len(ks), 3))  # pixels, w_c, w
    total = np.zeros(4)  # pixels, w_c, w, background pixels
    for labels in instance_maps:
        labels = np.asarray(labels)
        wc = class_weight_map(labels, class_weights)
        w = weight_map(labels, w0, sigma, class_weights).astype(np.float64)
        _, d2 = distance_maps(labels, max_distance=max(ks))
        background = labels == 0
        total += (labels.size, wc.sum(), w.sum(), background.sum())
        for i, k in enumerate(ks):
            region = background & (d2 <= k)
            near[i] += (region.sum(), wc[region].sum(), w[region].sum())
    if total[0] == 0:
        raise ValueError("no instance maps given")
    return [
        WeightMass(float(k), near[i, 0] / total[0], near[i, 1] / total[1], near[i, 2] / total[2],
                   near[i, 0] / total[3] if total[3] else 0.0, total[2] / total[1])
        for i, k in enumerate(ks)
    ]


# -- a perturbed prediction and its loss ---------------------------------------------------------
def blurred_logits(
    target: np.ndarray, sigma: float, confidence: float = 1.0, floor: float = 1e-3
) -> torch.Tensor:
    """Two-channel logits ``(1, 2, H, W)`` of a prediction that is the blurred target.

    ``q``, the binary ``target`` smoothed by a Gaussian of ``sigma`` px and clipped to
    ``[floor, 1 - floor]``, is turned into the logits ``(0, confidence * log(q / (1 - q)))``.
    With ``confidence=1`` the two-channel softmax gives back exactly ``q``; larger values make
    the prediction more certain (as a trained network is) without moving its 0.5 contour.
    Thin structures of class 1 fade below 0.5 and are lost first: a stand-in for a network
    that has not learnt them yet.
    """
    if not confidence > 0:
        raise ValueError(f"confidence must be > 0, got {confidence!r}")
    q = ndimage.gaussian_filter(np.asarray(target, dtype=np.float64), sigma)
    q = np.clip(q, floor, 1 - floor)
    logit = torch.from_numpy(confidence * np.log(q / (1 - q))).float()
    return torch.stack([torch.zeros_like(logit), logit])[None]


def per_pixel_loss(
    logits: torch.Tensor, target: np.ndarray | torch.Tensor, weight: np.ndarray | None = None
) -> np.ndarray:
    """The terms of Eq. 1, ``w(x) * -log p_l(x)(x)``, as an ``(H, W)`` float64 array.

    ``logits`` is ``(1, C, H, W)``, ``target`` the ``(H, W)`` class indices, ``weight`` the
    ``(H, W)`` weight map (None for 1). Their mean is
    ``weighted_cross_entropy(logits, target[None], weight[None])`` (the library's loss).
    """
    target = torch.as_tensor(np.asarray(target)).long()[None]
    ce = F.cross_entropy(logits.double(), target, reduction="none")[0].numpy()
    return ce if weight is None else ce * np.asarray(weight, dtype=np.float64)


# -- the machine, for timings --------------------------------------------------------------------
def describe_machine() -> str:
    """E.g. ``"AMD EPYC, 2 logical CPUs, Linux x86_64, Python 3.11.9, NumPy 2.1, SciPy 1.14"``."""
    import scipy

    return (f"{processor_name()}, {os.cpu_count()} logical CPUs, {platform.system()} "
            f"{platform.machine()}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}, "
            f"SciPy {scipy.__version__}")


# -- drawing -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    """One map of :func:`plot_maps`: a title, an ``(H, W)`` or ``(H, W, 3)`` array and how to
    colour it (the keywords of :func:`unet_book.plotting.show`)."""

    title: str
    data: np.ndarray = field(repr=False)
    cmap: str | None = None
    colorbar: bool = False
    log: bool = False
    vmin: float | None = None
    vmax: float | None = None


def draw_window(ax: Axes, window: Window, *, colour: str = "white", lw: float = 1.2) -> Rectangle:
    """Outline a ``(rows, cols)`` window on a full-image axes; returns the rectangle.

    The outline has a black halo, so that it shows on white, black and coloured maps alike.
    """
    rows, cols = window
    rect = Rectangle((cols.start - 0.5, rows.start - 0.5), cols.stop - cols.start,
                     rows.stop - rows.start, facecolor="none", edgecolor=colour, lw=lw,
                     path_effects=[patheffects.Stroke(linewidth=lw + 2, foreground="black"),
                                   patheffects.Normal()])
    ax.add_patch(rect)
    return rect


def plot_maps(
    panels: Sequence[Panel],
    *,
    ncols: int = 3,
    window: Window | None = None,
    box: Window | None = None,
    panel_size: float = 3.2,
) -> Figure:
    """A grid of maps, one per :class:`Panel`, without ticks.

    ``window`` crops every map to it (a zoom; the axes then count pixels from the window's
    corner). ``box`` outlines a window on every (uncropped) map. Unused cells are hidden.
    """
    n = len(panels)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows),
                             squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        data = np.asarray(panel.data)
        if window is not None:
            data = data[window]
        show(ax, data, panel.title, cmap=panel.cmap, colorbar=panel.colorbar, log=panel.log,
             vmin=panel.vmin, vmax=panel.vmax)
        if box is not None:
            draw_window(ax, box)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def plot_profile(
    ax: Axes,
    profile: GapProfile,
    curves: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    styles: Mapping[str, Mapping[str, object]] | None = None,
) -> None:
    """Draw each ``(H, W)`` map of ``curves`` along ``profile``; shade its background pixels.

    The shaded spans are the positions whose sampled pixel is background (label 0) in the
    instance ``labels``: the membrane or gap being crossed.
    """
    styles = styles or {}
    for name, image in curves.items():
        ax.plot(profile.t, profile.sample(image), label=name, **dict(styles.get(name, {})))
    gap = profile.sample(labels) == 0
    for start, stop in _runs(gap):
        lo = profile.t[start] - (profile.t[1] - profile.t[0]) / 2
        hi = profile.t[stop - 1] + (profile.t[1] - profile.t[0]) / 2
        ax.axvspan(lo, hi, color="0.85", zorder=0, lw=0)
    ax.set_xlabel("position across the gap (px)")
    ax.set_ylabel("weight")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_profile_map(
    ax: Axes,
    image: np.ndarray,
    profile: GapProfile,
    *,
    radius: int = 16,
    title: str | None = None,
    colour: str = "cyan",
    **style: object,
) -> Window:
    """Show ``image`` around ``profile.point`` (``radius`` px each way) with the profile line.

    The crop is clipped to the image; the axes use image coordinates, so the line is drawn at
    its true position. ``style`` goes to :func:`unet_book.plotting.show` (``cmap``, ``vmin``,
    ...). Returns the ``(rows, cols)`` window shown.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    r, c = profile.point
    window = (slice(max(r - radius, 0), min(r + radius + 1, h)),
              slice(max(c - radius, 0), min(c + radius + 1, w)))
    rows, cols = window
    extent = (cols.start - 0.5, cols.stop - 0.5, rows.stop - 0.5, rows.start - 0.5)
    show(ax, image[window], title, extent=extent, **style)  # type: ignore[arg-type]
    (r0, c0), (r1, c1) = profile.ends
    ax.plot([c0, c1], [r0, r1], color=colour, lw=1.5)
    ax.plot([c], [r], "o", color=colour, ms=4)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    return window


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def plot_parameter_grid(
    labels: np.ndarray,
    w0s: Sequence[float],
    sigmas: Sequence[float],
    *,
    window: Window | None = None,
    class_weights: ClassWeights = None,
    log: bool = False,
    panel_size: float = 2.4,
) -> tuple[Figure, dict[tuple[float, float], np.ndarray]]:
    """Weight maps for every ``(w0, sigma)``: one row per sigma, one column per w0.

    Each map is computed on the whole ``labels`` (so cells cut by the window keep their true
    distances) and then cropped to ``window``. All panels share one colour scale and one
    colour bar: linear from 0, or with ``log=True`` logarithmic from the smallest weight
    shown; both end at the largest weight shown. Returns the figure and the cropped maps,
    keyed by ``(w0, sigma)``.
    """
    maps: dict[tuple[float, float], np.ndarray] = {}
    for sigma in sigmas:
        for w0 in w0s:
            full = weight_map(labels, w0, sigma, class_weights)
            maps[w0, sigma] = full if window is None else full[window]
    top = max(float(m.max()) for m in maps.values())
    bottom = min(float(m.min()) for m in maps.values()) if log else 0.0
    if log and bottom <= 0:
        bottom = top * 1e-3
    fig, axes = plt.subplots(len(sigmas), len(w0s), squeeze=False,
                             figsize=(panel_size * len(w0s) + 0.8, panel_size * len(sigmas)))
    image = None
    for i, sigma in enumerate(sigmas):
        for j, w0 in enumerate(w0s):
            image = show(axes[i, j], maps[w0, sigma], cmap="magma", vmin=bottom, vmax=top,
                         log=log)
            if i == 0:
                axes[i, j].set_title(f"$w_0$ = {w0:g}", fontsize=10)
            if j == 0:
                axes[i, j].set_ylabel(f"$\\sigma$ = {sigma:g} px", fontsize=10)
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="w(x)")
    return fig, maps


def plot_weight_histogram(
    ax: Axes,
    weights: np.ndarray,
    background: np.ndarray,
    *,
    bins: int | np.ndarray = 60,
    names: tuple[str, str] = ("membrane", "cell interior"),
) -> dict[str, np.ndarray]:
    """Histogram (log counts) of ``weights`` on ``background`` pixels and on the others.

    Both histograms use the same bin edges. Returns ``{"edges", names[0], names[1]}`` with the
    counts, which add up to the numbers of pixels of each class.
    """
    weights = np.asarray(weights, dtype=np.float64)
    background = np.asarray(background, dtype=bool)
    edges = np.histogram_bin_edges(weights, bins=bins)
    out: dict[str, np.ndarray] = {"edges": edges}
    for name, pixels, colour in ((names[0], background, MEMBRANE_COLOUR),
                                 (names[1], ~background, INTERIOR_COLOUR)):
        counts, _ = np.histogram(weights[pixels], bins=edges)
        ax.stairs(counts, edges, label=name, color=colour, lw=1.4)
        out[name] = counts
    ax.set_yscale("log")
    ax.set_xlabel("w(x)")
    ax.set_ylabel("pixels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return out


__all__ = [
    "GapProfile",
    "Panel",
    "TwoCells",
    "WeightMass",
    "blurred_logits",
    "densest_window",
    "describe_machine",
    "draw_window",
    "gap_profile",
    "instance_colours",
    "neighbour_pairs",
    "near_two_cells",
    "per_pixel_loss",
    "plot_maps",
    "plot_parameter_grid",
    "plot_profile",
    "plot_profile_map",
    "plot_weight_histogram",
    "thin_gap_window",
    "thinnest_gap_point",
    "two_cells",
]
