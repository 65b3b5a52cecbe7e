"""What the ISBI 2012 challenge's instruments see (chapter 7): the thinned borders and the
topological errors that the warping error counts.

* :func:`challenge_table_rows`: a run's held-out scores with the older instrument (unthinned,
  at 0.5) and the challenge's (thinned V_rand and V_info at a threshold chosen on validation
  slices, the leaderboard's best over thresholds, the warping error).
* :func:`plot_thinning`: one slice, cropped: the membrane probability, the binarised
  membranes, the borders after the challenge's thinning (:func:`unet_core.challenge.
  thinned_segments`: each cell a colour, the one-pixel lines between them black), and the
  pixels that still differ after the ground truth is warped towards the prediction by simple
  points (:func:`unet_core.warping.mismatch_kinds`): border shifts vanish (grey: the pixel
  mismatches before warping), merges (red), splits (blue) and the other topological errors
  (yellow: pieces of membrane or of cells added or lost) remain.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from unet_book.weight_plots import instance_colours
from unet_core.challenge import thinned_segments
from unet_core.data.splits import Example
from unet_core.metrics import challenge_scores, segment_labels, warping_error
from unet_core.warping import mismatch_kinds, warping_error_and_kinds

#: Colours of the errors left after warping: missed membrane that merges cells, added
#: membrane that splits one, and the rest (pieces of membrane or cell added or lost).
ERROR_COLOURS = {"merge": (1.0, 0.1, 0.1), "split": (0.2, 0.5, 1.0), "other": (1.0, 0.8, 0.1)}


def warped_errors(prob: np.ndarray, target: np.ndarray, threshold: float,
                  ) -> dict[str, np.ndarray]:
    """``{"before": pixel mismatches, "merge": ..., "split": ..., "other": ...}``: where the
    binarised prediction differs from the ground truth, and where the errors left after
    warping lie (:func:`unet_core.warping.mismatch_kinds`), as ``(H, W)`` bool maps."""
    return _error_maps(mismatch_kinds(prob, target, threshold=threshold), prob, target,
                       threshold)


def _error_maps(kinds: dict[str, np.ndarray], prob: np.ndarray, target: np.ndarray,
                threshold: float) -> dict[str, np.ndarray]:
    """:func:`warped_errors` from the mismatch kinds of the warp."""
    before = (np.asarray(prob) >= threshold) != np.asarray(target, bool)
    other = np.zeros_like(before)
    for kind, where in kinds.items():
        if kind not in ("merge", "split"):
            other |= where
    return {"before": before, "merge": kinds["merge"], "split": kinds["split"], "other": other}


def topological_crop(after: np.ndarray, size: int = 160) -> tuple[slice, slice]:
    """A ``size x size`` window around the largest cluster of ``after`` (mismatches left by
    warping; the image centre if there are none)."""
    labels, n = ndimage.label(after, structure=np.ones((3, 3), bool))
    h, w = after.shape
    if n:
        sizes = ndimage.sum(after, labels, index=range(1, n + 1))
        cy, cx = (int(v) for v in ndimage.center_of_mass(labels == 1 + int(np.argmax(sizes))))
    else:
        cy, cx = h // 2, w // 2
    top = min(max(cy - size // 2, 0), max(h - size, 0))
    left = min(max(cx - size // 2, 0), max(w - size, 0))
    return slice(top, top + size), slice(left, left + size)


def plot_thinning(example: Example, prob: np.ndarray, threshold: float,
                  crop: tuple[slice, slice] | None = None) -> Figure:
    """Four panels of one slice (module docstring), cropped to ``crop`` (default: around the
    largest topological error)."""
    membrane = np.asarray(prob) >= threshold
    counts, kinds = warping_error_and_kinds(prob, example.target, threshold=threshold)
    errors = _error_maps(kinds, prob, example.target, threshold)  # of the same, single warp
    left = errors["merge"] | errors["split"] | errors["other"]
    crop = crop or topological_crop(errors["merge"] if errors["merge"].any() else left)
    gray = example.image[..., 0]
    thinned = thinned_segments(membrane)
    overlay = np.stack([gray[crop]] * 3, axis=-1) * 0.6
    overlay[errors["before"][crop]] = (0.55, 0.55, 0.55)
    for kind, colour in ERROR_COLOURS.items():
        overlay[errors[kind][crop]] = colour
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.3))
    panels = [
        (np.asarray(prob)[crop], {"cmap": "magma", "vmin": 0, "vmax": 1},
         f"{example.name}: membrane probability"),
        (membrane[crop], {"cmap": "gray"},
         f"membranes at {threshold:.1f}: {segment_labels(membrane.astype(np.float32)).max()} "
         "cells"),
        (instance_colours(thinned[crop], gray[crop]), {},
         f"thinned borders: {thinned.max()} cells, none merged"),
        (overlay, {}, f"after warping: merges red, splits blue (slice: {counts.merges}, "
                      f"{counts.splits})"),
    ]
    for ax, (data, kw, title) in zip(axes, panels, strict=True):
        ax.imshow(data, **kw)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def challenge_table_rows(val_probs: Sequence[np.ndarray], val: Sequence[Example],
                         test_probs: Sequence[np.ndarray], test: Sequence[Example],
                         ) -> tuple[float, list[list[str]]]:
    """``(threshold, rows)``: the threshold with the best thinned V_rand on the validation
    slices, and the held-out scores as rows ``[instrument, threshold, how it was chosen,
    value]``."""
    targets = [e.target for e in test]
    chosen = challenge_scores(list(val_probs), [e.target for e in val])
    t = float(chosen["threshold"])
    at = challenge_scores(list(test_probs), targets, threshold=t)
    best = challenge_scores(list(test_probs), targets)
    warp = warping_error(list(test_probs), targets, threshold=t)
    rows = [
        ["V_rand (thinned)", f"{t:.1f}", "best V_rand on the validation slices",
         f"{at['v_rand']:.4f}"],
        ["V_info (thinned)", f"{t:.1f}", "the same", f"{at['v_info']:.4f}"],
        ["V_rand split / merge", f"{t:.1f}", "the same",
         f"{at['v_rand_split']:.4f} / {at['v_rand_merge']:.4f}"],
        ["warping error", f"{t:.1f}", "the same",
         f"{warp.error:.6f} ({warp.splits} splits, {warp.merges} merges)"],
        ["V_rand (thinned), the leaderboard's best", f"{best['threshold']:.1f}",
         "chosen on these test slices (as the leaderboard does)", f"{best['v_rand']:.4f}"],
    ]
    return t, rows
