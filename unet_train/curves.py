"""``curves.png``: a run's training loss and validation metrics, drawn with Pillow.

The library draws no figures with matplotlib (that is the book's concern, :mod:`unet_book`);
this small plot is what the command line's ``train`` leaves in the run folder so that a run
can be judged at a glance: the mean training loss on a log axis (left) and the validation
AUC-ROC and F1 (right), each against minutes of training. Chapter 5 shows the book's version
of the same curves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from unet_train.atomic import write_image

PANEL = (480, 300)  # width, height of one panel in pixels
MARGIN = (62, 22, 16, 44)  # left, top, right, bottom inside a panel
COLOURS = {"loss": (31, 119, 180), "val_auc_roc": (255, 127, 14), "val_f1": (44, 160, 44)}
LABELS = {"val_auc_roc": "AUC-ROC", "val_f1": "F1"}


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis spanning ``10**lo .. 10**hi``: 1, 2, 5 times powers of ten."""
    ticks = [m * 10.0**e for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)]
    inside = [math.log10(t) for t in ticks if lo - 1e-9 <= math.log10(t) <= hi + 1e-9]
    return inside if len(inside) >= 2 else _ticks(lo, hi)


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (m * step) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def _panel(draw: ImageDraw.ImageDraw, origin: tuple[int, int], title: str,
           xs: Sequence[float], series: Mapping[str, Sequence[float | None]],
           log_y: bool, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> None:
    """One panel: axes, ticks, a line with dots per series, a legend."""
    ox, oy = origin
    left, top = ox + MARGIN[0], oy + MARGIN[1]
    right, bottom = ox + PANEL[0] - MARGIN[2], oy + PANEL[1] - MARGIN[3]
    values = [v for ys in series.values() for v in ys if v is not None and math.isfinite(v)]
    values = [v for v in values if v > 0] if log_y else values
    draw.text((left, oy + 2), title, fill="black", font=font)
    draw.rectangle((left, top, right, bottom), outline="black")
    if not values:
        draw.text((left + 20, (top + bottom) // 2), "no values", fill="gray", font=font)
        return
    fy = math.log10 if log_y else float
    y_lo, y_hi = fy(min(values)), fy(max(values))
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    pad = 0.06 * (y_hi - y_lo)  # keep the end points off the frame
    y_lo, y_hi = y_lo - pad, y_hi + pad
    x_lo, x_hi = 0.0, max(max(xs), 1e-9)

    def at(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (fy(y) - y_lo) / (y_hi - y_lo) * (bottom - top))

    for t in _ticks(x_lo, x_hi):
        px = at(t, 10**y_lo if log_y else y_lo)[0]
        draw.line((px, bottom, px, bottom + 4), fill="black")
        draw.text((px - 10, bottom + 6), f"{t:g}", fill="black", font=font)
    for t in (_log_ticks if log_y else _ticks)(y_lo, y_hi):
        py = bottom - (t - y_lo) / (y_hi - y_lo) * (bottom - top)
        draw.line((left - 4, py, left, py), fill="black")
        label = f"{10**t:.3g}" if log_y else f"{t:.3g}"
        draw.text((ox + 4, py - 7), label, fill="black", font=font)
    draw.text(((left + right) // 2 - 60, bottom + 24), "minutes of training", fill="black",
              font=font)
    for k, (name, ys) in enumerate(series.items()):
        points = [at(x, y) for x, y in zip(xs, ys, strict=True)
                  if y is not None and math.isfinite(y) and (y > 0 or not log_y)]
        colour = COLOURS.get(name, (0, 0, 0))
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse((px - 3, py - 3, px + 3, py + 3), fill=colour)
        label = LABELS.get(name, name)  # the legend, in the title row, right-aligned
        draw.text((right - 70 * (len(series) - k), oy + 2), label, fill=colour, font=font)


def draw_curves(history: Sequence[Mapping[str, float]], title: str = "") -> Image.Image:
    """The two panels of ``curves.png`` for a run's history (one row per validation pass)."""
    if not history:
        raise ValueError("history is empty: the run has no validation pass yet")
    image = Image.new("RGB", (2 * PANEL[0], PANEL[1] + 24), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    if title:
        draw.text((PANEL[0] - 6 * len(title) // 2, 4), title, fill="black", font=font)
    xs = [float(h["minutes"]) for h in history]
    _panel(draw, (0, 24), "mean training loss (log scale)", xs,
           {"loss": [h.get("loss") for h in history]}, True, font)
    val = {k: [h.get(k) for h in history] for k in ("val_auc_roc", "val_f1")}
    val = {k: v for k, v in val.items() if any(x is not None for x in v)}
    _panel(draw, (PANEL[0], 24), "validation images", xs, val, False, font)
    return image


def save_curves(run_dir: str | Path, history: Sequence[Mapping[str, float]]) -> Path | None:
    """Write ``<run_dir>/curves.png`` (atomically); nothing when there is no history yet."""
    if not history:
        return None
    return write_image(Path(run_dir) / "curves.png", draw_curves(history, Path(run_dir).name))
