"""Look inside a U-Net: shapes, crops, parameters, receptive windows and the U of Fig. 1.

Everything here is *observed* on a model rather than re-derived by hand:

* :func:`trace_shapes` runs one forward pass with forward hooks and records every operation of
  the paper's Fig. 1 (3x3 convolution + ReLU, 2x2 max-pool, 2x2 up-convolution, copy-and-crop,
  concatenation, 1x1 convolution) with its input and output shape, its parameters and its
  multiply-accumulates. The model may live on the ``meta`` device, which propagates shapes
  without computing.
* :func:`layer_table` and :func:`crop_table` format such a trace as Markdown tables (with
  :func:`unet_book.tables.markdown_table`).
* :func:`level_costs` splits parameters and multiply-accumulates over the stages of the U.
* :func:`compare_table` sets the traces of several models side by side.
* :func:`receptive_windows` measures, by back-propagation through a probe network with the
  same architecture, which input pixels can influence an output pixel, for every position of
  that pixel relative to the ``2**depth`` pooling grid.
* :func:`unet_layout` lays out the U of Fig. 1 from a trace, without drawing: one box per
  feature map, its height growing with the map's side and its width with its channels, and
  the paper's arrows. :func:`draw_unet` paints that layout with matplotlib;
  :func:`draw_receptive_windows` draws the measured windows on the pooling grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import nn
from torch.utils.hooks import RemovableHandle

from unet_book.tables import markdown_table
from unet_core.model import UNet

Shape = tuple[int, int, int]  # (C, H, W) of one feature map, batch dimension dropped

# Operation names, as the legend of the paper's Fig. 1 calls them.
OP_INPUT = "input"
OP_CONV3 = "conv 3x3, ReLU"
OP_CONV3_BN = "conv 3x3, BN, ReLU"
OP_POOL = "max pool 2x2"
OP_DROPOUT = "dropout"
OP_UPCONV = "up-conv 2x2"
OP_CROP = "copy and crop"
OP_CONCAT = "concatenate"
OP_CONV1 = "conv 1x1"

PATHS: tuple[str, ...] = ("input", "contracting", "bottom", "expanding", "output")


@dataclass(frozen=True)
class TraceRow:
    """One operation of a forward pass, as recorded by :func:`trace_shapes`.

    Attributes:
        op: operation name (``OP_*`` constants of this module, e.g. ``"max pool 2x2"``).
        module: qualified name of the module that ran (``"down.0.0"``, ``"pool"``, ``"up.3"``);
            for a crop, the contracting block whose output was copied (``"down.0"``); empty
            for the input and for the concatenation.
        path: ``"input"``, ``"contracting"``, ``"bottom"``, ``"expanding"`` or ``"output"``.
        level: resolution level of the *output* map: 0 is full resolution, ``depth`` the
            bottom of the U (a max-pool from level 0 has level 1).
        in_shape: ``(C, H, W)`` of the operation's input (``None`` for the input and for the
            concatenation, whose two inputs are the preceding up-conv and crop rows).
        out_shape: ``(C, H, W)`` of its output.
        params: trainable parameters of the operation (a convolution's weights and bias, plus
            those of the BatchNorm that follows it, if any).
        macs: multiply-accumulates of the operation for one image (convolutions only; the
            cost of ReLU, pooling, BatchNorm and biases is negligible and not counted).
    """

    op: str
    module: str
    path: str
    level: int
    in_shape: Shape | None
    out_shape: Shape
    params: int = 0
    macs: int = 0

    @property
    def channels(self) -> int:
        """Channels of the output map."""
        return self.out_shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the output map."""
        return self.out_shape[1], self.out_shape[2]


def _shape(t: torch.Tensor) -> Shape:
    c, h, w = (int(s) for s in t.shape[1:])
    return c, h, w


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _batch_norm_params(model: UNet) -> dict[nn.Module, int]:
    """Parameters of every BatchNorm, credited to the convolution before it.

    One row per Fig. 1 arrow: "conv 3x3, BN, ReLU" counts the BatchNorm with its convolution.
    """
    extra: dict[nn.Module, int] = {}
    for block in [*model.down, *model.up_conv]:
        last_conv: nn.Module | None = None
        for layer in block:
            if isinstance(layer, nn.Conv2d):
                last_conv = layer
            elif isinstance(layer, nn.BatchNorm2d) and last_conv is not None:
                extra[last_conv] = extra.get(last_conv, 0) + _numel(layer)
    return extra


def _op_name(module: nn.Module, batch_norm: Collection[nn.Module]) -> str:
    """The Fig. 1 name of a traced module (``batch_norm``: convolutions followed by BN)."""
    if isinstance(module, nn.ConvTranspose2d):
        return OP_UPCONV
    if isinstance(module, nn.Conv2d):
        if module.kernel_size == (1, 1):
            return OP_CONV1
        return OP_CONV3_BN if module in batch_norm else OP_CONV3
    if isinstance(module, nn.MaxPool2d):
        return OP_POOL
    return OP_DROPOUT


def _macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-accumulates of a convolution for one image (0 for anything else)."""
    if isinstance(module, nn.ConvTranspose2d):  # every input pixel meets the whole kernel
        return int(inp.shape[2] * inp.shape[3] * module.weight.numel())
    if isinstance(module, nn.Conv2d):  # every output pixel meets the whole kernel
        return int(out.shape[2] * out.shape[3] * module.weight.numel() // module.groups)
    return 0


_TRACED = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.Dropout, nn.Dropout2d)


class _Tracer:
    """The hooks of :func:`trace_shapes` and the rows they record.

    Pre-hooks on the blocks tell where in the U the pass is (path and level); forward hooks on
    the traced modules append one row per operation; the contracting blocks' outputs are
    remembered so that the pre-hook of each expanding block can read off the copy-and-crop.
    """

    def __init__(self, model: UNet, input_shape: Shape) -> None:
        self.names = {m: name for name, m in model.named_modules()}
        self.extra = _batch_norm_params(model)
        self.rows: list[TraceRow] = [TraceRow(OP_INPUT, "", "input", 0, None, input_shape)]
        self.path, self.level = "contracting", 0
        self.skips: dict[int, Shape] = {}

    def register(self, model: UNet) -> list[RemovableHandle]:
        """Put every hook on ``model``; the caller removes the returned handles."""
        depth = model.depth
        handles = []
        for i, block in enumerate(model.down):
            path = "bottom" if i == depth else "contracting"
            handles.append(block.register_forward_pre_hook(self.enter(path, i)))
            handles.append(block.register_forward_hook(self.remember_skip(i)))
        for i, (up, block) in enumerate(zip(model.up, model.up_conv, strict=True)):
            level = depth - 1 - i
            handles.append(up.register_forward_pre_hook(self.enter("expanding", level)))
            handles.append(block.register_forward_pre_hook(self.crop_and_concat(level)))
        handles.append(model.head.register_forward_pre_hook(self.enter("output", 0)))
        for m in model.modules():
            if isinstance(m, _TRACED):
                handles.append(m.register_forward_hook(self.record))
        return handles

    def enter(self, path: str, level: int) -> Callable[..., None]:
        """Pre-hook: the pass enters ``path`` at ``level``."""
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            self.path, self.level = path, level

        return hook

    def record(self, module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        """Forward hook: one row for a convolution, pooling, up-convolution or drop-out."""
        op = _op_name(module, self.extra)
        path, level = self.path, self.level
        if op == OP_POOL:  # a max-pool leads one level down the contracting path
            path, level = "contracting", level + 1
        params = _numel(module) + self.extra.get(module, 0)
        self.rows.append(TraceRow(op, self.names[module], path, level, _shape(args[0]),
                                  _shape(out), params, _macs(module, args[0], out)))

    def remember_skip(self, level: int) -> Callable[..., None]:
        """Forward hook: keep the shape of the contracting map of ``level``."""
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self.skips[level] = _shape(out)

        return hook

    def crop_and_concat(self, level: int) -> Callable[..., None]:
        """Pre-hook of an expanding block: a crop row and a concatenation row."""
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            cat = _shape(args[0])
            up = self.rows[-1].out_shape  # the up-convolution that just ran
            skip = self.skips[level]
            if skip[0] + up[0] != cat[0] or up[1:] != cat[1:]:
                raise RuntimeError(f"unexpected concatenation {skip} + {up} -> {cat}")
            cropped = (skip[0], cat[1], cat[2])
            self.rows.append(TraceRow(OP_CROP, f"down.{level}", "expanding", level, skip,
                                      cropped))
            self.rows.append(TraceRow(OP_CONCAT, "", "expanding", level, None, cat))

        return hook


def _run_in_eval(model: nn.Module, x: torch.Tensor) -> None:
    """One forward pass in eval mode without gradients; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)


def trace_shapes(model: UNet, input_size: int | tuple[int, int] = 572) -> list[TraceRow]:
    """Run ``model`` once on an ``input_size`` image and record every Fig. 1 operation.

    Forward hooks on the model's convolutions, pooling, up-convolutions and drop-out record
    their input and output shapes; a pre-hook on every expanding block sees the concatenated
    map, from which the crop of the skip connection is read off. Nothing is re-derived: if the
    model's code changes, the trace changes with it.

    Args:
        model: the network. It runs in eval mode without gradients (its mode is restored
            afterwards), on the device of its parameters; a model built under
            ``torch.device("meta")`` gives the shapes without any arithmetic.
        input_size: the input side ``n`` (an ``n x n`` image) or ``(height, width)``. It must
            be a valid size for the model (e.g. 572 for the paper net).

    Returns:
        The operations in execution order, starting with an ``"input"`` row.

    Raises:
        ValueError: if ``input_size`` is not valid for the model (raised by the model).
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    param = next(model.parameters())
    x = torch.zeros(1, model.in_channels, h, w, dtype=param.dtype, device=param.device)
    tracer = _Tracer(model, _shape(x))
    handles = tracer.register(model)
    try:
        _run_in_eval(model, x)
    finally:
        for handle in handles:
            handle.remove()
    return tracer.rows


def _fmt_shape(shape: Shape | None) -> str:
    if shape is None:
        return ""
    c, h, w = shape
    return f"{c} × {h} × {w}"


def layer_table(rows: Sequence[TraceRow]) -> str:
    """Markdown table of a trace: one line per operation with shapes ``C × H × W``."""
    body = [
        (i, r.op, f"`{r.module}`" if r.module else "", r.path, r.level,
         _fmt_shape(r.in_shape), _fmt_shape(r.out_shape), r.params)
        for i, r in enumerate(rows)
    ]
    header = ("#", "operation", "module", "path", "level", "input", "output", "parameters")
    return markdown_table(header, body)


@dataclass(frozen=True)
class Crop:
    """One copy-and-crop: the contracting map of ``level`` cut to the up-convolution's size."""

    level: int
    channels: int
    source: tuple[int, int]  # (H, W) of the contracting map that is copied
    target: tuple[int, int]  # (H, W) after cropping = (H, W) of the up-convolution output

    @property
    def per_side(self) -> tuple[int, int]:
        """Pixels removed from (top and bottom, left and right); 0 with same padding."""
        return (self.source[0] - self.target[0]) // 2, (self.source[1] - self.target[1]) // 2


def crops(rows: Sequence[TraceRow]) -> list[Crop]:
    """The copy-and-crop operations of a trace, from the bottom of the U upwards."""
    out = []
    for r in rows:
        if r.op == OP_CROP:
            assert r.in_shape is not None
            out.append(Crop(r.level, r.channels, (r.in_shape[1], r.in_shape[2]), r.size))
    return out


def crop_table(rows: Sequence[TraceRow]) -> str:
    """Markdown table of the copy-and-crop operations of a trace."""
    body = []
    for c in crops(rows):
        top, left = c.per_side
        per_side: int | str = top if top == left else f"{top} / {left}"
        body.append((c.level, c.channels, "{}x{}".format(*c.source), "{}x{}".format(*c.target),
                     per_side))
    header = ("level", "channels", "contracting map", "cropped to", "pixels cut per side")
    return markdown_table(header, body)


@dataclass(frozen=True)
class LevelCost:
    """Parameters and compute of one stage of the U (see :func:`level_costs`)."""

    path: str  # "contracting", "bottom", "expanding" or "output"
    level: int
    size: tuple[int, int]  # (H, W) of the stage's last feature map
    channels: int  # channels of the stage's last feature map
    params: int
    macs: int  # multiply-accumulates for one image


def level_costs(rows: Sequence[TraceRow]) -> list[LevelCost]:
    """Parameters and multiply-accumulates per stage of a trace, in the order of the U.

    A contracting or bottom stage is its double convolution; an expanding stage is its 2x2
    up-convolution plus its double convolution; ``"output"`` is the final 1x1 convolution.
    The parameters sum to :func:`~unet_core.model.count_parameters` of the traced model.
    """
    groups: dict[tuple[str, int], list[TraceRow]] = {}
    for r in rows:
        if r.params or r.macs:
            groups.setdefault((r.path, r.level), []).append(r)
    return [
        LevelCost(path, level, g[-1].size, g[-1].channels, sum(r.params for r in g),
                  sum(r.macs for r in g))
        for (path, level), g in groups.items()
    ]


def level_table(costs: Sequence[LevelCost]) -> str:
    """Markdown table of :func:`level_costs`, with each stage's share of the total."""
    total_p = sum(c.params for c in costs) or 1
    total_m = sum(c.macs for c in costs) or 1
    body = [
        (c.path, c.level, "{}x{}".format(*c.size), c.channels, c.params,
         f"{100 * c.params / total_p:.1f} %", f"{c.macs / 1e9:.2f}",
         f"{100 * c.macs / total_m:.1f} %")
        for c in costs
    ]
    body.append(("**total**", "", "", "", sum(c.params for c in costs), "100 %",
                 f"{sum(c.macs for c in costs) / 1e9:.2f}", "100 %"))
    header = ("stage", "level", "map", "channels", "parameters", "share", "GMAC", "share")
    return markdown_table(header, body, align="lrlrrrrr")


def compare_table(
    traces: Mapping[str, Sequence[TraceRow]], ops: Collection[str] | None = None
) -> str:
    """Markdown table of the output shapes of several traces of the same depth, row by row.

    Args:
        traces: e.g. ``{"paper (valid, 64)": rows_a, "same, 64": rows_b}``; every trace must
            have the same sequence of operations.
        ops: show only the rows of these operations (e.g. ``(OP_POOL, OP_CROP)``); all rows
            when omitted.

    Raises:
        ValueError: if the traces do not have the same operations.
    """
    names = list(traces)
    first = traces[names[0]]
    for name in names[1:]:
        if [r.op for r in traces[name]] != [r.op for r in first]:
            raise ValueError(f"trace {name!r} has other operations than {names[0]!r}")
    body = [
        (i, r.op, r.path, r.level, *(_fmt_shape(traces[n][i].out_shape) for n in names))
        for i, r in enumerate(first)
        if ops is None or r.op in ops
    ]
    return markdown_table(("#", "operation", "path", "level", *names), body)


def receptive_windows(model: UNet) -> list[tuple[int, int]]:
    """Input window of an output pixel for each of its ``2**depth`` positions on the pool grid.

    Output pixel ``p`` of a valid U-Net sits at input pixel ``p + margin``; its window depends
    on ``p mod 2**depth`` because the max-pools group input pixels in aligned blocks. The
    window is *measured*: a probe network with the model's architecture (``depth``; widths do
    not matter) gets all-positive weights, so that every ReLU is active, and average instead
    of max pooling, so that every pixel of a pooling window passes gradient (a max-pool can
    pick any of its four inputs, depending on the data). The gradient of output pixel ``p``
    is then positive exactly on the pixels that can influence it.

    Args:
        model: any UNet; only its ``depth`` is used (padding does not move the window away from
            the borders, so the valid architecture is probed).

    Returns:
        For ``p = 0 .. 2**depth - 1``, ``(first, last)`` input offsets of the window relative to
        the pixel's own input position ``p + margin`` (the paper net: ``(-92, 95)`` for
        ``p = 0``). The window is ``last - first + 1`` pixels wide; the largest width equals
        :func:`~unet_core.model.receptive_field`.
    """
    period = 2**model.depth
    probe = UNet(1, 1, 1, model.depth, "valid").double()
    probe.pool = nn.AvgPool2d(kernel_size=2, stride=2)
    with torch.no_grad():
        for m in probe.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
    height = probe.valid_input_size(1)
    width = height
    while probe.output_size(width) < period:
        width = probe.valid_input_size(width + 1)
    margin = probe.margin
    x = torch.ones(period, 1, height, width, dtype=torch.float64, requires_grad=True)
    y = probe(x)  # (period, 1, H_out, W_out)
    pick = torch.zeros_like(y)
    for p in range(period):
        pick[p, 0, 0, p] = 1.0  # sample p asks about output pixel (0, p)
    (grad,) = torch.autograd.grad((y * pick).sum(), x)
    columns = grad.sum(dim=(1, 2))  # (period, width): influence of each input column
    windows = []
    for p in range(period):
        hit = (columns[p] > 0).nonzero().flatten()
        windows.append((int(hit.min()) - p - margin, int(hit.max()) - p - margin))
    return windows


# -- the diagram ---------------------------------------------------------------------------

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
