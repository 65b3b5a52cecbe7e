"""The mask explorer's cases and pure functions, and its static gallery.

The explorer itself runs in the browser (:mod:`unet_book.explorer_widget`: an anywidget for
JupyterLab and Notebook, and the same ES module in the static book,
:mod:`unet_book.site.explorer_export`)::

    from unet_book.explorer_widget import MaskExplorer
    MaskExplorer().widget          # every finished run under runs/ (UNET_RUNS_DIR)

This module holds what it is fed with and what the printed book shows instead:

* :class:`Case`: one image with its probability map and, when known, its labels and FOV;
  :func:`run_cases` (a finished run's test images) and :func:`file_case` (any image file,
  segmented with a run's model by overlap-tile inference) make them.
* :class:`ThresholdMetrics`: F1, sensitivity, specificity, precision and accuracy at any
  threshold in microseconds (two sorted arrays and binary search), AUC-ROC once per image:
  the reference the browser's numbers are checked against.
* :func:`render_panel`: the RGB array of one panel (:data:`OVERLAYS`), in the explorer's
  colour-blind-safe palette (:data:`PALETTE`); :func:`window` the zoomed region.
* :func:`gallery`: a static matplotlib figure of a few explorer states, for the printed book.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from unet_book.results import run_probabilities
from unet_core.data.imageio import read_image
from unet_core.data.splits import load_data
from unet_core.metrics import ConfusionCounts, segmentation_metrics
from unet_train.config import TrainConfig
from unet_train.evaluation import predict_probability
from unet_train.predict import to_model_input
from unet_train.runs import finished_run, load_model, runs_dir

OVERLAYS: tuple[str, ...] = ("image", "probability", "errors", "ground truth",
                             "second observer", "prediction")
ZOOMS: dict[str, int | None] = {"whole image": None, "256 px": 256, "128 px": 128,
                                "64 px": 64}
_MAGMA = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
#: Colours of the errors overlay (RGB): Okabe and Ito's colour-blind-safe orange and sky blue
#: for the two kinds of error, white for the vessels found, on black. The browser's module
#: (``unet_book/static/mask_explorer.js``) uses the same; a test compares them.
PALETTE: dict[str, tuple[int, int, int]] = {
    "tp": (255, 255, 255),  # vessel found: white
    "fp": (230, 159, 0),  # false alarm (predicted, not in the ground truth): orange
    "fn": (86, 180, 233),  # missed vessel: sky blue
    "tn": (0, 0, 0),  # background: black
    "outside": (60, 60, 60),  # outside the field of view: dark grey
}
#: What the legend calls each colour.
LEGEND: dict[str, str] = {"tp": "vessel found (TP)", "fp": "false alarm (FP)",
                          "fn": "missed (FN)", "tn": "background (TN)",
                          "outside": "outside the field of view"}
NO_LABELS = 90  # grey of a panel whose labels are unknown


@dataclass(frozen=True, eq=False)
class Case:
    """One image and what is known about it (arrays in ``(H, W[, C])``)."""

    name: str
    image: np.ndarray = field(repr=False)  # (H, W, C) float in [0, 1] or uint8
    prob: np.ndarray = field(repr=False)  # (H, W) foreground probability
    target: np.ndarray | None = field(default=None, repr=False)
    fov: np.ndarray | None = field(default=None, repr=False)
    second_observer: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        shape = np.shape(self.prob)
        if len(shape) != 2:
            raise ValueError(f"{self.name}: prob must be (H, W), got shape {shape}")
        for what in ("image", "target", "fov", "second_observer"):
            a = getattr(self, what)
            if a is not None and np.shape(a)[:2] != shape:
                raise ValueError(
                    f"{self.name}: {what} has shape {np.shape(a)}, expected {shape} like prob")


class ThresholdMetrics:
    """Per-image metrics at any threshold (prediction = ``prob >= threshold``), inside the FOV.

    The probabilities of the positive and negative pixels are sorted once; the counts at a
    threshold are then two binary searches, so moving a slider costs microseconds. AUC-ROC is
    threshold-free and computed once (by :func:`unet_core.metrics.segmentation_metrics`).
    """

    def __init__(self, prob: np.ndarray, target: np.ndarray, fov: np.ndarray | None = None):
        prob, target = np.asarray(prob, np.float32), np.asarray(target).astype(bool)
        inside = np.ones(prob.shape, bool) if fov is None else np.asarray(fov).astype(bool)
        self.pos = np.sort(prob[inside & target])
        self.neg = np.sort(prob[inside & ~target])
        self.auc_roc = (segmentation_metrics(prob, target, inside).auc_roc
                        if self.pos.size and self.neg.size else float("nan"))

    def at(self, threshold: float) -> dict[str, float]:
        tp = int(self.pos.size - np.searchsorted(self.pos, threshold, side="left"))
        fp = int(self.neg.size - np.searchsorted(self.neg, threshold, side="left"))
        rates = ConfusionCounts(tp, fp, self.pos.size - tp, self.neg.size - fp).rates()
        return {k: rates[k] for k in ("f1", "sensitivity", "specificity", "precision",
                                      "accuracy")} | {"auc_roc": self.auc_roc}


def rgb8(image: np.ndarray) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8 (floats in [0, 1] scaled, grey repeated)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def _binary(mask: np.ndarray) -> np.ndarray:
    out = np.zeros((*mask.shape, 3), np.uint8)
    out[np.asarray(mask).astype(bool)] = 255
    return out


def errors_overlay(prob: np.ndarray, target: np.ndarray, fov: np.ndarray | None,
                   threshold: float) -> np.ndarray:
    """``(H, W, 3)`` uint8 errors at ``threshold`` in :data:`PALETTE` (outside ``fov`` grey)."""
    pred = np.asarray(prob) >= threshold
    target = np.asarray(target).astype(bool)
    out = np.zeros((*pred.shape, 3), np.uint8)
    for name, where in (("tp", pred & target), ("fp", pred & ~target), ("fn", ~pred & target)):
        out[where] = PALETTE[name]
    if fov is not None:
        out[~np.asarray(fov).astype(bool)] = PALETTE["outside"]
    return out


def window(shape: tuple[int, int], size: int | None, centre: tuple[float, float] = (0.5, 0.5)
           ) -> tuple[slice, slice]:
    """The ``size`` x ``size`` region around ``centre`` (fractions of height and width),
    clipped to the image; the whole image when ``size`` is None or not smaller."""
    h, w = shape
    if size is None:
        return slice(0, h), slice(0, w)
    sh, sw = min(size, h), min(size, w)
    y0 = int(round(centre[0] * h - sh / 2))
    x0 = int(round(centre[1] * w - sw / 2))
    y0, x0 = min(max(y0, 0), h - sh), min(max(x0, 0), w - sw)
    return slice(y0, y0 + sh), slice(x0, x0 + sw)


def render_panel(case: Case, overlay: str, threshold: float, show_fov: bool = True,
                 region: tuple[slice, slice] | None = None) -> np.ndarray:
    """The ``(h, w, 3)`` uint8 picture a panel shows (``region`` of the image, default all).

    With ``show_fov`` the pixels outside the FOV are dimmed (errors: grey); without it the
    whole image is shown as is and the errors count everywhere.
    """
    if overlay not in OVERLAYS:
        raise ValueError(f"overlay={overlay!r} is not valid; expected one of {', '.join(OVERLAYS)}")
    region = region or (slice(None), slice(None))
    prob = np.asarray(case.prob)[region]
    fov = None if case.fov is None else np.asarray(case.fov)[region].astype(bool)
    if overlay == "image":
        out = rgb8(np.asarray(case.image)[region])
    elif overlay == "probability":
        out = _MAGMA[(np.clip(prob, 0, 1) * 255).astype(np.uint8)]
    elif overlay == "prediction":
        out = _binary(prob >= threshold)
    else:
        labels = {"errors": case.target, "ground truth": case.target,
                  "second observer": case.second_observer}[overlay]
        if labels is None:
            out = np.full((*prob.shape, 3), NO_LABELS, np.uint8)  # grey: nothing to show
        elif overlay == "errors":
            return errors_overlay(prob, np.asarray(labels)[region],
                                  fov if show_fov else None, threshold)
        else:
            out = _binary(np.asarray(labels)[region])
    if show_fov and fov is not None:
        out = out.copy()
        out[~fov] = (out[~fov] * 0.35).astype(np.uint8)
    return out


def metrics_text(values: dict[str, float] | None, threshold: float) -> str:
    """The HTML of the metrics line (also used by the gallery's titles, without tags)."""
    if values is None:
        return f"threshold {threshold:.2f}: no ground truth for this image, no metrics"
    names = (("F1", "f1"), ("Se", "sensitivity"), ("Sp", "specificity"),
             ("precision", "precision"), ("AUC", "auc_roc"))
    return f"threshold {threshold:.2f}: " + ", ".join(
        f"{label} {values[key]:.4f}" for label, key in names)


# -- where cases come from ----------------------------------------------------------------------
def list_runs(root: str | Path | None = None) -> list[Path]:
    """Finished runs (directories with ``model.pt`` and ``metrics.json``), newest first."""
    base = Path(root) if root is not None else runs_dir()
    if not base.is_dir():
        return []
    runs = [p for p in base.iterdir()
            if (p / "model.pt").exists() and (p / "metrics.json").exists()]
    return sorted(runs, key=lambda p: (p / "model.pt").stat().st_mtime, reverse=True)


def run_cases(run_dir: str | Path) -> list[Case]:
    """The test images of a finished run with its cached probabilities."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise ValueError(f"{run_dir} is not a run directory (no config.json)")
    cfg = TrainConfig.from_dict(json.loads(config_path.read_text()))
    run = finished_run(run_dir, cfg)  # the model is loaded only when no probabilities are cached
    if run is None:
        raise ValueError(f"{run_dir} is not a finished run (no metrics.json or model.pt)")
    test = load_data(cfg).test
    # The cache holds float16: round a first, fresh prediction the same way, so that every
    # call gives the same probabilities (and the metrics the same digits).
    probs = [p.astype(np.float16).astype(np.float32) for p in run_probabilities(run, test)]
    return [Case(e.name, e.image, p, e.target, e.fov, e.second_observer)
            for e, p in zip(test, probs, strict=True)]


def file_case(path: str | Path, run_dir: str | Path) -> Case:
    """Any image file, segmented with the run's model (no labels)."""
    model, cfg, _ = load_model(Path(run_dir) / "model.pt")
    raw = read_image(path)
    x = to_model_input(raw, cfg, model.in_channels)
    return Case(Path(path).name, x, predict_probability(model, x, cfg))


def gallery(case: Case, thresholds: Sequence[float] = (0.3, 0.5, 0.7),
            region: tuple[slice, slice] | None = None) -> Figure:
    """A static figure of explorer states: the error overlay at each threshold, with the
    metrics the explorer would print, and the probability heat map."""
    import matplotlib.pyplot as plt

    metrics = None if case.target is None else ThresholdMetrics(case.prob, case.target, case.fov)
    n = len(thresholds) + 1
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.6))
    axes[0].imshow(render_panel(case, "probability", 0.5, True, region))
    axes[0].set_title(f"{case.name}: probability", fontsize=9)
    for ax, t in zip(axes[1:], thresholds, strict=True):
        ax.imshow(render_panel(case, "errors" if case.target is not None else "prediction",
                               t, True, region))
        values = None if metrics is None else metrics.at(t)
        text = metrics_text(values, t).replace(", precision", "\nprecision")
        ax.set_title(text.replace(": F1", ":\nF1"), fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.text(0.5, 0.01, "errors: vessel found (TP) white, false alarm (FP) orange, missed (FN) "
             "sky blue; outside the field of view grey", ha="center", fontsize=9)
    return fig


def outside_fov_note(cases: Sequence[Case], threshold: float, outside_fov: str) -> str:
    """The share of the pixels outside the FOVs of ``cases`` at or above ``threshold``, pooled,
    in a sentence that names how the model was trained there (``TrainConfig.outside_fov``)."""
    outside = [np.asarray(c.prob)[~np.asarray(c.fov, bool)] for c in cases if c.fov is not None]
    if not outside:
        return "these images have no field-of-view masks"
    pixels = np.concatenate(outside)
    share = float(np.mean(pixels >= np.float32(threshold)))
    how = ("its loss counted them as background" if outside_fov == "background"
           else "its loss never saw them")
    return (f"outside the field of view of the {len(outside)} test images, {100 * share:.3f} % "
            f"of the {pixels.size} pixels are at or above the threshold {threshold:.4f} "
            f"(the model was trained with outside_fov={outside_fov!r}: {how})")
