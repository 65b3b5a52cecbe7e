"""The mask explorer that runs in the browser: live in JupyterLab and Notebook, and in the
static book without a kernel.

One implementation: an anywidget (:class:`ExplorerWidget`, this module) and one ES module
(``unet_book/static/mask_explorer.js``). The browser thresholds the probability map, draws the
overlays (:data:`unet_book.explorer.OVERLAYS`), switches the field of view, zooms and pans at
full resolution and computes the metrics line (F1, Se, Sp, precision and the threshold-free
AUC-ROC) from the data it is given; Python only prepares that data.

* The data of one image (:func:`encode_case`): the probability map at 16 bits, the labels
  (ground truth, FOV, second observer) as one byte of bits per pixel, both deflated, and the
  image as a JPEG, in one binary file. The 16-bit levels are made exact at the slider's
  thresholds (:func:`quantise`): the browser's confusion counts at ``k / 100`` equal
  :mod:`unet_core.metrics` on the float probabilities, and the AUC from the 65536-level
  histograms (:func:`histogram_auc`) differs from the exact one by about ``1e-5``.
* In the browser, once per image: four histograms of the levels (vessel / background, inside
  / outside the FOV) and their cumulative sums (:func:`class_histograms` and
  :func:`histogram_metrics` are the same computation in NumPy, for the tests), so a threshold
  move costs the metrics (two array reads) and one pass over the pixels shown.
* Live (:class:`MaskExplorer`): ipywidgets choose a run or segment the reader's own image
  with its model (as before); the :class:`ExplorerWidget` receives the chosen image's data
  (trait ``payload``) and sends back what it shows (``metrics_text``, ``last_update_ms``).
* Static (:mod:`unet_book.site.explorer_export`): the same ES module and data files in the
  built book, without a kernel.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as w
import numpy as np
import traitlets
from PIL import Image

from unet_book.explorer import (
    OVERLAYS,
    ZOOMS,
    Case,
    ThresholdMetrics,
    file_case,
    list_runs,
    metrics_text,
    rgb8,
    run_cases,
)
from unet_train.predict import PROBABILITY_SCALE, encode_probability

STATIC = Path(__file__).with_name("static")
MODULE = STATIC / "mask_explorer.js"  # the ES module of the widget and of the static page
LEVELS = PROBABILITY_SCALE  # a probability p is the level round(p * 65535)
STEPS = 100  # the slider's thresholds are k / STEPS, k = 1 ... STEPS - 1
MAGIC = b"UNETEXP1"
FORMAT = 1
JPEG_QUALITY = 92
LABEL_BITS = {"target": 1, "fov": 2, "second_observer": 4}


# -- data preparation --------------------------------------------------------------------------
def threshold_bin(k: int, steps: int = STEPS) -> int:
    """The first level counted positive at threshold ``k / steps``: ``round(k / steps *
    65535)`` with halves up, in integers (the ES module's ``thresholdBin`` is the same)."""
    return (2 * k * LEVELS + steps) // (2 * steps)


def quantise(prob: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """Probabilities as uint16 levels ``round(p * 65535)``, moved so that ``level >=
    threshold_bin(k)`` exactly when ``prob >= k / steps`` (the library's test, in ``prob``'s
    dtype) for every slider threshold: by at most one level (float32, float64; float16, where
    ``k / steps`` is itself rounded, by up to half a float16 step). Monotone: the order of the
    pixels is kept, and with it the AUC."""
    p = np.asarray(prob)
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float32)
    q = encode_probability(p.astype(np.float64)).astype(np.int64)  # float16 * 65535 overflows
    # Only pixels within a level of a slider threshold can be on the wrong side of it, and the
    # thresholds are hundreds of levels apart: the nearest one is the only one to check.
    k = np.clip(np.rint(p * steps), 1, steps - 1).astype(np.int64)
    t = (k / steps).astype(p.dtype)  # what `prob >= k / steps` compares with
    qt = (2 * k * LEVELS + steps) // (2 * steps)
    q = np.where(p >= t, np.maximum(q, qt), np.minimum(q, qt - 1))
    return q.astype(np.uint16)


def label_bits(case: Case) -> np.ndarray:
    """One byte per pixel: 1 ground truth, 2 inside the FOV, 4 second observer."""
    out = np.zeros(np.shape(case.prob), np.uint8)
    for what, bit in LABEL_BITS.items():
        mask = getattr(case, what)
        if mask is not None:
            out |= np.asarray(mask).astype(bool).astype(np.uint8) * np.uint8(bit)
    return out


def class_histograms(levels: np.ndarray, target: np.ndarray,
                     fov: np.ndarray | None = None) -> np.ndarray:
    """``(4, 65536)`` counts of each level; row ``vessel + 2 * inside the FOV`` (as the ES
    module's ``prepare``)."""
    levels = np.asarray(levels, np.int64).ravel()
    row = np.asarray(target).astype(bool).ravel().astype(np.int64)
    inside = np.ones_like(row) if fov is None else np.asarray(fov).astype(bool).ravel()
    row = row + 2 * inside
    return np.bincount(row * (LEVELS + 1) + levels, minlength=4 * (LEVELS + 1)).reshape(4, -1)


def _cumulative(hist: np.ndarray, use_fov: bool) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = hist[3] + (0 if use_fov else hist[1]), hist[2] + (0 if use_fov else hist[0])
    # pixels with level >= b, for every b
    return np.cumsum(pos[::-1])[::-1], np.cumsum(neg[::-1])[::-1]


def histogram_metrics(hist: np.ndarray, k: int, use_fov: bool = True,
                      steps: int = STEPS) -> dict[str, float]:
    """The metrics at threshold ``k / steps`` from :func:`class_histograms`, as the browser
    computes them (the counts are prefix sums; AUC by :func:`histogram_auc`)."""
    tps, fps = _cumulative(hist, use_fov)
    b = threshold_bin(k, steps)
    tp, fp = int(tps[b]), int(fps[b])
    fn, tn = int(tps[0]) - tp, int(fps[0]) - fp

    def ratio(a: float, d: float) -> float:
        return a / d if d else float("nan")

    return {"f1": ratio(2 * tp, 2 * tp + fp + fn), "sensitivity": ratio(tp, tp + fn),
            "specificity": ratio(tn, tn + fp), "precision": ratio(tp, tp + fp),
            "accuracy": ratio(tp + tn, tp + tn + fp + fn),
            "auc_roc": histogram_auc(hist, use_fov), "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def histogram_auc(hist: np.ndarray, use_fov: bool = True) -> float:
    """AUC-ROC from the level histograms: the trapezoid over the levels (ties within a level
    count one half), as the browser computes it."""
    tps, fps = _cumulative(hist, use_fov)
    n_pos, n_neg = int(tps[0]), int(fps[0])
    if not n_pos or not n_neg:
        return float("nan")
    tp = np.concatenate(([0], tps[::-1])).astype(np.int64)  # levels from the top down
    fp = np.concatenate(([0], fps[::-1])).astype(np.int64)
    return int(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]))) / (2.0 * n_pos * n_neg)


def encode_case(case: Case, steps: int = STEPS, jpeg_quality: int = JPEG_QUALITY,
                level: int = 9) -> bytes:
    """One image's data file: ``UNETEXP1``, a little-endian uint32 header length, the JSON
    header, then the sections it lists (the 16-bit levels as high-byte and low-byte planes,
    deflated; the label bits, deflated; the image as JPEG)."""
    q = quantise(case.prob, steps)
    planes = np.concatenate([(q >> 8).astype(np.uint8).ravel(), (q & 255).astype(np.uint8).ravel()])
    buf = io.BytesIO()
    Image.fromarray(rgb8(case.image)).save(buf, format="JPEG", quality=jpeg_quality)
    sections = [("prob", "deflate-planes", zlib.compress(planes.tobytes(), level)),
                ("labels", "deflate", zlib.compress(label_bits(case).tobytes(), level)),
                ("image", "image/jpeg", buf.getvalue())]
    h, w_ = q.shape
    header = {"format": FORMAT, "name": case.name, "width": w_, "height": h, "levels": LEVELS,
              "steps": steps, "has_target": case.target is not None,
              "has_fov": case.fov is not None,
              "has_second_observer": case.second_observer is not None,
              "sections": [[name, enc, len(data)] for name, enc, data in sections]}
    text = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<I", len(text)), text, *(s[2] for s in sections)])


def decode_case(blob: bytes) -> dict[str, Any]:
    """The header of :func:`encode_case`'s file with ``levels`` (uint16 ``(H, W)``),
    ``labels`` (uint8 bits) and ``image`` (the RGB array decoded from the JPEG)."""
    if blob[:8] != MAGIC:
        raise ValueError("not a mask explorer data file (no UNETEXP1 header)")
    (size,) = struct.unpack("<I", blob[8:12])
    header = json.loads(blob[12:12 + size])
    at, parts = 12 + size, {}
    for name, _, length in header["sections"]:
        parts[name] = blob[at:at + length]
        at += length
    shape = (header["height"], header["width"])
    planes = np.frombuffer(zlib.decompress(parts["prob"]), np.uint8).reshape(2, *shape)
    levels = (planes[0].astype(np.uint16) << 8) | planes[1]
    labels = np.frombuffer(zlib.decompress(parts["labels"]), np.uint8).reshape(shape)
    image = np.asarray(Image.open(io.BytesIO(parts["image"])).convert("RGB"))
    return {**header, "levels": levels, "labels": labels, "image": image}


# -- the widget --------------------------------------------------------------------------------
class ExplorerWidget(anywidget.AnyWidget):
    """The browser explorer over a list of :class:`~unet_book.explorer.Case` s.

    Python sends the chosen image's data file (``payload``, once per image: the files are
    cached) and the names of the images; the ES module draws, computes and sends back the
    metrics line it shows (``metrics_text``) and how long its last update took
    (``last_update_ms``; both stay empty without a browser). The controls' values are traits:
    set them from Python or read what the reader chose.
    """

    _esm = MODULE
    images = traitlets.List(traitlets.Unicode()).tag(sync=True)
    image = traitlets.Unicode("").tag(sync=True)
    payload = traitlets.Bytes(b"").tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    threshold = traitlets.Float(0.5, min=0.0, max=1.0).tag(sync=True)
    show_fov = traitlets.Bool(True).tag(sync=True)
    left = traitlets.Enum(OVERLAYS, "image").tag(sync=True)
    right = traitlets.Enum(OVERLAYS, "errors").tag(sync=True)
    zoom = traitlets.Enum(tuple(ZOOMS), "whole image").tag(sync=True)
    metrics_text = traitlets.Unicode("").tag(sync=True)  # what the browser shows
    last_update_ms = traitlets.Float(-1.0).tag(sync=True)  # measured in the browser

    def __init__(self, cases: Sequence[Case] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.cases: list[Case] = []
        self._files: dict[str, tuple[Case, bytes]] = {}
        self._metrics: dict[tuple[str, bool], tuple[Case, ThresholdMetrics | None]] = {}
        self._sent: Case | None = None
        self.observe(lambda _: self._send_chosen(), "image")
        self.set_cases(cases)

    def set_cases(self, cases: Sequence[Case], select: str | None = None) -> None:
        """Explore ``cases``, showing ``select`` (default: the first)."""
        self.cases = list(cases)
        names = [c.name for c in self.cases]
        with self.hold_trait_notifications():
            self.images = names
            self.image = select if select in names else (names[0] if names else "")
        self._send_chosen()

    def case(self) -> Case | None:
        return next((c for c in self.cases if c.name == self.image), None)

    def data_file(self, case: Case) -> bytes:
        """:func:`encode_case` of ``case``, computed once."""
        cached = self._files.get(case.name)
        if cached is None or cached[0] is not case:
            cached = self._files[case.name] = (case, encode_case(case))
        return cached[1]

    def _send_chosen(self) -> None:
        case = self.case()
        if case is self._sent:
            return
        self.payload = b"" if case is None else self.data_file(case)
        self._sent = case

    def reference_metrics(self) -> dict[str, float] | None:
        """What the browser's metrics line should say for the current image, threshold and
        FOV setting, computed by the library on the float probabilities (cached per image
        and FOV setting); None without ground truth."""
        case = self.case()
        if case is None or case.target is None:
            return None
        key = (case.name, self.show_fov)
        cached = self._metrics.get(key)
        if cached is None or cached[0] is not case:
            fov = case.fov if self.show_fov else None
            cached = self._metrics[key] = (case, ThresholdMetrics(case.prob, case.target, fov))
        return cached[1].at(self.slider_threshold())

    def slider_threshold(self) -> float:
        """The threshold the browser uses: ``self.threshold`` on the slider's 0.01 grid."""
        return min(max(round(self.threshold * STEPS), 1), STEPS - 1) / STEPS

    def reference_text(self) -> str:
        """:func:`unet_book.explorer.metrics_text` of :meth:`reference_metrics`."""
        return metrics_text(self.reference_metrics(), self.slider_threshold())


class MaskExplorer:
    """The explorer over runs (``.widget``): choose a run and an image (its test images, or
    any image file, segmented with the run's model), or explore given ``cases``.

    Args:
        runs_root: where to look for runs (default ``$UNET_RUNS_DIR``).
        cases: explore these cases instead of runs (the run chooser is then hidden).
        threshold: the initial threshold (default: the run's own, chosen on training images).
        run: the name of the run to open first (default: the newest).
    """

    def __init__(self, runs_root: str | Path | None = None, cases: Sequence[Case] | None = None,
                 threshold: float | None = None, run: str | None = None):
        self.runs = [] if cases is not None else list_runs(runs_root)
        self.view = ExplorerWidget()
        self.run = w.Dropdown(options=[p.name for p in self.runs], description="run",
                              layout=w.Layout(width="420px"))
        self.path = w.Text(placeholder="or a file: /path/to/fundus.jpg", description="file")
        self.load_file = w.Button(description="segment file")
        self.status = w.HTML()
        if run is not None:
            if run not in self.run.options:
                raise ValueError(f"run={run!r} is not a finished run under "
                                 f"{runs_root or '$UNET_RUNS_DIR'}; found: "
                                 f"{', '.join(self.run.options) or 'none'}")
            self.run.value = run
        rows = []
        if cases is None:
            self.run.observe(lambda _: self._load_run(), "value")
            self.load_file.on_click(lambda _: self._load_file())
            rows = [w.HBox([self.run, self.path, self.load_file],
                           layout=w.Layout(flex_flow="row wrap"))]
        self.widget = w.VBox([*rows, self.view, self.status])
        if cases is not None:
            self.view.set_cases(cases)
        elif self.runs:
            self._load_run()
        else:
            self.status.value = ("No finished run found under runs/: train one first "
                                 "(chapter 5, or <code>python -m unet_train train</code>).")
            self.view.message = "no run to show"
        if threshold is not None:
            self.view.threshold = threshold

    @property
    def cases(self) -> list[Case]:
        return self.view.cases

    def case(self) -> Case | None:
        return self.view.case()

    def _run_dir(self) -> Path:
        return next(p for p in self.runs if p.name == self.run.value)

    def _load_run(self) -> None:
        self.status.value = f"loading {self.run.value} ..."
        try:
            cases = run_cases(self._run_dir())
        except (ValueError, OSError) as err:
            self.status.value = f"<b>cannot load {self.run.value}</b>: {err}"
            return
        self.view.set_cases(cases, select=self.view.image)
        t = run_threshold(self._run_dir())
        if t is not None and 0.01 <= t <= 0.99:
            self.view.threshold = round(t, 2)
        self.status.value = f"{len(cases)} test images of {self.run.value}"

    def _load_file(self) -> None:
        if not self.runs:
            self.status.value = "choose a run first: its model segments the file"
            return
        try:
            case = file_case(self.path.value.strip(), self._run_dir())
        except (ValueError, OSError) as err:
            self.status.value = f"<b>cannot segment that file</b>: {err}"
            return
        self.view.set_cases([*self.cases, case], select=case.name)
        self.status.value = f"segmented {case.name} with {self.run.value}"


def run_threshold(run_dir: str | Path) -> float | None:
    """The threshold a run chose (``metrics.json``: ``test.threshold``), if it has one."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return None
    value = json.loads(path.read_text()).get("test", {}).get("threshold")
    return None if value is None else float(value)
