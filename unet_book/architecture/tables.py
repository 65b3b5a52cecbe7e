"""Tables from a shape trace (:func:`unet_book.architecture.trace.trace_shapes`).

Chapter 1 (``notebooks/01_architecture.py``) shows these tables, made with
:func:`unet_book.tables.markdown_table`:

* :func:`layer_table`: one line per operation of the trace, with its shapes and parameters.
* :func:`crops` and :func:`crop_table`: the copy-and-crop operations and the pixels they cut.
* :func:`level_costs` and :func:`level_table`: parameters and multiply-accumulates per stage
  of the U.
* :func:`compare_table`: the traces of several models side by side.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from unet_book.architecture.trace import OP_CROP, Shape, TraceRow
from unet_book.tables import markdown_table


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
