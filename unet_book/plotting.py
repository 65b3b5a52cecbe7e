"""Figure helpers for the chapters (matplotlib; every function draws, none computes results).

* :func:`show`: an image or map without axes, with an optional colour bar.
* :func:`plot_tile_grid`: the overlap-tile strategy drawn over an image (paper Fig. 2): the
  mirrored extrapolation around the image, every tile's output window and the input windows
  of chosen tiles.
* :func:`plot_crop_and_copy`: real encoder feature maps with the centre window that
  crop-and-copy concatenates to the decoder (paper Fig. 1, grey arrows).
* :func:`plot_border_effect`: tile-versus-reference discrepancy against distance to the tile
  border (see :func:`unet_book.padding.border_effect`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from unet_book.padding import BorderEffect, SkipConnection, mirror_pad
from unet_core.model import UNet
from unet_core.tiling import TilePlan, plan_axis

TILE_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")


def _numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def show(
    ax: Axes,
    image,
    title: str | None = None,
    *,
    cmap: str | None = None,
    colorbar: bool = False,
    log: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    extent: Sequence[float] | None = None,
):
    """Show an ``(H, W)`` map or ``(H, W, 3)`` picture without ticks; return the image artist.

    ``log=True`` uses a logarithmic colour scale from ``vmin`` (default: max / 1e6) to
    ``vmax``; zeros are then drawn in the colour of ``vmin``.
    """
    a = _numpy(image)
    norm = None
    if log:
        top = float(a.max()) if vmax is None else vmax
        top = top if top > 0 else 1.0
        bottom = top * 1e-6 if vmin is None else vmin
        norm = LogNorm(vmin=bottom, vmax=top, clip=True)
        a = np.clip(a, bottom, None)
        vmin = vmax = None
    im = ax.imshow(a, cmap=cmap, norm=norm, vmin=vmin, vmax=vmax, extent=extent,
                   interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    return im


def plot_tile_grid(
    ax: Axes,
    image,
    model: UNet,
    tile_size: int,
    *,
    aligned: bool = True,
    overlap: int | None = None,
    highlight: Iterable[tuple[int, int]] = ((0, 0),),
    title: str | None = None,
    dim: float = 0.45,
) -> tuple[TilePlan, TilePlan]:
    """Draw the overlap-tile strategy of :func:`~unet_core.tiling.predict_tiled` over ``image``.

    ``image`` is an ``(H, W)`` or ``(H, W, 3)`` picture in display units. The plot shows the
    image extended by mirroring as far as any tile reaches (the mirrored part dimmed by a
    black veil of opacity ``dim``), the
    image outline (white), the output window of every tile (thin coloured squares, clipped to
    the image: the pixels it contributes) and, for the tiles whose ``(row, column)`` indices
    are in ``highlight``, the input window (dashed) that the network actually sees. The tile
    positions are those of :func:`~unet_core.tiling.plan_axis`. Returns the two plans.
    """
    pic = _numpy(image)
    h, w = pic.shape[:2]
    plan_y = plan_axis(model, h, tile_size, overlap, aligned)
    plan_x = plan_axis(model, w, tile_size, overlap, aligned)
    before = (max(0, -min(plan_y.starts)), max(0, -min(plan_x.starts)))
    after = (max(0, max(plan_y.starts) + tile_size - h), max(0, max(plan_x.starts) + tile_size - w))
    ext = mirror_pad(pic, before, after, axes=(0, 1))
    y0, x0 = -before[0] - 0.5, -before[1] - 0.5
    extent = (x0, x0 + ext.shape[1], y0 + ext.shape[0], y0)
    ax.imshow(ext, cmap="gray" if ext.ndim == 2 else None, extent=extent, interpolation="nearest")
    # Dim the mirrored extrapolation.
    big = Rectangle((x0, y0), ext.shape[1], ext.shape[0], facecolor="none")
    ax.add_patch(big)
    for rect in (
        (x0, y0, ext.shape[1], before[0]),  # top band
        (x0, h - 0.5, ext.shape[1], after[0]),  # bottom band
        (x0, -0.5, before[1], h),  # left band
        (w - 0.5, -0.5, after[1], h),  # right band
    ):
        ax.add_patch(Rectangle(rect[:2], rect[2], rect[3], facecolor="black", alpha=dim,
                               edgecolor="none"))
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, facecolor="none", edgecolor="white", lw=1.5))

    chosen = set(highlight)
    for i, ys in enumerate(plan_y.starts):
        for j, xs in enumerate(plan_x.starts):
            colour = TILE_COLOURS[(i * len(plan_x.starts) + j) % len(TILE_COLOURS)]
            oy, ox = ys + plan_y.crop, xs + plan_x.crop
            cy0, cy1 = max(oy, 0), min(oy + plan_y.out, h)
            cx0, cx1 = max(ox, 0), min(ox + plan_x.out, w)
            if cy0 < cy1 and cx0 < cx1:
                ax.add_patch(Rectangle((cx0 - 0.5, cy0 - 0.5), cx1 - cx0, cy1 - cy0,
                                       facecolor="none", edgecolor=colour, lw=1.0))
            if (i, j) in chosen:
                ax.add_patch(Rectangle((xs - 0.5, ys - 0.5), tile_size, tile_size,
                                       facecolor="none", edgecolor=colour, lw=2.0, ls="--"))
                ax.add_patch(Rectangle((cx0 - 0.5, cy0 - 0.5), cx1 - cx0, cy1 - cy0,
                                       facecolor=colour, alpha=0.25, edgecolor=colour, lw=2.0))
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return plan_y, plan_x


def pick_channel(maps: torch.Tensor, min_active: float = 0.2) -> int:
    """A channel of ``(C, H, W)`` feature maps that shows structure, for display.

    Channels with fewer than ``min_active`` of their pixels non-zero (mostly dead ReLUs) are
    skipped if possible; among the rest, the one with the largest mean absolute gradient
    relative to its spread is taken, leaving out the noisiest quarter (a checkerboard has the
    largest gradient of all).
    """
    maps = maps.detach().float()
    spread = maps.flatten(1).std(dim=1)
    active = (maps != 0).flatten(1).float().mean(dim=1)
    usable = (spread > 1e-6) & (active >= min_active)
    if not usable.any():
        usable = spread > 1e-6
    if not usable.any():
        return 0
    grad = maps.diff(dim=1).abs().mean(dim=(1, 2)) + maps.diff(dim=2).abs().mean(dim=(1, 2))
    score = grad / (spread + 1e-6)
    candidates = score[usable]
    cap = torch.quantile(candidates, 0.75) if candidates.numel() > 3 else candidates.max()
    keep = usable & (score <= cap)
    return int(torch.where(keep, score, torch.tensor(float("-inf"))).argmax())


def plot_crop_and_copy(skips: Sequence[SkipConnection], channel: int | None = None) -> Figure:
    """One column per level: encoder map with its copied centre window, and the decoder map.

    Top row: one channel of the contracting path's feature map at that level (before
    max-pooling) with the centre window that is cropped and copied (red). Bottom row: the same
    channel of the copied window, side by side with one channel of the up-convolved decoder
    map it is concatenated with; both have the same size by construction. Maps are
    drawn at their own resolution; titles give their shapes. ``channel=None`` picks, per level
    and per map, a channel that shows structure (:func:`pick_channel`).
    """
    n = len(skips)
    fig, axes = plt.subplots(2, n, figsize=(3.0 * n, 6.2), squeeze=False)
    for k, skip in enumerate(skips):
        c = pick_channel(skip.cropped) if channel is None else channel
        u = pick_channel(skip.upsampled) if channel is None else channel
        enc = _numpy(skip.encoder[c])
        _, hd, wd = skip.upsampled.shape
        ax = axes[0, k]
        show(ax, enc, cmap="viridis")
        ax.add_patch(Rectangle((skip.left - 0.5, skip.top - 0.5), wd, hd, facecolor="none",
                               edgecolor="red", lw=1.5))
        ax.set_title(
            f"level {skip.level}: encoder {enc.shape[0]}x{enc.shape[1]}\n"
            f"copied centre {hd}x{wd} (crop {skip.top} px)", fontsize=9,
        )
        pair = np.concatenate(
            [
                _normalise(_numpy(skip.cropped[c])),
                np.full((hd, max(2, wd // 20)), np.nan),
                _normalise(_numpy(skip.upsampled[u])),
            ],
            axis=1,
        )
        show(axes[1, k], pair, cmap="viridis")
        axes[1, k].set_title(f"copied | up-convolved\n{skip.encoder.shape[0]} + "
                             f"{skip.upsampled.shape[0]} channels, {hd}x{wd}", fontsize=9)
    fig.tight_layout()
    return fig


def _normalise(a: np.ndarray) -> np.ndarray:
    lo, hi = np.nanpercentile(a, 1), np.nanpercentile(a, 99)
    return np.clip((a - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def plot_border_effect(
    ax: Axes,
    curves: Mapping[str, BorderEffect],
    *,
    stat: str = "max",
    floor: float = 1e-9,
) -> None:
    """Relative discrepancy (``stat`` = "max" or "mean") against distance to the tile border.

    Values below ``floor`` (including exact zeros) are drawn at ``floor``, on a log scale.
    """
    if stat not in ("max", "mean"):
        raise ValueError(f"stat must be 'max' or 'mean', got {stat!r}")
    for label, effect in curves.items():
        values = effect.relative_max if stat == "max" else effect.relative_mean
        ax.semilogy(effect.distance, np.maximum(values, floor), label=label, lw=1.3)
    ax.axhline(floor, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("distance of the pixel to the tile border (px)")
    ax.set_ylabel(f"{stat} |tile - reference| / std(reference)")
    ax.set_ylim(floor / 3, None)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)


__all__ = ["pick_channel", "plot_border_effect", "plot_crop_and_copy", "plot_tile_grid", "show"]
