"""The U of the paper's Fig. 1 drawn from a shape trace, and the measured receptive windows.

Chapter 1 (``notebooks/01_architecture.py``) draws its figures with this module:

* :func:`unet_layout` lays out the U of Fig. 1 from a trace
  (:func:`unet_book.architecture.trace.trace_shapes`), without drawing: one box per feature map
  (:class:`LayoutBox`), its height growing with the map's side and its width with its channels,
  and the paper's arrows (:class:`LayoutArrow`), all in one :class:`UNetLayout`.
* :func:`draw_unet` paints that layout with matplotlib.
* :func:`draw_receptive_windows` draws the windows of
  :func:`unet_book.architecture.trace.receptive_windows` on the pooling grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle

from unet_book.architecture.trace import (
    OP_CONCAT,
    OP_CONV1,
    OP_CONV3,
    OP_CONV3_BN,
    OP_CROP,
    OP_INPUT,
    OP_POOL,
    OP_UPCONV,
    TraceRow,
)

COLORS: dict[str, str] = {
    OP_CONV3: "#1f4e8c",
    OP_POOL: "#c62828",
    OP_UPCONV: "#2e7d32",
    OP_CROP: "#8a8a8a",
    OP_CONV1: "#00897b",
}
BOX_COLOR = "#9cc3e6"
BOX_EDGE = "#2b4c6f"

Scale = Literal["linear", "sqrt", "log"]


def _scaler(kind: Scale) -> Callable[[float], float]:
    if kind == "linear":
        return float
    if kind == "sqrt":
        return math.sqrt
    if kind == "log":
        return lambda v: math.log2(v) + 1.0
    raise ValueError(f"scale={kind!r} is not valid; expected linear, sqrt or log")


Point = tuple[float, float]


@dataclass(frozen=True)
class LayoutBox:
    """One feature map of the U of Fig. 1, placed in data units by :func:`unet_layout`.

    Attributes:
        x: left edge.
        y: bottom edge (the U hangs below ``y = 0``; deeper levels lie lower).
        width: grows with the map's channels.
        height: grows with the map's side.
        label: the channel count written above the box (``"64"``; ``"512+512"``, copied plus
            up-convolved channels, over the copied half of a concatenated map; empty over its
            up-convolved half).
        kind: the operation that made the map: ``OP_INPUT``, ``OP_CONV3``, ``OP_CONV3_BN``,
            ``OP_POOL`` or ``OP_CONV1``; the two halves of a concatenated map are ``OP_CROP``
            (the cropped copy, drawn white) and ``OP_UPCONV`` (the up-convolution's output).
        path: ``"input"``, ``"contracting"``, ``"bottom"``, ``"expanding"`` or ``"output"``.
        level: resolution level (0 at the top of the U).
        channels: channels of the map (of its half, for a concatenated map).
        size: ``(H, W)`` of the map.
        label_width: the width over which ``label`` is centred (a pair's label spans both).
        show_size: whether ``H x W`` is written at the box (not on a pair's up-convolved half).
    """

    x: float
    y: float
    width: float
    height: float
    label: str
    kind: str
    path: str
    level: int
    channels: int
    size: tuple[int, int]
    label_width: float
    show_size: bool = True

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def top(self) -> float:
        return self.y + self.height

    @property
    def cx(self) -> float:
        return self.x + self.width / 2


@dataclass(frozen=True)
class LayoutArrow:
    """One arrow of Fig. 1, from ``start`` to ``end`` in data units.

    ``kind`` is ``OP_CONV3`` (also for a convolution with BatchNorm), ``OP_CONV1``, ``OP_POOL``,
    ``OP_UPCONV`` or ``OP_CROP``; ``source`` and ``target`` index the boxes it leaves and
    reaches (a concatenated map is represented by its copied half).
    """

    start: Point
    end: Point
    kind: str
    source: int
    target: int


@dataclass(frozen=True)
class CropLabel:
    """Label of a copy-and-crop arrow ``length`` long, centred at ``(x, y)``.

    ``text`` (``"copy & crop 568→392"``) is written where it fits, else ``short_text``
    (``"568→392"``); with same padding both are ``"copy"``.
    """

    x: float
    y: float
    length: float
    text: str
    short_text: str


@dataclass(frozen=True)
class UNetLayout:
    """The U of the paper's Fig. 1 as geometry, without any drawing (see :func:`unet_layout`).

    ``xlim`` and ``ylim`` are the data limits that hold every box with a small margin.
    """

    boxes: tuple[LayoutBox, ...]
    arrows: tuple[LayoutArrow, ...]
    crop_labels: tuple[CropLabel, ...]
    xlim: tuple[float, float]
    ylim: tuple[float, float]


def _level_centres(
    rows: Sequence[TraceRow], fh: Callable[[float], float], vgap: float
) -> dict[int, float]:
    """Vertical centre of every level: levels stacked downwards, as tall as their tallest map."""
    levels = sorted({r.level for r in rows})
    level_h = {lv: max(fh(r.size[0]) for r in rows if r.level == lv) for lv in levels}
    centre: dict[int, float] = {}
    y = 0.0
    for lv in levels:
        centre[lv] = y - level_h[lv] / 2
        y -= level_h[lv] + vgap
    return centre


class _LayoutBuilder:
    """The steps of :func:`unet_layout`: boxes and arrows added operation by operation."""

    def __init__(
        self, rows: Sequence[TraceRow], fw: Callable[[float], float],
        fh: Callable[[float], float],
    ) -> None:
        self.fw, self.fh = fw, fh
        chans = [r.channels for r in rows if r.op != OP_CONCAT]
        self.h_max = max(fh(r.size[0]) for r in rows)
        # Width units: the widest box (most channels) is 12% of the height of the tallest one.
        self.unit = 0.12 * self.h_max / fw(max(chans))
        self.min_w = 0.01 * self.h_max
        self.gap = 0.16 * self.h_max  # horizontal gap between boxes, where the conv arrows go
        self.centre = _level_centres(rows, fh, vgap=0.16 * self.h_max)
        self.boxes: list[LayoutBox] = []
        self.arrows: list[LayoutArrow] = []
        self.labels: list[CropLabel] = []
        self.last_contracting: dict[int, int] = {}  # level -> index of its last box
        self.pending_up: TraceRow | None = None
        self.pending_crop: TraceRow | None = None
        self.prev = self.new_box(rows[0], 0.0, OP_INPUT)  # the map the next arrow leaves
        self.prev_index = 0

    def width(self, channels: int) -> float:
        return max(self.fw(channels) * self.unit, self.min_w)

    def new_box(
        self, r: TraceRow, x: float, kind: str, channels: int | None = None,
        label: str | None = None, label_width: float | None = None, show_size: bool = True,
    ) -> LayoutBox:
        """Append the box of the map of ``r`` (or of one half of it) with left edge ``x``."""
        c = r.channels if channels is None else channels
        hh, w = self.fh(r.size[0]), self.width(c)
        box = LayoutBox(x, self.centre[r.level] - hh / 2, w, hh, f"{c}" if label is None else label,
                        kind, r.path, r.level, c, r.size,
                        w if label_width is None else label_width, show_size)
        self.boxes.append(box)
        return box

    def add(self, r: TraceRow) -> None:
        """Lay out one operation of the trace."""
        if r.op in (OP_CONV3, OP_CONV3_BN, OP_CONV1):
            self.conv(r)
        elif r.op == OP_POOL:
            self.pool(r)
        elif r.op == OP_UPCONV:
            self.pending_up = r
        elif r.op == OP_CROP:
            self.pending_crop = r
        elif r.op == OP_CONCAT:
            self.concat(r)
        # drop-out changes no shape and is not drawn

    def conv(self, r: TraceRow) -> None:
        """A convolution: a box to the right of the previous one, a horizontal arrow."""
        box = self.new_box(r, self.prev.right + self.gap, r.op)
        ymid = self.centre[r.level]
        kind = OP_CONV1 if r.op == OP_CONV1 else OP_CONV3
        index = len(self.boxes) - 1
        self.arrows.append(LayoutArrow((self.prev.right, ymid), (box.x, ymid), kind,
                                       self.prev_index, index))
        if r.path in ("contracting", "bottom"):
            self.last_contracting[r.level] = index
        self.prev, self.prev_index = box, index

    def pool(self, r: TraceRow) -> None:
        """A max-pool: a box one level down, below the previous one, a downward arrow."""
        box = self.new_box(r, self.prev.x, OP_POOL)
        xm = min(self.prev.cx, box.cx)
        index = len(self.boxes) - 1
        self.arrows.append(LayoutArrow((xm, self.prev.y), (xm, box.top), OP_POOL,
                                       self.prev_index, index))
        self.prev, self.prev_index = box, index

    def concat(self, r: TraceRow) -> None:
        """Up-conv, crop and concatenation: the cropped copy (white) next to the up-conv output."""
        up_row, crop_row, prev = self.pending_up, self.pending_crop, self.prev
        if up_row is None or crop_row is None:
            raise ValueError("a concatenation must follow an up-conv and a crop")
        # One label over the pair, e.g. "512+512" (copied + up-convolved channels).
        pair_label = f"{crop_row.channels}+{up_row.channels}"
        pair_width = self.width(crop_row.channels) + self.width(up_row.channels)
        copy = self.new_box(r, prev.x, OP_CROP, crop_row.channels, pair_label, pair_width)
        copy_index = len(self.boxes) - 1
        up = self.new_box(r, copy.right, OP_UPCONV, up_row.channels, "", show_size=False)
        xm = up.cx if prev.x <= up.cx <= prev.right else prev.cx
        self.arrows.append(LayoutArrow((xm, prev.top), (xm, up.y), OP_UPCONV, self.prev_index,
                                       copy_index))
        self.copy_and_crop(r, crop_row, copy_index)
        # The pair is one map for the convolution that follows it.
        self.prev = replace(copy, width=copy.width + up.width, channels=r.channels)
        self.prev_index = copy_index
        self.pending_up = self.pending_crop = None

    def copy_and_crop(self, r: TraceRow, crop_row: TraceRow, copy_index: int) -> None:
        """The grey arrow from the contracting map of the level to its copy, and its label."""
        src_index = self.last_contracting.get(r.level)
        if src_index is None:
            return
        src, copy = self.boxes[src_index], self.boxes[copy_index]
        ymid = self.centre[r.level]
        self.arrows.append(LayoutArrow((src.right, ymid), (copy.x, ymid), OP_CROP, src_index,
                                       copy_index))
        if crop_row.in_shape is None:
            return
        _, sh, sw = crop_row.in_shape
        th, tw = r.size
        text = f"{sh}→{th}" if (sh, th) == (sw, tw) else f"{sh}x{sw}→{th}x{tw}"
        long_text = f"copy & crop {text}"
        if (sh, sw) == (th, tw):  # same padding: nothing to crop
            text = long_text = "copy"
        self.labels.append(CropLabel((src.right + copy.x) / 2, ymid, copy.x - src.right,
                                     long_text, text))

    def finish(self) -> UNetLayout:
        """The layout, with data limits around all boxes."""
        margin = 0.06 * self.h_max
        x0 = min(b.x for b in self.boxes) - margin
        x1 = max(b.right for b in self.boxes) + 0.04 * self.h_max
        y0 = min(b.y for b in self.boxes) - margin
        return UNetLayout(tuple(self.boxes), tuple(self.arrows), tuple(self.labels), (x0, x1),
                          (y0, margin))


def unet_layout(
    rows: Sequence[TraceRow], *, channel_scale: Scale = "sqrt", size_scale: Scale = "linear"
) -> UNetLayout:
    """Place the boxes and arrows of the paper's Fig. 1 for a shape trace (:func:`trace_shapes`).

    Pure geometry, no drawing: one box per feature map (the two halves of a concatenated map,
    the cropped copy and the up-convolution's output, are two boxes side by side), its height
    growing with the map's side (``size_scale``) and its width with its channels
    (``channel_scale``); levels of the U are stacked downwards, the contracting path runs down
    on the left and the expanding path up on the right, each level of the expanding path at the
    height of the same level of the contracting path. Arrows follow the legend of Fig. 1: conv
    3x3 (horizontal), max pool (down), up-conv (up), copy and crop (across the U), conv 1x1.
    :func:`draw_unet` paints the layout.

    Raises:
        ValueError: if ``rows`` is not a trace starting with the input, or a scale is unknown.
    """
    if not rows or rows[0].op != OP_INPUT:
        raise ValueError("rows must be a trace from trace_shapes(), starting with the input")
    builder = _LayoutBuilder(rows, _scaler(channel_scale), _scaler(size_scale))
    for r in rows[1:]:
        builder.add(r)
    return builder.finish()


def _text_len(text: str, size: float) -> float:
    """Approximate advance of ``text`` in a ``size``-point font, in points."""
    return 0.64 * size * len(text)


def _set_limits(ax: Axes, fig: Figure, layout: UNetLayout) -> tuple[float, float]:
    """Set the layout's data limits on ``ax``; return the data units per point along x and y.

    The limits come first: text is sized in points, and the conversion from points to data
    units depends on the limits and on the size of the axes.
    """
    (x0, x1), (y0, y1) = layout.xlim, layout.ylim
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    pos = ax.get_position()
    fig_w, fig_h = fig.get_size_inches()
    per_pt_x = (x1 - x0) / max(pos.width * fig_w * 72, 1.0)
    per_pt_y = (y1 - y0) / max(pos.height * fig_h * 72, 1.0)
    return per_pt_x, per_pt_y


def _size_label_rooms(layout: UNetLayout) -> dict[int, float]:
    """Room for a label centred under a box: the distance to the next label centre on its level.

    Keyed by box index, for the boxes whose side is written.
    """
    rooms: dict[int, float] = {}
    for lv in sorted({b.level for b in layout.boxes}):
        centres = sorted((b.x + b.label_width / 2, i) for i, b in enumerate(layout.boxes)
                         if b.level == lv and b.show_size)
        for k, (cx, i) in enumerate(centres):
            gaps = [abs(centres[j][0] - cx) for j in (k - 1, k + 1) if 0 <= j < len(centres)]
            rooms[i] = min(gaps, default=layout.xlim[1] - layout.xlim[0])
    return rooms


def _paint_size_label(
    ax: Axes, b: LayoutBox, room: float, fontsize: float, per_pt: tuple[float, float]
) -> float | None:
    """Write ``H x W`` of a box; return the height it takes underneath (``None``: at the side).

    Upwards at the lower left, as in Fig. 1, if it ends below the arrow at mid-height; else
    centred underneath, shrunk to the ``room`` between neighbouring labels.
    """
    per_pt_x, per_pt_y = per_pt
    text = "{}x{}".format(*b.size)
    if (_text_len(text, fontsize) + 4) * per_pt_y < b.height / 2:
        ax.text(b.x - 0.2 * fontsize * per_pt_x, b.y, text, rotation=90, ha="right",
                va="bottom", fontsize=fontsize)
        return None
    points = room / per_pt_x - 4  # keeping 4 pt between labels
    size = min(fontsize, points / _text_len(text, 1.0))
    ax.text(b.x + b.label_width / 2, b.y - 0.15 * size * per_pt_y, text, ha="center",
            va="top", fontsize=size)
    return 1.3 * size * per_pt_y


def _paint_boxes(
    ax: Axes, layout: UNetLayout, fontsize: float, per_pt: tuple[float, float]
) -> dict[int, float]:
    """Paint the boxes and their labels; return the room taken under each box, by index."""
    rooms = _size_label_rooms(layout)
    room_below: dict[int, float] = {}
    for i, b in enumerate(layout.boxes):
        face = "white" if b.kind == OP_CROP else BOX_COLOR
        ax.add_patch(Rectangle((b.x, b.y), b.width, b.height, facecolor=face, edgecolor=BOX_EDGE,
                               linewidth=0.8))
        if b.label:
            ax.text(b.x + b.label_width / 2, b.top + 0.2 * fontsize * per_pt[1], b.label,
                    ha="center", va="bottom", fontsize=fontsize)
        if b.show_size:
            below = _paint_size_label(ax, b, rooms[i], fontsize - 1.0, per_pt)
            if below is not None:
                room_below[i] = below
    return room_below


def _paint_arrows(
    ax: Axes, layout: UNetLayout, room_above: float, room_below: Mapping[int, float]
) -> None:
    """Paint the arrows; vertical ones run between the labels of the boxes they join."""
    for a in layout.arrows:
        start, end = a.start, a.end
        # From under a size label to above a channel label (pool), and the other way round
        # (up-conv).
        if a.kind == OP_POOL:
            start = (start[0], start[1] - room_below.get(a.source, 0.0))
            end = (end[0], end[1] + room_above)
        elif a.kind == OP_UPCONV:
            start = (start[0], start[1] + room_above)
            end = (end[0], end[1] - room_below.get(a.target, 0.0))
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9,
                                     color=COLORS[a.kind], linewidth=1.4, shrinkA=1, shrinkB=1))


def _paint_crop_labels(
    ax: Axes, layout: UNetLayout, fontsize: float, per_pt: tuple[float, float]
) -> None:
    """Label every copy-and-crop arrow with the longest of its texts that fits."""
    for label in layout.crop_labels:
        for text in (label.text, label.short_text):
            if _text_len(text, fontsize) * per_pt[0] < 0.9 * label.length:
                ax.text(label.x, label.y + 0.3 * fontsize * per_pt[1], text, ha="center",
                        va="bottom", fontsize=fontsize, color="#555555")
                break


def _paint_legend(ax: Axes, fontsize: float) -> None:
    handles = [Line2D([], [], color=COLORS[k], linewidth=2, marker=">", markersize=5,
                      label=k) for k in (OP_CONV3, OP_CROP, OP_POOL, OP_UPCONV, OP_CONV1)]
    ax.legend(handles=handles, loc="lower right", fontsize=fontsize + 1, frameon=False)


def draw_unet(
    rows: Sequence[TraceRow],
    *,
    ax: Axes | None = None,
    channel_scale: Scale = "sqrt",
    size_scale: Scale = "linear",
    annotate_crops: bool = True,
    legend: bool = True,
    fontsize: float = 7.5,
) -> Figure:
    """Draw the U of the paper's Fig. 1 from a shape trace (:func:`trace_shapes`).

    Every feature map is a box with its channel count above it and its height x width at its
    lower left. Box heights grow with the map's side (``size_scale``) and widths with its channels
    (``channel_scale``; ``"sqrt"`` keeps the 64-channel maps visible next to the 1024-channel
    ones, ``"linear"`` is strictly proportional). The concatenated maps of the expanding path
    are drawn as the paper does: the cropped copy (white) next to the up-convolution's output.
    Arrows: conv 3x3 + ReLU (blue), max pool (red), up-conv (green), copy and crop (grey),
    conv 1x1 (teal); with ``annotate_crops``, each grey arrow is labelled with its crop.
    The geometry is :func:`unet_layout`'s; this function paints it.

    Args:
        rows: a trace of a UNet, as returned by :func:`trace_shapes`.
        ax: axes to draw into; a new 12 x 7 inch figure is made when omitted.
        channel_scale: ``"linear"``, ``"sqrt"`` or ``"log"`` mapping of channels to width.
        size_scale: the same for the map's side to height.
        annotate_crops: label every copy-and-crop arrow with its sizes (where it fits).
        legend: draw the legend of the arrows.
        fontsize: size of the labels in points. Labels are placed for the size of ``ax`` at
            the time of the call: a side that does not fit upright at the left of its box is
            written underneath, in a smaller font if the neighbouring boxes are close.

    Returns:
        The figure that holds the drawing.
    """
    layout = unet_layout(rows, channel_scale=channel_scale, size_scale=size_scale)
    if ax is None:
        fig = Figure(figsize=(12, 7))
        ax = fig.add_subplot()
    fig = ax.figure
    assert isinstance(fig, Figure)
    per_pt = _set_limits(ax, fig, layout)
    room_below = _paint_boxes(ax, layout, fontsize, per_pt)
    _paint_arrows(ax, layout, 1.35 * fontsize * per_pt[1], room_below)  # room for a channel label
    if annotate_crops:
        _paint_crop_labels(ax, layout, fontsize, per_pt)
    if legend:
        _paint_legend(ax, fontsize)
    return fig


def draw_receptive_windows(
    windows: Sequence[tuple[int, int]],
    margin: int,
    *,
    periods: int = 2,
    ax: Axes | None = None,
) -> Figure:
    """Draw the receptive windows of consecutive output pixels in input coordinates.

    One horizontal bar per output pixel ``p = 0 .. periods * len(windows) - 1``: the input
    columns that can influence it (from :func:`receptive_windows`, which repeats with period
    ``len(windows) = 2**depth``), with a dot at the pixel's own position ``p + margin`` and
    dotted lines on the pooling grid (multiples of ``2**depth``). Bars are coloured by width.

    Args:
        windows: ``(first, last)`` offsets per phase, as returned by :func:`receptive_windows`.
        margin: the model's ``margin`` (output pixel ``p`` sits at input pixel ``p + margin``).
        periods: how many periods of output pixels to draw.
        ax: axes to draw into; a new 9 x 4.5 inch figure is made when omitted.

    Returns:
        The figure that holds the drawing.
    """
    period = len(windows)
    if period == 0 or period & (period - 1):
        raise ValueError(f"expected 2**depth windows, got {period}")
    if ax is None:
        fig = Figure(figsize=(9, 4.5))
        ax = fig.add_subplot()
    fig = ax.figure
    assert isinstance(fig, Figure)
    widths = sorted({last - first + 1 for first, last in windows})
    palette = ["#9cc3e6", "#3d7cc9", "#c62828", "#2e7d32"]
    colour = {w: palette[i % len(palette)] for i, w in enumerate(widths)}
    n = periods * period
    hi = 0
    for p in range(n):
        first, last = windows[p % period]
        centre = p + margin
        a, b = centre + first, centre + last
        hi = max(hi, b)
        ax.barh(p, b - a + 1, left=a - 0.5, height=0.75, color=colour[b - a + 1],
                edgecolor="none")
        ax.plot(centre, p, "o", color="#ef6c00", markeredgecolor="black", markeredgewidth=0.4,
                markersize=3.5)
    for x in range(0, hi + period, period):
        ax.axvline(x - 0.5, color="#777777", linewidth=0.5, linestyle=":")
    handles = [Rectangle((0, 0), 1, 1, color=colour[w]) for w in widths]
    handles.append(Line2D([], [], marker="o", color="#ef6c00", markeredgecolor="black",
                          markeredgewidth=0.4, linestyle="", markersize=4))
    ax.legend(handles, [f"window of {w} pixels" for w in widths] + ["the output pixel p,\n"
              f"at input column p + {margin}"], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8, frameon=False)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(-0.5 - period / 2, hi + period)
    ax.set_xticks(range(0, hi + period, 2 * period))
    ax.set_xlabel(f"input column (dotted: pooling grid, every {period} pixels)")
    ax.set_ylabel("output column p")
    return fig
