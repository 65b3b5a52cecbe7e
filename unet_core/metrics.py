"""Evaluation metrics: pixel metrics for DRIVE-style data and the ISBI 2012 segmentation metrics.

Everything here is NumPy (and scikit-image for connected components and contingency tables); no
torch. Probabilities come from :func:`unet_core.losses.foreground_probability`.

Pixel metrics (DRIVE, and ISBI 2012 membranes as the positive class)
---------------------------------------------------------------------
Inputs are probabilities ``prob`` in ``[0, 1]`` of the positive class (vessel; membrane for
ISBI 2012), a boolean ``target`` and optionally a boolean field of view ``fov``, each ``(H, W)``,
``(N, H, W)`` or a sequence of ``(H, W)`` arrays (images of different sizes). Only pixels inside
the FOV are used; pixels outside it have no influence at all.

* A pixel is predicted positive when ``prob >= threshold`` (the convention of scikit-learn's
  curves, so that a threshold taken from :func:`roc_curve` or :func:`best_threshold` reproduces
  the point it came from).
* ``iou`` is the Jaccard index of the positive class, ``TP / (TP + FP + FN)``, as
  ``sklearn.metrics.jaccard_score``. (A widely copied DRIVE repository prints the *accuracy*
  under the name "Jaccard similarity"; that number is not an IoU and is not reported here.)
  ``f1`` is the Dice coefficient of the binary maps, ``2 TP / (2 TP + FP + FN)``.
* ``auc_roc`` is exact: the trapezoidal area under the full ROC curve with tied scores grouped
  into one threshold, which equals the Mann-Whitney statistic with ties counted one half
  (``sklearn.metrics.roc_auc_score``). ``auc_pr`` is the average precision
  ``sum_k (R_k - R_{k-1}) P_k`` over all distinct thresholds, without interpolation
  (``sklearn.metrics.average_precision_score``), not a trapezoidal area. Both come from one
  sort of the pixels' ``(score, label)`` pairs packed into integers (``O(n log n)``, no loop
  over thresholds; a set is sorted image by image and the runs merged).
* A ratio whose denominator is 0 (e.g. sensitivity of an image without vessels, or an AUC with
  a single class present) is ``nan``, never silently 0; a mean over images containing a
  ``nan`` is ``nan``.
* Sets (:func:`evaluate_set`): the *pooled* metrics concatenate the FOV pixels of all images
  and compute every metric once (the usual DRIVE protocol: 20 test images, first observer,
  the official FOV masks); the *mean* is the average of the per-image values. They differ
  (AUCs and F1 are not averages of per-image values); papers rarely say which one they report.
* Thresholds: :func:`best_threshold` picks the threshold that maximises a metric. Use it on a
  *validation* split carved from the training data and apply the threshold unchanged to the
  test split. Tuning it on the test set inflates every threshold-dependent number (f1, iou,
  accuracy, ...); this module never does so, and nothing in it looks at a split's name.

ISBI 2012 (Cardona et al. 2010; Arganda-Carreras et al. 2015)
-------------------------------------------------------------
Label conventions. The challenge's label images are cell-interior maps (255 = interior,
0 = membrane/boundary). The project's :class:`unet_core.data.isbi2012.IsbiSample` stores the
complement, ``membranes`` (True on boundary pixels), and the networks predict the membrane
probability. Therefore every *binary or probability* input to the ISBI functions below means
**membrane** by default (``means="membrane"``); pass ``means="interior"`` for interior maps such
as the challenge's files after ``== 255``. *Integer* (non-bool) arrays are taken to be label
images already: 0 is boundary, every other value one segment. (A raw 0/255 ``uint8`` label file
is therefore one single segment: binarise it first.)

* :func:`pixel_error`: the fraction of pixels whose binarised prediction differs from the
  binary target (both of the same polarity; complementing both changes nothing).
* :func:`rand_error`: ``1 - V_rand``, the foreground-restricted Rand F-score of the challenge
  (its ``RandError`` / "adapted Rand" evaluation code). Binary or probability maps are first
  turned into segments: threshold, then 4-connected components of the cell interior
  (:func:`segment_labels`, as the challenge's script). The score is computed from the overlap
  (contingency) matrix ``p_ij`` of ground-truth segment ``i`` and predicted segment ``j``:

  - ground-truth boundary pixels (label 0) are left out entirely ("foreground-restricted");
  - a predicted boundary pixel (label 0) that lies on a ground-truth segment is its own
    singleton segment (``pred_boundary="singletons"``, as the challenge's script, which adds
    ``sum_i p_i0`` as singletons to the split and overlap sums): it is never merged with
    anything, only split off. ``pred_boundary="segment"`` instead makes all predicted
    boundary pixels one segment, which is what ``skimage.metrics.adapted_rand_error`` does
    (it ignores label 0 in the ground truth only);
  - ``precision = sum_ij p_ij^2 / sum_j b_j^2``, ``recall = sum_ij p_ij^2 / sum_i a_i^2`` with
    ``a_i``, ``b_j`` the row and column sums, ``V_rand = 2PR / (P + R)``. With
    ``self_pairs=True`` (default) the sums count ordered pixel pairs including a pixel with
    itself (the challenge's N^2 normalisation); ``self_pairs=False`` counts pairs of distinct
    pixels (``n_ij (n_ij - 1)``), as scikit-image and SNEMI3D do. The difference is of the
    order of one over the segment size. (scikit-image 0.26 returns its precision and recall in
    the opposite order to these definitions, in which a false merge lowers the precision; the
    error, a symmetric F-score, is unaffected.)

  Binarisation uses ``>= threshold`` as everywhere in this module. (The challenge's script
  binarises *interior* maps with ``> t``; on the membrane probability that is exactly
  ``>= 1 - t``, so the two rules agree on the grid 0.0, 0.1, ..., 1.0, which maps onto itself;
  see :mod:`unet_core.challenge`.)
  Here the threshold is given and nothing is thinned, so numbers are comparable between our
  runs but not to the leaderboard. The challenge's final leaderboard metrics, ``V_rand
  (thinned)`` and ``V_info (thinned)`` (borders thinned to one pixel by a watershed, best
  score over the thresholds 0.0, 0.1, ..., 1.0), are :func:`challenge_scores`, and its
  topology-preserving warping error is :func:`warping_error` (both re-exported here from
  :mod:`unet_core.challenge` and :mod:`unet_core.warping`, whose docstrings give the sources).
* :func:`variation_of_information`: ``VI = H(pred | true) + H(true | pred)`` in bits, split
  (over-segmentation) and merge (under-segmentation) parts, with the same foreground
  restriction and boundary handling, computed by ``skimage.metrics.variation_of_information``.
  This is the classical VI, not the challenge's normalised score ``V_info``.

Stacks ``(N, H, W)`` are scored slice by slice in 2-D (the challenge's task is 2-D) and the
per-slice values are averaged.

Explained in chapter 6 (results, DRIVE) and chapter 7 (ISBI 2012 membranes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, astuple, dataclass, fields
from typing import Literal, NamedTuple

import numpy as np
from skimage.measure import label as _label_components
from skimage.metrics import contingency_table
from skimage.metrics import variation_of_information as _skimage_vi

from unet_core.challenge import challenge_scores  # noqa: F401  (re-exported)
from unet_core.validation import check_choice as _check_choice
from unet_core.warping import warping_error  # noqa: F401  (re-exported)

ImageInput = np.ndarray | Sequence[np.ndarray]
Polarity = Literal["membrane", "interior"]
BoundaryMode = Literal["singletons", "segment"]
ThresholdMetric = Literal["f1", "iou", "accuracy", "youden"]
POLARITIES: tuple[str, ...] = ("membrane", "interior")
BOUNDARY_MODES: tuple[str, ...] = ("singletons", "segment")
THRESHOLD_METRICS: tuple[str, ...] = ("f1", "iou", "accuracy", "youden")
METRIC_NAMES: tuple[str, ...] = (
    "auc_roc", "auc_pr", "f1", "iou", "accuracy", "sensitivity", "specificity", "precision",
)



# -- input handling ----------------------------------------------------------------------------
def _images(x: ImageInput, name: str) -> list[np.ndarray]:
    """An ``(H, W)`` or ``(N, H, W)`` array, or a sequence of ``(H, W)`` arrays, as 2-D arrays."""
    if x is None:
        raise ValueError(f"{name} is required")
    if isinstance(x, np.ndarray) or not isinstance(x, Sequence):
        arr = np.asarray(x)
        if arr.ndim == 2:
            return [arr]
        if arr.ndim == 3:
            if arr.shape[0] == 0:
                raise ValueError(f"{name} holds no image (shape {arr.shape})")
            return list(arr)
        raise ValueError(f"{name} must have shape (H, W) or (N, H, W), got {arr.shape}")
    items = [np.asarray(a) for a in x]
    if not items:
        raise ValueError(f"{name} is an empty sequence")
    for i, a in enumerate(items):
        if a.ndim != 2:
            raise ValueError(f"{name}[{i}] must have shape (H, W), got {a.shape}")
    return items


def _is_numeric(a: np.ndarray) -> bool:
    return a.dtype == bool or np.issubdtype(a.dtype, np.integer) or np.issubdtype(
        a.dtype, np.floating
    )


def _check_prob(p: np.ndarray, name: str) -> np.ndarray:
    """Probabilities in [0, 1] (bools become 0/1); raises ValueError naming ``name``."""
    if not _is_numeric(p):
        raise ValueError(f"{name} must hold numbers in [0, 1], got dtype {p.dtype}")
    if not np.issubdtype(p.dtype, np.floating):
        p = p.astype(np.float32)
    if p.size:
        lo, hi = p.min(), p.max()
        if not (lo >= 0 and hi <= 1):  # also catches nan
            raise ValueError(
                f"{name} must hold probabilities in [0, 1] (no nan), found values in "
                f"[{lo}, {hi}]"
            )
    return p


def _check_binary(t: np.ndarray, name: str) -> np.ndarray:
    """A boolean mask; numbers are accepted when they are all 0 or 1."""
    if t.dtype == bool:
        return t
    if not _is_numeric(t) or not ((t == 0) | (t == 1)).all():
        raise ValueError(
            f"{name} must be boolean or contain only 0 and 1 (binarise 0/255 masks first)"
        )
    return t != 0


def _label(name: str, i: int, n: int) -> str:
    return f"{name}[{i}]" if n > 1 else name


def _prepare(
    prob: ImageInput, target: ImageInput, fov: ImageInput | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validated ``(scores, labels)`` 1-D arrays, one pair per image, FOV pixels only."""
    probs = _images(prob, "prob")
    targets = _images(target, "target")
    fovs = None if fov is None else _images(fov, "fov")
    n = len(probs)
    if len(targets) != n:
        raise ValueError(f"target holds {len(targets)} images but prob holds {n}")
    if fovs is not None and len(fovs) != n:
        raise ValueError(f"fov holds {len(fovs)} images but prob holds {n}")
    out = []
    for i in range(n):
        p = _check_prob(probs[i], _label("prob", i, n))
        if targets[i].shape != p.shape:
            raise ValueError(
                f"{_label('target', i, n)} has shape {targets[i].shape} but "
                f"{_label('prob', i, n)} has shape {p.shape}"
            )
        t = _check_binary(targets[i], _label("target", i, n))
        if fovs is None:
            out.append((p.ravel(), t.ravel()))
            continue
        if fovs[i].shape != p.shape:
            raise ValueError(
                f"{_label('fov', i, n)} has shape {fovs[i].shape} but "
                f"{_label('prob', i, n)} has shape {p.shape}"
            )
        f = _check_binary(fovs[i], _label("fov", i, n))
        if not f.any():
            raise ValueError(f"{_label('fov', i, n)} is empty: no pixel inside the field of view")
        out.append((p[f], t[f]))
    return out


def _check_threshold(threshold: float) -> float:
    value = float(threshold)
    if np.isnan(value):
        raise ValueError("threshold must be a number, got nan")
    return value


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


# -- counts and curves -------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel counts at one threshold (inside the FOV)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def rates(self) -> dict[str, float]:
        """The metrics of these counts alone (module docstring; ``nan`` for a zero
        denominator): ``f1``, ``iou``, ``accuracy``, ``sensitivity``, ``specificity``,
        ``precision``."""
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        return {"f1": _ratio(2 * tp, 2 * tp + fp + fn), "iou": _ratio(tp, tp + fp + fn),
                "accuracy": _ratio(tp + tn, self.total), "sensitivity": _ratio(tp, tp + fn),
                "specificity": _ratio(tn, tn + fp), "precision": _ratio(tp, tp + fp)}


def _counts(scores: np.ndarray, labels: np.ndarray, threshold: float) -> ConfusionCounts:
    pred = scores >= threshold
    tp = int(np.count_nonzero(pred & labels))
    n_pred = int(np.count_nonzero(pred))
    n_pos = int(np.count_nonzero(labels))
    fp, fn = n_pred - tp, n_pos - tp
    return ConfusionCounts(tp, fp, fn, labels.size - tp - fp - fn)


def _sum_counts(counts: Sequence[ConfusionCounts]) -> ConfusionCounts:
    return ConfusionCounts(*(sum(v) for v in zip(*map(astuple, counts), strict=True)))


def _pooled_counts(parts: list[tuple[np.ndarray, np.ndarray]], threshold: float) -> ConfusionCounts:
    return _sum_counts([_counts(s, y, threshold) for s, y in parts])


def confusion_counts(
    prob: ImageInput, target: ImageInput, fov: ImageInput | None = None, threshold: float = 0.5
) -> ConfusionCounts:
    """TP, FP, FN, TN of ``prob >= threshold`` against ``target``, pooled, inside ``fov``."""
    return _pooled_counts(_prepare(prob, target, fov), _check_threshold(threshold))


def _sorted_keys(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(score, label)`` packed into one ``uint64`` per pixel, sorted ascending.

    The bit pattern of a non-negative float64 is ordered like its value, and a value in
    ``[0, 1]`` uses fewer than 62 bits, so ``bits << 1 | label`` keeps the score order and has
    room for the label. Sorting these integers (no index indirection) is two to three times
    faster than ``argsort`` of the scores followed by gathering the labels.
    """
    keys = np.add(scores, 0.0, dtype=np.float64).view(np.uint64)  # + 0.0 turns -0.0 into 0.0
    keys <<= np.uint64(1)
    keys |= labels
    keys.sort()
    return keys


def _merge(keys: Sequence[np.ndarray]) -> np.ndarray:
    """Merge per-image sorted keys: NumPy's stable sort (timsort) merges sorted runs fast."""
    if len(keys) == 1:
        return keys[0]
    return np.sort(np.concatenate(keys), kind="stable")


def _pooled_keys(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Sorted keys of all images' pixels (sorted per image, then merged)."""
    return _merge([_sorted_keys(s, y) for s, y in parts])


@dataclass(frozen=True)
class _Curve:
    """Cumulative counts at every distinct score, highest first (``prob >= threshold``)."""

    thresholds: np.ndarray  # float64, decreasing
    tps: np.ndarray  # int64: positives with score >= threshold
    fps: np.ndarray
    n_pos: int
    n_neg: int


def _curve(keys: np.ndarray) -> _Curve:
    """The curve from ascending sorted keys (:func:`_sorted_keys`)."""
    desc = keys[::-1]
    bits = desc >> np.uint64(1)
    last = np.flatnonzero(bits[1:] != bits[:-1])  # last position of each run of equal scores
    idx = np.append(last, desc.size - 1)
    tps = np.cumsum(desc & np.uint64(1), dtype=np.int64)[idx]
    fps = idx.astype(np.int64) + 1 - tps
    n_pos = int(tps[-1])
    return _Curve(bits[idx].view(np.float64), tps, fps, n_pos, desc.size - n_pos)


def _auc_roc(c: _Curve) -> float:
    if c.n_pos == 0 or c.n_neg == 0:
        return float("nan")
    tp = np.concatenate(([0], c.tps))
    fp = np.concatenate(([0], c.fps))
    twice_area = int(np.sum(np.diff(fp) * (tp[1:] + tp[:-1])))  # exact in int64
    return twice_area / (2.0 * c.n_pos * c.n_neg)


def _average_precision(c: _Curve) -> float:
    if c.n_pos == 0:
        return float("nan")
    new_tp = np.diff(c.tps, prepend=0)
    precision = c.tps / (c.tps + c.fps)
    return float(np.dot(new_tp, precision) / c.n_pos)


# -- metrics -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentationMetrics:
    """Pixel metrics of the positive class (see the module docstring for the definitions)."""

    auc_roc: float
    auc_pr: float
    f1: float
    iou: float
    accuracy: float
    sensitivity: float
    specificity: float
    precision: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _metrics(k: ConfusionCounts, curve: _Curve) -> SegmentationMetrics:
    return SegmentationMetrics(auc_roc=_auc_roc(curve), auc_pr=_average_precision(curve),
                               **k.rates())


def segmentation_metrics(
    prob: ImageInput, target: ImageInput, fov: ImageInput | None = None, threshold: float = 0.5
) -> SegmentationMetrics:
    """All pixel metrics of ``prob`` against ``target``, inside ``fov``.

    Args:
        prob: probabilities of the positive class in ``[0, 1]`` (bools are accepted as 0/1),
            ``(H, W)``, ``(N, H, W)`` or a sequence of ``(H, W)`` arrays. Several images are
            pooled (their FOV pixels concatenated); see :func:`evaluate_set` for per-image
            values as well.
        target: boolean ground truth (or 0/1 numbers), same shape(s).
        fov: boolean field of view, same shape(s), or None for every pixel. An empty FOV
            raises ValueError.
        threshold: a pixel is predicted positive when ``prob >= threshold``.

    Raises:
        ValueError: naming the argument, for mismatched shapes, probabilities outside
            ``[0, 1]`` or nan, non-binary ``target`` / ``fov``, or an empty FOV.
    """
    threshold = _check_threshold(threshold)
    parts = _prepare(prob, target, fov)
    return _metrics(_pooled_counts(parts, threshold), _curve(_pooled_keys(parts)))


@dataclass(frozen=True)
class SetEvaluation:
    """Metrics of a set of images: pooled over all FOV pixels, mean of per-image, per image."""

    pooled: SegmentationMetrics
    mean: SegmentationMetrics
    per_image: tuple[SegmentationMetrics, ...]


def evaluate_set(
    probs: ImageInput,
    targets: ImageInput,
    fovs: ImageInput | None = None,
    threshold: float = 0.5,
) -> SetEvaluation:
    """Evaluate a set: ``pooled`` (DRIVE convention), ``mean`` of per-image values, ``per_image``.

    Inputs as for :func:`segmentation_metrics`, one image per entry of an ``(N, H, W)`` array or
    of a sequence (images may differ in size). The same ``threshold`` is used for every image;
    choose it with :func:`best_threshold` on validation data, never on the set evaluated here.
    """
    threshold = _check_threshold(threshold)
    parts = _prepare(probs, targets, fovs)
    counts = [_counts(s, y, threshold) for s, y in parts]
    keys = [_sorted_keys(s, y) for s, y in parts]
    per_image = tuple(_metrics(k, _curve(key)) for k, key in zip(counts, keys, strict=True))
    if len(parts) == 1:
        pooled = per_image[0]
    else:
        pooled = _metrics(_sum_counts(counts), _curve(_merge(keys)))
    mean = SegmentationMetrics(
        **{f.name: float(np.mean([getattr(m, f.name) for m in per_image]))
           for f in fields(SegmentationMetrics)}
    )
    return SetEvaluation(pooled=pooled, mean=mean, per_image=per_image)


def _thin(x: np.ndarray, y: np.ndarray, max_points: int | None) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along the polyline ``(x, y)``."""
    n = x.size
    if max_points is None or n <= max_points:
        return np.arange(n)
    step = np.nan_to_num(np.hypot(np.diff(x), np.diff(y)))
    arc = np.concatenate(([0.0], np.cumsum(step)))
    targets = np.linspace(0.0, arc[-1], max_points - 1)
    idx = np.searchsorted(arc, targets, side="left")
    return np.unique(np.concatenate((idx, [n - 1])))


def _check_max_points(max_points: int | None) -> None:
    if max_points is not None and (not isinstance(max_points, int | np.integer) or max_points < 3):
        raise ValueError(f"max_points must be an integer >= 3 or None, got {max_points!r}")


def roc_curve(
    prob: ImageInput,
    target: ImageInput,
    fov: ImageInput | None = None,
    *,
    max_points: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)`` for plotting, pooled inside ``fov``.

    Without thinning the arrays equal ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``:
    one point per distinct score (decreasing thresholds, predicted positive when
    ``prob >= threshold``), preceded by ``(0, 0)`` at threshold ``inf``. ``max_points`` (>= 3)
    keeps at most that many points spread evenly along the curve, always the first and the last (for
    plotting only: :func:`segmentation_metrics` integrates the full curve). Rates whose
    denominator is 0 (one class absent) are ``nan``.
    """
    _check_max_points(max_points)
    c = _curve(_pooled_keys(_prepare(prob, target, fov)))
    tps = np.concatenate(([0], c.tps))
    fps = np.concatenate(([0], c.fps))
    thresholds = np.concatenate(([np.inf], c.thresholds))
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = fps / c.n_neg if c.n_neg else np.full(fps.shape, np.nan)
        tpr = tps / c.n_pos if c.n_pos else np.full(tps.shape, np.nan)
    idx = _thin(fpr, tpr, max_points)
    return fpr[idx], tpr[idx], thresholds[idx]


def pr_curve(
    prob: ImageInput,
    target: ImageInput,
    fov: ImageInput | None = None,
    *,
    max_points: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve ``(precision, recall, thresholds)``, pooled inside ``fov``.

    Without thinning the arrays equal ``sklearn.metrics.precision_recall_curve``: thresholds are
    the distinct scores in *increasing* order, and ``precision`` / ``recall`` have one more
    element, the end point ``(recall 0, precision 1)``. ``max_points`` thins as in
    :func:`roc_curve` (the end point is always kept). Recall is ``nan`` without positives.
    """
    _check_max_points(max_points)
    c = _curve(_pooled_keys(_prepare(prob, target, fov)))
    precision = (c.tps / (c.tps + c.fps))[::-1]
    if c.n_pos:
        recall = (c.tps / c.n_pos)[::-1]
    else:
        recall = np.full(c.tps.shape, np.nan)
    thresholds = c.thresholds[::-1]
    idx = _thin(recall, precision, None if max_points is None else max_points - 1)
    return (
        np.append(precision[idx], 1.0),
        np.append(recall[idx], 0.0),
        thresholds[idx],
    )


class BestThreshold(NamedTuple):
    """The threshold that maximises ``metric`` and the metric's value there."""

    threshold: float
    value: float


def best_threshold(
    prob: ImageInput,
    target: ImageInput,
    fov: ImageInput | None = None,
    metric: ThresholdMetric = "f1",
) -> BestThreshold:
    """Threshold maximising ``metric`` (pooled over the images), for use on a VALIDATION set.

    The threshold is a hyper-parameter: choose it on validation data, then evaluate the test
    set with it unchanged. It is never tuned on the test set (that would report an optimistic,
    unreproducible number).

    Every threshold that changes the prediction is tried at once from one sorted pass: each
    distinct score (``prob >= t``) and ``inf`` (nothing positive). Metrics: ``"f1"``, ``"iou"``
    (same optimum as f1: ``iou = f1 / (2 - f1)``), ``"accuracy"``, ``"youden"``
    (``sensitivity + specificity - 1``). Ties go to the highest threshold. Returns the
    threshold and the metric's value, which :func:`segmentation_metrics` reproduces exactly at
    that threshold on the same data.
    """
    _check_choice("metric", metric, THRESHOLD_METRICS)
    c = _curve(_pooled_keys(_prepare(prob, target, fov)))
    tp = np.concatenate(([0], c.tps)).astype(np.float64)
    fp = np.concatenate(([0], c.fps)).astype(np.float64)
    fn = c.n_pos - tp
    tn = c.n_neg - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "f1":
            values = 2 * tp / (2 * tp + fp + fn)
        elif metric == "iou":
            values = tp / (tp + fp + fn)
        elif metric == "accuracy":
            values = (tp + tn) / (c.n_pos + c.n_neg)
        else:
            values = tp / c.n_pos + tn / c.n_neg - 1
    if np.isnan(values).all():
        raise ValueError(f"metric {metric!r} is undefined on these data (one class is absent)")
    k = int(np.nanargmax(values))
    threshold = float(np.inf) if k == 0 else float(c.thresholds[k - 1])
    return BestThreshold(threshold, float(values[k]))


# -- ISBI 2012 ---------------------------------------------------------------------------------
def pixel_error(pred: ImageInput, target: ImageInput, *, threshold: float = 0.5) -> float:
    """Fraction of pixels whose binarised prediction differs from ``target`` (ISBI 2012).

    ``pred`` is binary or a probability map (predicted positive where ``pred >= threshold``)
    and ``target`` binary, *of the same polarity* (both membrane, the project's convention, or
    both interior). Stacks are pooled, which for equal-sized slices is the mean per slice. The
    challenge reported the minimum over thresholds; here the threshold is given.
    """
    threshold = _check_threshold(threshold)
    preds = _images(pred, "pred")
    targets = _images(target, "target")
    n = len(preds)
    if len(targets) != n:
        raise ValueError(f"target holds {len(targets)} images but pred holds {n}")
    wrong = total = 0
    for i in range(n):
        p = _check_prob(preds[i], _label("pred", i, n))
        if targets[i].shape != p.shape:
            raise ValueError(
                f"{_label('target', i, n)} has shape {targets[i].shape} but "
                f"{_label('pred', i, n)} has shape {p.shape}"
            )
        t = _check_binary(targets[i], _label("target", i, n))
        wrong += int(np.count_nonzero((p >= threshold) != t))
        total += t.size
    return wrong / total


def _components(p: np.ndarray, means: str, threshold: float, connectivity: int) -> np.ndarray:
    """Segments of a checked probability map: components of the interior, boundary = 0."""
    positive = p >= threshold
    interior = ~positive if means == "membrane" else positive
    return _label_components(interior, connectivity=connectivity).astype(np.int64, copy=False)


def _segments_2d(
    x: np.ndarray, name: str, means: str, threshold: float, connectivity: int
) -> np.ndarray:
    """A label image as is (integer dtype), or the segments of a binary / probability map."""
    if np.issubdtype(x.dtype, np.integer):  # bool is not an integer dtype
        if x.size and x.min() < 0:
            raise ValueError(f"{name}: label images must be non-negative (0 = boundary)")
        return x.astype(np.int64, copy=False)
    return _components(_check_prob(x, name), means, threshold, connectivity)


def segment_labels(
    binary_or_prob: ImageInput,
    *,
    means: Polarity = "membrane",
    threshold: float = 0.5,
    connectivity: int = 1,
) -> np.ndarray | list[np.ndarray]:
    """Cell segments of a binary or probability map: connected components of the interior.

    ``means`` says what True / high probability stands for (``"membrane"``, the project's
    convention, or ``"interior"``); the map is binarised with ``>= threshold`` (integer maps
    must hold only 0 and 1). Components use ``connectivity=1`` (4-neighbourhood, as the ISBI
    2012 script) or 2 (8-neighbourhood). Boundary pixels get label 0, segments ``1..K``. An
    ``(N, H, W)`` stack is labelled slice by slice and returned as ``(N, H, W)``; a sequence
    gives a list.
    """
    _check_choice("means", means, POLARITIES)
    _check_connectivity(connectivity)
    threshold = _check_threshold(threshold)
    items = _images(binary_or_prob, "binary_or_prob")
    n = len(items)
    out = [
        _components(_check_prob(a, _label("binary_or_prob", i, n)), means, threshold, connectivity)
        for i, a in enumerate(items)
    ]
    if isinstance(binary_or_prob, np.ndarray):
        return out[0] if binary_or_prob.ndim == 2 else np.stack(out)
    return out


def _check_connectivity(connectivity: int) -> None:
    if connectivity not in (1, 2):
        raise ValueError(f"connectivity must be 1 or 2, got {connectivity!r}")


def _restricted_pairs(
    pred: ImageInput,
    target: ImageInput,
    means: str,
    threshold: float,
    connectivity: int,
    pred_boundary: str,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per slice: (true, predicted) segment ids on the ground-truth foreground, consecutive."""
    _check_choice("means", means, POLARITIES)
    _check_choice("pred_boundary", pred_boundary, BOUNDARY_MODES)
    _check_connectivity(connectivity)
    threshold = _check_threshold(threshold)
    preds = _images(pred, "pred")
    targets = _images(target, "target")
    n = len(preds)
    if len(targets) != n:
        raise ValueError(f"target holds {len(targets)} images but pred holds {n}")
    out = []
    for i in range(n):
        p_name, t_name = _label("pred", i, n), _label("target", i, n)
        if targets[i].shape != preds[i].shape:
            raise ValueError(
                f"{t_name} has shape {targets[i].shape} but {p_name} has shape {preds[i].shape}"
            )
        p_lab = _segments_2d(preds[i], p_name, means, threshold, connectivity)
        t_lab = _segments_2d(targets[i], t_name, means, threshold, connectivity)
        foreground = t_lab != 0
        if not foreground.any():
            raise ValueError(f"{t_name} has no segment pixel (it is all boundary)")
        t = t_lab[foreground]
        p = p_lab[foreground]
        if pred_boundary == "singletons":
            boundary = p == 0
            k = int(np.count_nonzero(boundary))
            if k:
                p = p.copy()
                p[boundary] = p.max() + 1 + np.arange(k)
        # Consecutive ids keep the contingency table small whatever the label values are.
        t = np.unique(t, return_inverse=True)[1].ravel()
        p = np.unique(p, return_inverse=True)[1].ravel()
        out.append((t, p))
    return out


class RandScores(NamedTuple):
    """Foreground-restricted Rand error ``1 - V_rand`` with its precision and recall."""

    error: float
    precision: float
    recall: float


def _rand_from_pairs(t: np.ndarray, p: np.ndarray, self_pairs: bool) -> RandScores:
    table = contingency_table(t, p, sparse_type="array")
    n = float(t.size)
    sum_ab = float(np.dot(table.data, table.data))
    a = np.asarray(table.sum(axis=1), dtype=np.float64).ravel()  # ground-truth segment sizes
    b = np.asarray(table.sum(axis=0), dtype=np.float64).ravel()  # predicted segment sizes
    sum_a, sum_b = float(a @ a), float(b @ b)
    if not self_pairs:
        sum_ab, sum_a, sum_b = sum_ab - n, sum_a - n, sum_b - n
    precision = _ratio(sum_ab, sum_b)
    recall = _ratio(sum_ab, sum_a)
    f_score = _ratio(2 * sum_ab, sum_a + sum_b)
    return RandScores(1.0 - f_score, precision, recall)


def rand_scores(
    pred: ImageInput,
    target: ImageInput,
    *,
    means: Polarity = "membrane",
    threshold: float = 0.5,
    connectivity: int = 1,
    pred_boundary: BoundaryMode = "singletons",
    self_pairs: bool = True,
) -> RandScores:
    """Foreground-restricted Rand error and its precision / recall (ISBI 2012, module docstring).

    Args:
        pred: predicted label image (integer; 0 = boundary) or binary / probability map.
        target: ground-truth label image (integer; 0 = boundary) or binary map.
        means: what True / high probability means in binary or probability inputs:
            ``"membrane"`` (default, the project's convention) or ``"interior"``.
        threshold: binarisation threshold of probability maps (positive where ``>=``).
        connectivity: 1 (4-neighbourhood, the challenge's) or 2, for the components.
        pred_boundary: ``"singletons"`` (the challenge's handling of predicted boundary pixels)
            or ``"segment"`` (one segment, as ``skimage.metrics.adapted_rand_error``).
        self_pairs: count a pixel paired with itself (the challenge's N^2 normalisation) or
            only distinct pairs (scikit-image).

    Stacks are scored per slice; the three values are averaged over slices.
    """
    pairs = _restricted_pairs(pred, target, means, threshold, connectivity, pred_boundary)
    scores = [_rand_from_pairs(t, p, self_pairs) for t, p in pairs]
    return RandScores(*(float(np.mean(v)) for v in zip(*scores, strict=True)))


def rand_error(
    pred: ImageInput,
    target: ImageInput,
    *,
    means: Polarity = "membrane",
    threshold: float = 0.5,
    connectivity: int = 1,
    pred_boundary: BoundaryMode = "singletons",
    self_pairs: bool = True,
) -> float:
    """``1 - V_rand``, the ISBI 2012 foreground-restricted Rand error (see :func:`rand_scores`).

    0 for identical segmentations; positive for any split or merge.
    """
    return rand_scores(
        pred, target, means=means, threshold=threshold, connectivity=connectivity,
        pred_boundary=pred_boundary, self_pairs=self_pairs,
    ).error


class VariationOfInformation(NamedTuple):
    """``VI = split + merge`` in bits: ``split = H(pred | true)``, ``merge = H(true | pred)``."""

    split: float
    merge: float

    @property
    def total(self) -> float:
        return self.split + self.merge


def variation_of_information(
    pred: ImageInput,
    target: ImageInput,
    *,
    means: Polarity = "membrane",
    threshold: float = 0.5,
    connectivity: int = 1,
    pred_boundary: BoundaryMode = "singletons",
) -> VariationOfInformation:
    """Variation of information, foreground-restricted like :func:`rand_error` (same arguments).

    Computed by ``skimage.metrics.variation_of_information(true, pred)`` on the ground-truth
    foreground pixels, after the predicted boundary pixels there have been made singletons
    (default) or one segment. ``split`` measures over-segmentation, ``merge``
    under-segmentation; both 0 for identical segmentations. Stacks: mean over slices.
    """
    pairs = _restricted_pairs(pred, target, means, threshold, connectivity, pred_boundary)
    values = np.array([_skimage_vi(t, p) for t, p in pairs], dtype=np.float64)
    split, merge = values.mean(axis=0)
    return VariationOfInformation(float(split), float(merge))
