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
* :func:`draw_unet` draws the U of Fig. 1 from a trace: one box per feature map, its height
  growing with the map's side and its width with its channels, and the paper's arrows;
  :func:`draw_receptive_windows` draws the measured windows on the pooling grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
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


_TRACED = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.Dropout2d)


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


@dataclass
class _Box:
    x: float
    y: float  # bottom
    w: float
    h: float
    channels: int
    size: tuple[int, int]
    face: str = BOX_COLOR
    level: int = 0
    label_size: bool = True  # write the side at the lower left
    channel_label: str = ""  # written above the box, centred on its first label_w units
    label_w: float = 0.0

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def top(self) -> float:
        return self.y + self.h

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


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
    if not rows or rows[0].op != OP_INPUT:
        raise ValueError("rows must be a trace from trace_shapes(), starting with the input")
    fw, fh = _scaler(channel_scale), _scaler(size_scale)
    if ax is None:
        fig = Figure(figsize=(12, 7))
        ax = fig.add_subplot()
    fig = ax.figure
    assert isinstance(fig, Figure)

    chans = [r.channels for r in rows if r.op != OP_CONCAT]
    h_max = max(fh(r.size[0]) for r in rows)
    # Width units: the widest box (most channels) is 12% of the height of the tallest one.
    unit = 0.12 * h_max / fw(max(chans))
    min_w = 0.01 * h_max

    def width(c: int) -> float:
        return max(fw(c) * unit, min_w)

    gap = 0.16 * h_max  # horizontal gap between boxes, where the conv arrows go
    vgap = 0.16 * h_max  # vertical gap between levels
    levels = sorted({r.level for r in rows})
    level_h = {lv: max(fh(r.size[0]) for r in rows if r.level == lv) for lv in levels}
    centre: dict[int, float] = {}
    y = 0.0
    for lv in levels:
        centre[lv] = y - level_h[lv] / 2
        y -= level_h[lv] + vgap

    boxes: list[_Box] = []
    Point = tuple[float, float]
    arrows: list[tuple[str, Point, Point, _Box, _Box]] = []
    labels: list[tuple[float, float, float, str, str]] = []  # x, y, room, long, short text
    last_contracting: dict[int, _Box] = {}
    pending_up: TraceRow | None = None
    pending_crop: TraceRow | None = None

    def new_box(r: TraceRow, x: float, channels: int | None = None) -> _Box:
        c = r.channels if channels is None else channels
        hh = fh(r.size[0])
        box = _Box(x, centre[r.level] - hh / 2, width(c), hh, c, r.size, level=r.level)
        box.channel_label, box.label_w = f"{c}", box.w
        boxes.append(box)
        return box

    prev = new_box(rows[0], 0.0)
    for r in rows[1:]:
        if r.op in (OP_CONV3, OP_CONV3_BN, OP_CONV1):
            box = new_box(r, prev.right + gap)
            ymid = centre[r.level]
            kind = OP_CONV1 if r.op == OP_CONV1 else OP_CONV3
            arrows.append((kind, (prev.right, ymid), (box.x, ymid), prev, box))
            if r.path in ("contracting", "bottom"):
                last_contracting[r.level] = box
            prev = box
        elif r.op == OP_POOL:
            box = new_box(r, prev.x)
            xm = min(prev.cx, box.cx)
            arrows.append((OP_POOL, (xm, prev.y), (xm, box.top), prev, box))
            prev = box
        elif r.op == OP_UPCONV:
            pending_up = r
        elif r.op == OP_CROP:
            pending_crop = r
        elif r.op == OP_CONCAT:
            if pending_up is None or pending_crop is None:
                raise ValueError("a concatenation must follow an up-conv and a crop")
            copy = new_box(r, prev.x, pending_crop.channels)
            copy.face = "white"
            up = new_box(r, copy.right, pending_up.channels)
            up.label_size, up.channel_label = False, ""
            # One label over the pair, e.g. "512+512" (copied + up-convolved channels).
            copy.channel_label = f"{copy.channels}+{up.channels}"
            copy.label_w = copy.w + up.w
            xm = up.cx if prev.x <= up.cx <= prev.right else prev.cx
            arrows.append((OP_UPCONV, (xm, prev.top), (xm, up.y), prev, copy))
            src = last_contracting.get(r.level)
            if src is not None:
                ymid = centre[r.level]
                arrows.append((OP_CROP, (src.right, ymid), (copy.x, ymid), src, copy))
                if annotate_crops and pending_crop.in_shape is not None:
                    _, sh, sw = pending_crop.in_shape
                    th, tw = r.size
                    text = f"{sh}→{th}" if (sh, th) == (sw, tw) else f"{sh}x{sw}→{th}x{tw}"
                    long_text = f"copy & crop {text}"
                    if (sh, sw) == (th, tw):  # same padding: nothing to crop
                        text = long_text = "copy"
                    length = copy.x - src.right
                    labels.append(((src.right + copy.x) / 2, ymid, length, long_text, text))
            prev = _Box(copy.x, copy.y, copy.w + up.w, copy.h, r.channels, r.size)
            pending_up = pending_crop = None
        # drop-out changes no shape and is not drawn

    # Fix the data limits first: text is sized in points, and the conversion from points to
    # data units depends on the limits and on the size of the axes.
    x0 = min(b.x for b in boxes) - 0.06 * h_max
    x1 = max(b.right for b in boxes) + 0.04 * h_max
    y0 = min(b.y for b in boxes) - 0.06 * h_max
    y1 = 0.06 * h_max
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    pos = ax.get_position()
    fig_w, fig_h = fig.get_size_inches()
    per_pt_x = (x1 - x0) / max(pos.width * fig_w * 72, 1.0)  # data units per point
    per_pt_y = (y1 - y0) / max(pos.height * fig_h * 72, 1.0)

    def text_len(text: str, size: float) -> float:  # approximate advance, in points
        return 0.64 * size * len(text)

    # Room for a label centred under a box: the distance to the next label centre on its level.
    label_room: dict[int, float] = {}
    for lv in levels:
        centres = sorted((b.x + b.label_w / 2, id(b)) for b in boxes
                         if b.level == lv and b.label_size)
        for i, (cx, key) in enumerate(centres):
            gaps = [abs(centres[j][0] - cx) for j in (i - 1, i + 1) if 0 <= j < len(centres)]
            label_room[key] = min(gaps, default=x1 - x0)

    room_above = 1.35 * fontsize * per_pt_y  # channel label above a box
    room_below: dict[int, float] = {}  # size label below a box, by id
    for b in boxes:
        ax.add_patch(Rectangle((b.x, b.y), b.w, b.h, facecolor=b.face, edgecolor=BOX_EDGE,
                               linewidth=0.8))
        if b.channel_label:
            ax.text(b.x + b.label_w / 2, b.top + 0.2 * fontsize * per_pt_y, b.channel_label,
                    ha="center", va="bottom", fontsize=fontsize)
        if not b.label_size:
            continue
        text = "{}x{}".format(*b.size)
        side_font = fontsize - 1.0
        # Upwards at the lower left, as in Fig. 1, if it ends below the arrow at mid-height.
        if (text_len(text, side_font) + 4) * per_pt_y < b.h / 2:
            ax.text(b.x - 0.2 * side_font * per_pt_x, b.y, text, rotation=90, ha="right",
                    va="bottom", fontsize=side_font)
        else:  # centred underneath, shrunk to the room between neighbouring boxes
            room = label_room[id(b)] / per_pt_x - 4  # points, keeping 4 pt between labels
            size = min(side_font, room / text_len(text, 1.0))
            ax.text(b.x + b.label_w / 2, b.y - 0.15 * size * per_pt_y, text, ha="center",
                    va="top", fontsize=size)
            room_below[id(b)] = 1.3 * size * per_pt_y

    for kind, start, end, src, dst in arrows:
        # Vertical arrows run between the labels: from under a size label, to above a
        # channel label (pool), and the other way round (up-conv).
        if kind == OP_POOL:
            start = (start[0], start[1] - room_below.get(id(src), 0.0))
            end = (end[0], end[1] + room_above)
        elif kind == OP_UPCONV:
            start = (start[0], start[1] + room_above)
            end = (end[0], end[1] - room_below.get(id(dst), 0.0))
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9,
                                     color=COLORS[kind], linewidth=1.4, shrinkA=1, shrinkB=1))
    for x, y, length, long_text, short_text in labels:
        for text in (long_text, short_text):
            if text_len(text, fontsize) * per_pt_x < 0.9 * length:
                ax.text(x, y + 0.3 * fontsize * per_pt_y, text, ha="center", va="bottom",
                        fontsize=fontsize, color="#555555")
                break

    if legend:
        handles = [Line2D([], [], color=COLORS[k], linewidth=2, marker=">", markersize=5,
                          label=k) for k in (OP_CONV3, OP_CROP, OP_POOL, OP_UPCONV, OP_CONV1)]
        ax.legend(handles=handles, loc="lower right", fontsize=fontsize + 1, frameon=False)
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
