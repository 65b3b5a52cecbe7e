"""An interactive mask explorer: ipywidgets over a run's predictions.

Open it in JupyterLab or Notebook after any run (``notebooks/08_mask_explorer``)::

    from unet_book.explorer import MaskExplorer
    MaskExplorer().widget          # every finished run under runs/ (UNET_RUNS_DIR)

Pick a run and an image (the run's test images, or any image file, segmented with the run's
model through overlap-tile inference), move the threshold and watch the per-image metrics and
the two side-by-side panels update. Each panel shows one of :data:`OVERLAYS`: the input,
the probability as a heat map, the errors (true positives white, false positives red, false
negatives blue), the ground truth, the second observer (DRIVE test images) or the binary
prediction; the field of view can be shown (outside dimmed) or ignored; the zoom shows a
square region at full resolution, each image pixel enlarged to several screen pixels.

The logic is split from the widgets so that it is testable without a browser:

* :class:`Case`: one image with its probability map and, when known, its labels and FOV.
* :class:`ThresholdMetrics`: F1, sensitivity, specificity, precision and accuracy at any
  threshold in microseconds (two sorted arrays and binary search), AUC-ROC once per image.
* :func:`render_panel`: the RGB array a panel shows.
* :class:`MaskExplorer`: the widgets; :meth:`MaskExplorer.update` redraws and records how
  long it took (``last_update_ms``); the arrays shown are kept in ``last_panels``.
* :func:`gallery`: a static matplotlib figure of a few explorer states, for the printed book.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from unet_book.results import error_overlay, run_probabilities
from unet_core.config import TrainConfig
from unet_core.data.imageio import read_image
from unet_core.data.splits import load_data
from unet_core.evaluation import predict_probability
from unet_core.metrics import segmentation_metrics
from unet_core.predict import to_model_input
from unet_core.runs import finished_run, load_model, runs_dir

OVERLAYS: tuple[str, ...] = ("image", "probability", "errors", "ground truth",
                             "second observer", "prediction")
ZOOMS: dict[str, int | None] = {"whole image": None, "256 px": 256, "128 px": 128,
                                "64 px": 64}
_MAGMA = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


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
        tp = self.pos.size - np.searchsorted(self.pos, threshold, side="left")
        fp = self.neg.size - np.searchsorted(self.neg, threshold, side="left")
        fn, tn = self.pos.size - tp, self.neg.size - fp

        def ratio(a: float, b: float) -> float:
            return float(a / b) if b else float("nan")

        return {"f1": ratio(2 * tp, 2 * tp + fp + fn), "sensitivity": ratio(tp, tp + fn),
                "specificity": ratio(tn, tn + fp), "precision": ratio(tp, tp + fp),
                "accuracy": ratio(tp + tn, tp + tn + fp + fn), "auc_roc": self.auc_roc}


def _rgb(image: np.ndarray) -> np.ndarray:
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
        out = _rgb(np.asarray(case.image)[region])
    elif overlay == "probability":
        out = _MAGMA[(np.clip(prob, 0, 1) * 255).astype(np.uint8)]
    elif overlay == "prediction":
        out = _binary(prob >= threshold)
    else:
        labels = {"errors": case.target, "ground truth": case.target,
                  "second observer": case.second_observer}[overlay]
        if labels is None:
            out = np.full((*prob.shape, 3), 90, np.uint8)  # grey: nothing to show
        elif overlay == "errors":
            out = error_overlay(prob, np.asarray(labels)[region],
                                fov if show_fov else None, threshold)
            return out
        else:
            out = _binary(np.asarray(labels)[region])
    if show_fov and fov is not None:
        out = out.copy()
        out[~fov] = (out[~fov] * 0.35).astype(np.uint8)
    return out


def png_bytes(array: np.ndarray, width: int) -> bytes:
    """PNG of ``array`` scaled (nearest neighbour, so pixels stay sharp) to ``width`` pixels."""
    im = Image.fromarray(array)
    if im.width != width:
        im = im.resize((width, max(1, round(im.height * width / im.width))), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


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
    probs = run_probabilities(run, test)
    return [Case(e.name, e.image, p, e.target, e.fov, e.second_observer)
            for e, p in zip(test, probs, strict=True)]


def file_case(path: str | Path, run_dir: str | Path) -> Case:
    """Any image file, segmented with the run's model (no labels)."""
    model, cfg, _ = load_model(Path(run_dir) / "model.pt")
    raw = read_image(path)
    x = to_model_input(raw, cfg, model.in_channels)
    return Case(Path(path).name, x, predict_probability(model, x, cfg))


# -- the widgets --------------------------------------------------------------------------------
class MaskExplorer:
    """The explorer's widgets (``.widget``) over runs, or over given ``cases``.

    Args:
        runs_root: where to look for runs (default ``$UNET_RUNS_DIR``).
        cases: explore these cases instead of runs (the run chooser is then hidden).
        panel_width: display width of each panel in screen pixels.
        threshold: the initial threshold (default: the run's own, chosen on training-set images).
        run: the name of the run to open first (default: the newest).
    """

    def __init__(self, runs_root: str | Path | None = None, cases: Sequence[Case] | None = None,
                 panel_width: int = 420, threshold: float | None = None,
                 run: str | None = None):
        import ipywidgets as w

        self.panel_width = panel_width
        self.runs = [] if cases is not None else list_runs(runs_root)
        self.cases: list[Case] = list(cases) if cases is not None else []
        self._metrics: dict[str, ThresholdMetrics | None] = {}
        self.last_update_ms = float("nan")
        self.last_panels: tuple[np.ndarray, np.ndarray] | None = None

        self.run = w.Dropdown(options=[p.name for p in self.runs], description="run",
                              layout=w.Layout(width="420px"))
        self.image = w.Dropdown(options=[], description="image")
        self.path = w.Text(placeholder="or a file: /path/to/fundus.jpg", description="file")
        self.load_file = w.Button(description="segment file")
        self.threshold = w.FloatSlider(value=0.5, min=0.01, max=0.99, step=0.01,
                                       description="threshold", continuous_update=True,
                                       readout_format=".2f")
        self.left = w.Dropdown(options=OVERLAYS, value="image", description="left")
        self.right = w.Dropdown(options=OVERLAYS, value="errors", description="right")
        self.fov = w.Checkbox(value=True, description="field of view")
        self.zoom = w.Dropdown(options=list(ZOOMS), value="whole image", description="zoom")
        self.centre_y = w.FloatSlider(value=0.5, min=0, max=1, step=0.01, description="centre y")
        self.centre_x = w.FloatSlider(value=0.5, min=0, max=1, step=0.01, description="centre x")
        self.panels = (w.Image(format="png"), w.Image(format="png"))
        self.metrics = w.HTML()
        self.status = w.HTML()

        if run is not None:
            if run not in self.run.options:
                raise ValueError(f"run={run!r} is not a finished run under "
                                 f"{runs_root or '$UNET_RUNS_DIR'}; found: "
                                 f"{', '.join(self.run.options) or 'none'}")
            self.run.value = run
        if cases is None:
            self.run.observe(lambda _: self._load_run(), "value")
        self._quiet = False
        self.image.observe(lambda _: None if self._quiet else self.update(), "value")
        self.load_file.on_click(lambda _: self._load_file())
        for control in (self.threshold, self.left, self.right, self.fov, self.zoom,
                        self.centre_y, self.centre_x):
            control.observe(lambda _: self.update(), "value")

        rows = [] if cases is not None else [w.HBox([self.run, self.path, self.load_file])]
        self.widget = w.VBox([
            *rows,
            w.HBox([self.image, self.threshold, self.fov]),
            w.HBox([self.left, self.right, self.zoom]),
            w.HBox([self.centre_y, self.centre_x]),
            self.metrics,
            w.HBox(list(self.panels)),
            self.status,
        ])
        if cases is not None:
            self._set_cases(self.cases)
        elif self.runs:
            self._load_run()
        else:
            self.status.value = ("No finished run found under runs/: train one first "
                                 "(chapter 5, or <code>python -m unet_core train</code>).")
        if threshold is not None:
            self.threshold.value = threshold

    # -- data -----------------------------------------------------------------------------------
    def _run_threshold(self) -> float | None:

        if not self.runs or self.run.value is None:
            return None
        metrics = json.loads((self._run_dir() / "metrics.json").read_text())
        return float(metrics["test"]["threshold"])

    def _run_dir(self) -> Path:
        return next(p for p in self.runs if p.name == self.run.value)

    def _load_run(self) -> None:
        self.status.value = f"loading {self.run.value} ..."
        try:
            self._set_cases(run_cases(self._run_dir()))
        except (ValueError, OSError) as err:
            self.status.value = f"<b>cannot load {self.run.value}</b>: {err}"
            return
        t = self._run_threshold()
        if t is not None and 0.01 <= t <= 0.99:
            self.threshold.value = round(t, 2)
        self.status.value = f"{len(self.cases)} test images of {self.run.value}"

    def _load_file(self) -> None:
        if not self.runs:
            self.status.value = "choose a run first: its model segments the file"
            return
        try:
            case = file_case(self.path.value.strip(), self._run_dir())
        except (ValueError, OSError) as err:
            self.status.value = f"<b>cannot segment that file</b>: {err}"
            return
        self._set_cases([*self.cases, case], select=case.name)
        self.status.value = f"segmented {case.name} with {self.run.value}"

    def _set_cases(self, cases: Sequence[Case], select: str | None = None) -> None:
        self.cases = list(cases)
        self._metrics = {}
        names = [c.name for c in self.cases]
        self._quiet = True  # one redraw for the new list, not one per trait change
        try:
            self.image.options = names
            self.image.value = select if select in names else (names[0] if names else None)
        finally:
            self._quiet = False
        self.update()

    def case(self) -> Case | None:
        return next((c for c in self.cases if c.name == self.image.value), None)

    def _case_metrics(self, case: Case) -> ThresholdMetrics | None:
        key = f"{case.name}|{self.fov.value}"
        if key not in self._metrics:
            self._metrics[key] = (None if case.target is None else ThresholdMetrics(
                case.prob, case.target, case.fov if self.fov.value else None))
        return self._metrics[key]

    # -- drawing --------------------------------------------------------------------------------
    def update(self) -> None:
        """Redraw both panels and the metrics for the current widget values."""
        case = self.case()
        if case is None:
            return
        t0 = time.perf_counter()
        t = float(self.threshold.value)
        region = window(np.shape(case.prob), ZOOMS[self.zoom.value],
                        (self.centre_y.value, self.centre_x.value))
        arrays = tuple(render_panel(case, kind, t, self.fov.value, region)
                       for kind in (self.left.value, self.right.value))
        for panel, array in zip(self.panels, arrays, strict=True):
            panel.value = png_bytes(array, self.panel_width)
        metrics = self._case_metrics(case)
        self.metrics.value = metrics_text(None if metrics is None else metrics.at(t), t)
        self.last_panels = arrays  # type: ignore[assignment]
        self.last_update_ms = (time.perf_counter() - t0) * 1000


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
    fig.text(0.5, 0.01, "errors: vessel found (TP) white, false alarm (FP) red, missed (FN) "
             "blue; outside the field of view grey", ha="center", fontsize=9)
    return fig
