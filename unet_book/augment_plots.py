"""Figures for the elastic-deformation chapter, and the few measurements they draw.

The deformation itself lives in :mod:`unet_core.augment` (``out[y, x] = in[y + u_0(y, x),
x + u_1(y, x)]``, a backward map with displacement field ``u`` of shape ``(2, H, W)``); this
module only looks at it.

Measurements (NumPy, no drawing):

* :func:`jacobian_determinant`, :func:`max_displacement_gradient`: local area change and
  strain of a displacement field.
* :func:`deformation_statistics`: both, over many random draws of the paper's deformation
  for one patch size (:class:`DeformationStats`).
* :func:`mask_contrast`: how much darker (or brighter) an image is on a mask than around it;
  it collapses when a mask slides off the structure it labels, so it checks alignment.
* :func:`grid_pattern`: a regular grid of lines or a checkerboard to be warped.
* :func:`overlay_mask`: an image with a mask blended in, as an RGB array.

Figures (matplotlib; each returns what it drew, so that tests can check the data):

* :func:`plot_displacements`: the coarse vectors and the interpolated per-pixel field as
  arrows over an image.
* :func:`plot_field_magnitude`: ``|u|`` per pixel with the coarse grid points.
* :func:`plot_jacobian`: the Jacobian determinant per pixel, folds outlined.
* :func:`plot_augmented`: augmented samples with their masks, whole and zoomed.
* :func:`plot_det_histograms`, :func:`plot_strain_vs_size`: the statistics of
  :func:`deformation_statistics` across patch sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.quiver import Quiver

from unet_core.augment import coarse_displacements, displacement_field

DENSE_COLOUR = "#ffd54f"
COARSE_COLOUR = "#e53935"
SIZE_COLOURS = ("#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#e53935", "#00acc1", "#6d4c41")


# -- measurements --------------------------------------------------------------------------------
def _check_field(field: np.ndarray) -> np.ndarray:
    field = np.asarray(field, dtype=np.float64)
    if field.ndim != 3 or field.shape[0] != 2 or min(field.shape[1:]) < 2:
        raise ValueError(f"field must have shape (2, H, W) with H, W >= 2, got {field.shape}")
    return field


def displacement_gradient(field: np.ndarray) -> np.ndarray:
    """``(2, 2, H, W)`` array ``g[i, j] = d u_i / d x_j`` (central differences; 0 = row axis)."""
    field = _check_field(field)
    d_rows, d_cols = np.gradient(field, axis=(1, 2))
    return np.stack([d_rows, d_cols], axis=1)


def jacobian_determinant(field: np.ndarray) -> np.ndarray:
    """Per-pixel determinant of the sampling map ``p -> p + u(p)``, shape ``(H, W)``.

    1 means no area change; below 1 the output shows a smaller source area (the content is
    stretched), above 1 a larger one (compressed); at or below 0 the map folds: the output
    shows a mirrored copy of content it also shows elsewhere.
    """
    g = displacement_gradient(field)
    return (1.0 + g[0, 0]) * (1.0 + g[1, 1]) - g[0, 1] * g[1, 0]


def max_displacement_gradient(field: np.ndarray) -> float:
    """The largest ``|d u_i / d x_j|`` over all pixels and the four entries: the peak strain."""
    return float(np.abs(displacement_gradient(field)).max())


@dataclass(frozen=True, eq=False)
class DeformationStats:
    """Strain statistics of the paper's deformation on ``size x size`` patches.

    Attributes:
        size: patch side in pixels.
        sigma, grid: the deformation's parameters (:func:`unet_core.augment.elastic_deform`).
        crop_from: None if the field was drawn for the patch itself, else the side of the
            larger tile whose field was drawn and then cropped to its centre ``size x size``.
        max_gradient: ``(n_draws,)`` :func:`max_displacement_gradient` of every draw.
        min_det: ``(n_draws,)`` smallest Jacobian determinant of every draw.
        folded: ``(n_draws,)`` fraction of the patch's pixels with determinant <= 0.
        det_sample: Jacobian determinants of ``n_pixels`` random pixels (drawn with
            replacement) of every draw.
    """

    size: int
    sigma: float
    grid: int
    crop_from: int | None
    max_gradient: np.ndarray
    min_det: np.ndarray
    folded: np.ndarray
    det_sample: np.ndarray

    @property
    def n_draws(self) -> int:
        return len(self.max_gradient)

    @property
    def fold_probability(self) -> float:
        """Fraction of draws that fold somewhere in the patch."""
        return float(np.mean(self.folded > 0))

    @property
    def label(self) -> str:
        where = f", centre of {self.crop_from}" if self.crop_from else ""
        return f"{self.size} px{where}, sigma {self.sigma:.3g}"


def deformation_statistics(
    size: int,
    *,
    sigma: float = 10.0,
    grid: int = 3,
    n_draws: int = 100,
    rng: np.random.Generator | int | None = None,
    crop_from: int | None = None,
    n_pixels: int = 2000,
) -> DeformationStats:
    """Draw ``n_draws`` deformations of a ``size x size`` patch and measure their strain.

    With ``crop_from=N`` each field is drawn for an ``N x N`` tile (grid on the tile) and its
    centre ``size x size`` window is measured: the deformation a patch gets when a larger tile
    is deformed first and the patch cropped afterwards.

    The coarse vectors depend only on ``rng`` (the pixels sampled for ``det_sample`` come from
    a generator seeded from it), so one seed gives the same draws at every ``size``.
    """
    if crop_from is not None and crop_from < size:
        raise ValueError(f"crop_from must be >= size = {size}, got {crop_from}")
    rng = np.random.default_rng(rng)
    pick = np.random.default_rng(rng.integers(2**63))  # for det_sample; keeps rng size-free
    side = size if crop_from is None else crop_from
    top = (side - size) // 2
    window = (slice(None), slice(top, top + size), slice(top, top + size))
    n_pixels = min(n_pixels, size * size)
    max_gradient, min_det, folded, sample = [], [], [], []
    for _ in range(n_draws):
        field = displacement_field(coarse_displacements(grid, sigma, rng), (side, side))[window]
        det = jacobian_determinant(field)
        max_gradient.append(max_displacement_gradient(field))
        min_det.append(det.min())
        folded.append(np.mean(det <= 0))
        sample.append(det.ravel()[pick.integers(0, det.size, n_pixels)])
    return DeformationStats(size, float(sigma), grid, crop_from, np.array(max_gradient),
                            np.array(min_det), np.array(folded), np.concatenate(sample))


def mask_contrast(image: np.ndarray, mask: np.ndarray, region: np.ndarray | None = None) -> float:
    """``(mean off the mask - mean on the mask) / std``, over ``region`` (default: everywhere).

    Positive when the masked structure is darker than its surroundings (vessels in the green
    channel of a fundus photograph, membranes in EM). A mask shifted by a few pixels against
    its image loses most of this contrast for thin structures.
    """
    image = np.asarray(image, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if image.shape != mask.shape:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must have the same shape")
    region = np.ones_like(mask) if region is None else np.asarray(region, dtype=bool)
    on, off = image[mask & region], image[~mask & region]
    if on.size == 0 or off.size == 0:
        raise ValueError("the mask must cover some but not all pixels of the region")
    spread = image[region].std()
    return float((off.mean() - on.mean()) / (spread if spread > 0 else 1.0))


def grid_pattern(shape: Sequence[int], spacing: int = 32, kind: str = "lines",
                 width: int = 2) -> np.ndarray:
    """A ``(H, W)`` float pattern in {0, 1} to be warped: grid lines or a checkerboard.

    ``"lines"``: 1 on rows and columns ``0, spacing, 2 * spacing, ...`` (each ``width`` pixels
    thick), 0 elsewhere. ``"checkerboard"``: squares of side ``spacing``, 1 where
    ``(row // spacing + col // spacing)`` is even.
    """
    height, width_px = int(shape[0]), int(shape[1])
    if spacing < 1 or width < 1:
        raise ValueError(f"spacing and width must be >= 1, got {spacing}, {width}")
    rows = np.arange(height)[:, None]
    cols = np.arange(width_px)[None, :]
    if kind == "lines":
        return ((rows % spacing < width) | (cols % spacing < width)).astype(np.float64)
    if kind == "checkerboard":
        return ((rows // spacing + cols // spacing) % 2 == 0).astype(np.float64)
    raise ValueError(f"kind must be 'lines' or 'checkerboard', got {kind!r}")


def _unit_rgb(image: np.ndarray) -> np.ndarray:
    """An ``(H, W)`` or ``(H, W, 3)`` image as ``(H, W, 3)`` floats in [0, 1]."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        a = a / 255.0
    elif a.dtype == np.uint16:
        a = a / 65535.0
    else:
        a = a.astype(np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got {np.shape(image)}")
    return a


def overlay_mask(image: np.ndarray, mask: np.ndarray, colour: Sequence[float] = (0.0, 0.9, 1.0),
                 alpha: float = 0.55) -> np.ndarray:
    """``(H, W, 3)`` float RGB in [0, 1]: ``image`` with ``colour`` blended in on ``mask``.

    uint8/uint16 images are divided by their range, float images stretched to [0, 1]; grey
    images become grey RGB. Off the mask the pixels are the image's; on it
    ``(1 - alpha) * image + alpha * colour``.
    """
    rgb = _unit_rgb(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {rgb.shape[:2]}")
    out = rgb.copy()
    out[mask] = (1.0 - alpha) * rgb[mask] + alpha * np.asarray(colour, dtype=np.float64)
    return out


# -- figures -------------------------------------------------------------------------------------
def _bare(ax: Axes, title: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def grid_points(n: int, grid: int) -> np.ndarray:
    """Pixel positions of the ``grid`` coarse points along an axis of ``n`` pixels."""
    return np.arange(grid) * (n - 1) / (grid - 1)


class FieldArrows(NamedTuple):
    """The two arrow sets drawn by :func:`plot_displacements`."""

    dense: Quiver
    coarse: Quiver


def plot_displacements(
    ax: Axes,
    image: np.ndarray,
    coarse: np.ndarray,
    field: np.ndarray,
    *,
    step: int = 32,
    exaggerate: float = 1.0,
    title: str | None = None,
) -> FieldArrows:
    """Arrows of the displacement field over ``image`` (shown in grey if it is ``(H, W)``).

    Thin yellow arrows: the per-pixel ``field`` every ``step`` pixels, starting ``step // 2``
    in. Thick red arrows: the ``coarse`` vectors at their grid points (corners, edge
    mid-points, centre for 3x3). Each arrow goes from an output pixel towards the source pixel
    it samples, drawn ``exaggerate`` times its length in pixels.
    """
    field = _check_field(field)
    coarse = np.asarray(coarse, dtype=np.float64)
    height, width = field.shape[1:]
    ax.imshow(image, cmap="gray" if np.ndim(image) == 2 else None, interpolation="nearest")
    rows = np.arange(step // 2, height, step)
    cols = np.arange(step // 2, width, step)
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    style = {"angles": "xy", "scale_units": "xy", "scale": 1.0 / exaggerate}
    dense = ax.quiver(xx, yy, field[1][yy, xx], field[0][yy, xx], color=DENSE_COLOUR,
                      width=0.004, headwidth=3.5, **style)
    gy = grid_points(height, coarse.shape[1])
    gx = grid_points(width, coarse.shape[2])
    cy, cx = np.meshgrid(gy, gx, indexing="ij")
    coarse_arrows = ax.quiver(cx, cy, coarse[1], coarse[0], color=COARSE_COLOUR, width=0.012,
                              headwidth=3.0, zorder=3, **style)
    ax.plot(cx.ravel(), cy.ravel(), "o", ms=4, color=COARSE_COLOUR, zorder=4)
    longest = exaggerate * float(np.abs(coarse).max()) if coarse.size else 0.0
    pad = max(0.03 * max(height, width), 1.1 * longest)  # room for the arrows at the border
    ax.set_xlim(-pad, width - 1 + pad)
    ax.set_ylim(height - 1 + pad, -pad)
    _bare(ax, title)
    return FieldArrows(dense, coarse_arrows)


def plot_field_magnitude(
    ax: Axes, field: np.ndarray, *, grid: int = 3, title: str | None = None,
    colorbar: bool = True,
) -> AxesImage:
    """``|u|`` per pixel in pixels, with the ``grid x grid`` coarse points marked."""
    field = _check_field(field)
    magnitude = np.hypot(field[0], field[1])
    im = ax.imshow(magnitude, cmap="magma", vmin=0, interpolation="nearest")
    height, width = magnitude.shape
    cy, cx = np.meshgrid(grid_points(height, grid), grid_points(width, grid), indexing="ij")
    ax.plot(cx.ravel(), cy.ravel(), "o", ms=4, mfc="none", mec="white")
    _bare(ax, title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="|displacement| (px)")
    return im


def plot_jacobian(
    ax: Axes, det: np.ndarray, *, spread: float = 1.0, title: str | None = None,
    colorbar: bool = True,
) -> AxesImage:
    """The Jacobian determinant per pixel, white at 1, with folds (det <= 0) outlined in black.

    Colours run from ``1 - spread`` (red, stretched content) to ``1 + spread`` (blue,
    compressed); values beyond are clipped in colour only.
    """
    det = np.asarray(det, dtype=np.float64)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=1.0 - spread, vmax=1.0 + spread)
    im = ax.imshow(det, cmap="RdBu", norm=norm, interpolation="nearest")
    if det.min() <= 0 < det.max():
        ax.contour(det, levels=[0.0], colors="black", linewidths=1.2)
    _bare(ax, title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="det J")
    return im


def plot_augmented(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    zoom: tuple[slice, slice] | None = None,
    colour: Sequence[float] = (0.0, 0.9, 1.0),
    alpha: float = 0.55,
    panel: float = 2.6,
    linewidth: float = 1.0,
) -> Figure:
    """One column per sample: the image with its mask blended in and, below, a zoomed window.

    The top row shows :func:`overlay_mask` of every ``(image, mask)`` pair with the ``zoom``
    window (rows, columns; the same output pixels in every column) outlined; the bottom row
    shows that window of the image with the mask's outline (``linewidth`` points) drawn over
    it. Without ``zoom`` only the top row is drawn.
    """
    if not len(images) == len(masks) == len(titles):
        raise ValueError("images, masks and titles must have the same length")
    n = len(images)
    n_rows = 1 if zoom is None else 2
    fig, axes = plt.subplots(n_rows, n, figsize=(panel * n, panel * n_rows + 0.3),
                             squeeze=False)
    for k, (image, mask, title) in enumerate(zip(images, masks, titles, strict=True)):
        axes[0, k].imshow(overlay_mask(image, mask, colour, alpha), interpolation="nearest")
        _bare(axes[0, k], title)
        if zoom is None:
            continue
        rs, cs = zoom
        axes[0, k].add_patch(Rectangle((cs.start - 0.5, rs.start - 0.5), cs.stop - cs.start,
                                       rs.stop - rs.start, facecolor="none", edgecolor="white",
                                       lw=1.2))
        bottom = axes[1, k]
        bottom.imshow(_unit_rgb(image)[rs, cs], interpolation="nearest")
        window = np.asarray(mask, dtype=float)[rs, cs]
        if 0 < window.mean() < 1:
            bottom.contour(window, levels=[0.5], colors=[tuple(colour)],
                           linewidths=linewidth)
        _bare(bottom, None)
    fig.tight_layout()
    return fig


def plot_det_histograms(
    ax: Axes, stats: Sequence[DeformationStats], *, bins: np.ndarray | None = None
) -> list:
    """Step histograms (densities, log scale) of the sampled Jacobian determinants.

    One histogram per entry of ``stats``; values outside ``bins`` are counted in the first or
    last bin. Returns the drawn step patches, in order.
    """
    bins = np.linspace(-0.5, 3.0, 141) if bins is None else bins
    drawn = []
    for k, s in enumerate(stats):
        _, _, patches = ax.hist(np.clip(s.det_sample, bins[0], bins[-1]), bins=bins,
                                density=True, histtype="step", lw=1.4,
                                color=SIZE_COLOURS[k % len(SIZE_COLOURS)], label=s.label)
        drawn.append(patches[0])
    ax.set_yscale("log")
    ax.axvline(0.0, color="black", lw=0.8, ls=":")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("Jacobian determinant (1 = no area change, <= 0 = fold)")
    ax.set_ylabel("density over pixels and draws")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 30)  # headroom for the legend above the peaks
    ax.legend(fontsize=8, loc="upper right")
    return drawn


def plot_strain_vs_size(
    ax: Axes, stats: Sequence[DeformationStats], *, reference: int = 572
) -> tuple:
    """Median peak strain against patch side, with the ``1 / (n - 1)`` law through
    ``reference``, and on a second axis the fraction of draws that fold.

    Returns ``(strain_line, law_line, fold_line)``.
    """
    sizes = np.array([s.size for s in stats], dtype=float)
    medians = np.array([np.median(s.max_gradient) for s in stats])
    ref = medians[list(sizes).index(reference)]
    (strain_line,) = ax.plot(sizes, medians, "o-", color=SIZE_COLOURS[0],
                             label="median peak strain (measured)")
    n = np.linspace(sizes.min(), sizes.max(), 200)
    (law_line,) = ax.plot(n, ref * (reference - 1) / (n - 1), "--", color="grey",
                          label=f"strain({reference}) x {reference - 1} / (n - 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{int(s)}" for s in sizes])
    low, high = ax.get_ylim()
    ticks = [t for t in (0.05, 0.1, 0.2, 0.5, 1, 2, 5) if low <= t <= high]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("patch side n (px)")
    ax.set_ylabel("max |du_i/dx_j| per draw (median)")
    twin = ax.twinx()
    (fold_line,) = twin.plot(sizes, [s.fold_probability for s in stats], "s:",
                             color=COARSE_COLOUR, label="draws that fold (right axis)")
    twin.set_ylim(0, 1)
    twin.set_ylabel("fraction of draws with det J <= 0", color=COARSE_COLOUR)
    handles = [strain_line, law_line, fold_line]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, which="both")
    return strain_line, law_line, fold_line


__all__ = [
    "DeformationStats",
    "FieldArrows",
    "deformation_statistics",
    "displacement_gradient",
    "grid_pattern",
    "grid_points",
    "jacobian_determinant",
    "mask_contrast",
    "max_displacement_gradient",
    "overlay_mask",
    "plot_augmented",
    "plot_det_histograms",
    "plot_displacements",
    "plot_field_magnitude",
    "plot_jacobian",
    "plot_strain_vs_size",
]
