"""The ISBI 2012 challenge's final leaderboard metrics: V_rand and V_info after border thinning.

NumPy, SciPy and scikit-image only. Sources read (and followed) for this module:

* Arganda-Carreras et al. 2015, "Crowdsourcing the creation of image segmentation algorithms
  for connectomics", Frontiers in Neuroanatomy 9:142, doi:10.3389/fnana.2015.00142, section 2
  (the foreground-restricted Rand and information-theoretic scores, their split and merge
  parts, and the thinning of the proposed borders to one pixel).
* The challenge's evaluation script, "Segmentation evaluation after border thinning - Script"
  (ImageJ wiki, https://imagej.net/Segmentation_evaluation_after_border_thinning_-_Script;
  source ``imagej/imagej.github.io``: ``Segmentation_evaluation_after_border_thinning_-_Script.mw``,
  version of January 12, 2016). It calls, in ``fiji/Trainable_Segmentation``
  (``src/main/java/trainableSegmentation/``): ``metrics/RandError.java``
  ``getMaximalVRandAfterThinning(0.0, 1.0, 0.1, true)`` and ``metrics/VariationOfInformation.java``
  ``getMaximalVInfoAfterThinning(0.0, 1.0, 0.1)``, with ``utils/WatershedTransform2D.java`` and
  ``metrics/ClassificationStatistics.java``.

What the Java code does, and how this module follows it
--------------------------------------------------------
The challenge's files have the opposite polarity to this project: labels and proposals are
*interior* maps (high = cell). This module keeps the project's convention (``prob`` is the
membrane probability, ``target`` the boolean membrane mask, see :mod:`unet_core.metrics`).

* Binarisation. The Java code makes the ground truth ``label > t`` (interior) and the proposal
  ``proposal > t ? 0 : 255`` (borders white). With ``proposal = 1 - prob`` that is: membrane
  where ``prob >= 1 - t``. So the project's rule, membrane where ``prob >= threshold``, *is*
  the script's ``>`` on interior maps, with ``threshold = 1 - t``; the grid 0.0, 0.1, ..., 1.0
  maps onto itself. The ground truth does not depend on the threshold (it is binary).
* Ground-truth segments: 4-connected components of the interior (``Utils.connectedComponents(..,
  4)``); ground-truth boundary pixels (label 0) are left out of every sum ("foreground
  restricted").
* Thinning (the part a morphological skeleton gets wrong): the binarised proposal is *not*
  skeletonised. ``WatershedTransform2D(binaryProposal, 4)`` floods the two-level image (interior
  0, border 255) with 4-connectivity (Vincent and Soille 1991): every 4-connected interior
  component is a catchment basin with its own label, the border pixels are given to the basin
  that reaches them first (breadth-first order, i.e. geodesic distance inside the border), and
  only the pixels where two basins meet stay 0 (the watershed line, about one pixel wide).
  Basins never merge, so thinning cannot merge cells; a cell that the proposal closes keeps its
  label. :func:`thinned_segments` does the same with ``skimage.segmentation.watershed(border,
  markers=4-connected interior components, connectivity=1, watershed_line=True)``, then makes
  line any piece of a basin that the lines cut off from its marker (scikit-image can label
  such pieces; the Java flooding, which labels a pixel only from a labelled neighbour, leaves
  them line), so every segment is 4-connected. A proposal that is all border is one basin
  covering the image (what the Java flooding gives).
* Scores (``getForegroundRestrictedRandIndexStatsN2``, ``foregroundRestrictedFscore``): from the
  overlap counts ``c_ij`` of ground-truth segment ``i`` and thinned proposal segment ``j`` on the
  ``n`` ground-truth foreground pixels, with the ``n0`` of those on a watershed line each its own
  singleton segment. With ``a_i``, ``b_j`` the row and column sums:

  - ``V_rand_merge = (sum c_ij^2 + n0) / (sum b_j^2 + n0)`` (the Java "precision"; a false
    merge makes a ``b_j`` large and lowers it), ``V_rand_split = (sum c_ij^2 + n0) /
    sum a_i^2`` (the "recall"; a false split lowers it), ``V_rand`` their harmonic mean (0 when
    both are 0). These are ``V^Rand_merge`` and ``V^Rand_split`` of the paper.
  - ``V_info_merge = I(S;T) / H(T) = 1 - H(T|S) / H(T)`` and ``V_info_split = I(S;T) / H(S)
    = 1 - H(S|T) / H(S)`` (T = ground truth, S = thinned proposal, singletons included in
    ``H(S)``, natural logarithms; the Java "precision" and "recall"), ``V_info`` their harmonic
    mean. When ``H(T) = 0`` (one ground-truth segment) or ``H(S) = 0`` (one proposed segment)
    ``V_info`` is 0, as in the Java code, even for a perfect one-segment match. The parts take
    their limits there (1 for the part whose entropy is 0, so a proposal that is one segment has
    merge 0 and split 1); the Java code sets them the other way round (``H(T) = 0``: precision
    0, recall 1; ``H(S) = 0``: precision 1, recall 0), which changes no F-score.
* Stacks: every slice is scored in 2-D and the per-slice scores are averaged at each threshold
  (``perSliceAverage = true``); the best threshold is then chosen for the *whole stack* (one
  threshold for all slices), separately for ``V_rand`` and for ``V_info``, as the script reports
  the two maxima independently. Ties go to the highest membrane threshold: the script scans the
  interior thresholds upwards and keeps the first strict maximum.

Remaining differences from the challenge's code
-----------------------------------------------
* The ``V_info`` parts when one entropy is 0 (above).
* Tie order inside the flooding. The Java code floods the border in its own FIFO order
  (pixels listed column by column, neighbours left, up, right, down) and marks a pixel as line
  when it sees two labels, or only line pixels, among its already processed neighbours;
  scikit-image floods with a heap ordered by (level, age) and marks a pixel as line when an
  already labelled neighbour has another label. Both give geodesic influence zones and the same
  basins; they can differ in where an equidistant pixel goes and in line pixels next to a
  line (the Java code can leave short two-pixel-thick "plateau" dams). Measured against a
  line-by-line Python port of ``WatershedTransform2D`` on ISBI 2012 training slices 25-29
  with synthetic probability maps (blurred ground truth plus smooth noise), 11 thresholds each:
  ``|delta V_rand| <= 1.0e-3`` (at most 1.1e-4 at each slice's best threshold),
  ``|delta V_info| <= 4e-4``, and the same best threshold on every slice.
* Threshold grid: the Java loop ``for (th = 0; th <= 1; th += 0.1)`` accumulates rounding
  (0.30000000000000004, ..., 0.9999999999999999), and it compares ``float`` interior values
  ``1 - prob``. So a probability lying exactly on a grid point can binarise differently, and
  the script's last point makes membrane every pixel whose interior value is below 1 (about
  ``prob > 0``), where ``threshold = 0.0`` here makes every pixel membrane (one segment). Only
  that grid point's score changes, and only for maps with probabilities of exactly 0; a binary
  map reaches its score at every other threshold anyway.
* ``V_info``: the Java code divides 0 by 0 (``nan``) when ``I = 0`` with both entropies
  positive; here that score is 0 (the script's maximum skips ``nan`` anyway). Empty
  ground-truth foreground (the Java code would divide by ``n = 0``) is an error here.
* Split and merge parts of a stack are the per-slice means (the Java ``ClassificationStatistics``
  of a stack pools the pair counts of all slices for its precision and recall, and averages
  only the F-score).

Explained in chapter 7 (ISBI 2012 membranes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from skimage.measure import label as _label_components
from skimage.segmentation import watershed

ImageInput = np.ndarray | Sequence[np.ndarray]  # as in unet_core.metrics
#: The script's thresholds: 0.0, 0.1, ..., 1.0 (membrane where ``prob >= threshold``).
CHALLENGE_THRESHOLDS: tuple[float, ...] = tuple(k / 10 for k in range(11))
SCORE_KEYS: tuple[str, ...] = (
    "v_rand", "v_rand_split", "v_rand_merge", "v_info", "v_info_split", "v_info_merge",
)


# -- input handling ----------------------------------------------------------------------------
# unet_core.metrics re-exports this module, so this module cannot use metrics' private checks
# without an import cycle; these give the same messages.
def _as_slices(x: ImageInput, name: str) -> list[np.ndarray]:
    """``(H, W)``, ``(N, H, W)`` or a sequence of ``(H, W)`` arrays, as a list of ``(H, W)``."""
    if isinstance(x, np.ndarray) or not isinstance(x, Sequence):
        stack = np.asarray(x)
        if stack.ndim == 2 or (stack.ndim == 3 and len(stack)):
            return [stack] if stack.ndim == 2 else list(stack)
        raise ValueError(f"{name} must have shape (H, W) or (N, H, W), got {stack.shape}")
    slices = [np.asarray(a) for a in x]
    if not slices or any(a.ndim != 2 for a in slices):
        raise ValueError(f"{name} must be a non-empty sequence of (H, W) arrays")
    return slices


def _probabilities(p: np.ndarray, name: str) -> np.ndarray:
    """Numbers in [0, 1] (booleans allowed); raises ValueError naming ``name``."""
    if p.dtype == bool:
        return p
    if p.dtype.kind not in "iuf" or (p.size and not (p.min() >= 0 and p.max() <= 1)):
        found = f"values in [{p.min()}, {p.max()}]" if p.dtype.kind in "iuf" else p.dtype
        raise ValueError(f"{name} must hold probabilities in [0, 1] (no nan), found {found}")
    return p


def _membranes(t: np.ndarray, name: str) -> np.ndarray:
    """A boolean membrane mask; numbers are accepted when all are 0 or 1."""
    if t.dtype != bool and not (t.dtype.kind in "iuf" and np.isin(t, (0, 1)).all()):
        raise ValueError(
            f"{name} must be boolean or contain only 0 and 1 (binarise 0/255 masks first)"
        )
    return t.astype(bool, copy=False)


def _slices(
    pred: ImageInput, target: ImageInput, pred_name: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Checked ``(probability, membrane)`` pairs, one per slice, both ``(H, W)``."""
    preds, targets = _as_slices(pred, pred_name), _as_slices(target, "target")
    n = len(preds)
    if len(targets) != n:
        raise ValueError(f"target holds {len(targets)} images but {pred_name} holds {n}")
    pairs = []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        p_name, t_name = (f"{pred_name}[{i}]", f"target[{i}]") if n > 1 else (pred_name, "target")
        if p.shape != t.shape:
            raise ValueError(f"{t_name} has shape {t.shape} but {p_name} has shape {p.shape}")
        pairs.append((_probabilities(p, p_name), _membranes(t, t_name)))
    return pairs


def _check_unit(name: str, value: float) -> float:
    """A threshold in [0, 1]; raises ValueError naming ``name``."""
    v = float(value)
    if not 0.0 <= v <= 1.0:  # also rejects nan
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


# -- thinning ----------------------------------------------------------------------------------
def thinned_segments(membrane: np.ndarray) -> np.ndarray:
    """Segments of a binary membrane map after the challenge's border thinning, ``(H, W)`` int.

    The 4-connected components of the interior (``~membrane``) are the markers of a watershed
    flooding of the border with 4-connectivity (``WatershedTransform2D(.., 4)`` in the
    challenge's code): every border pixel joins the nearest component (geodesic distance inside
    the border) and the pixels where two components meet stay 0, a line about one pixel wide.
    Components are never merged. An all-border map is one segment (label 1).
    """
    membrane = np.asarray(membrane, dtype=bool)
    markers = _label_components(~membrane, connectivity=1)
    if not markers.any():
        return np.ones(membrane.shape, dtype=np.int64)
    segments = watershed(membrane.view(np.uint8), markers, connectivity=1, watershed_line=True)
    # scikit-image lets a line pixel pass its basin's label on, which can leave pieces of a
    # basin cut off by lines; the Java flooding labels a pixel only from a labelled neighbour
    # and makes such pieces line. Do the same: keep the piece of each basin with its marker.
    pieces = _label_components(segments > 0, connectivity=1)  # basins never touch: one each
    with_marker = np.zeros(pieces.max() + 1, dtype=bool)
    with_marker[pieces[markers > 0]] = True
    segments[~with_marker[pieces]] = 0
    return segments.astype(np.int64, copy=False)


# -- scores ------------------------------------------------------------------------------------
def _entropy(counts: np.ndarray, n: int) -> float:
    """``-sum (c/n) ln(c/n)`` over the non-zero counts, exactly rounded (order-independent)."""
    x = counts[counts > 0] / n
    return -math.fsum((x * np.log(x)).tolist())


def _f_score(merge: float, split: float) -> float:
    return 2.0 * merge * split / (merge + split) if merge + split > 0 else 0.0


def _slice_scores(true_ids: np.ndarray, pred_ids: np.ndarray) -> dict[str, float]:
    """Scores of one slice from its foreground pixels' segment ids (module docstring).

    ``true_ids``: ``(n,)`` ground-truth segment of each foreground pixel, ``0..K-1``;
    ``pred_ids``: ``(n,)`` thinned proposal segment there, 0 = on a watershed line (singleton).
    """
    n = true_ids.size
    on_line = pred_ids == 0
    n0 = int(np.count_nonzero(on_line))
    t, p = true_ids[~on_line], pred_ids[~on_line]
    overlap = np.unique(t * (int(p.max(initial=0)) + 1) + p, return_counts=True)[1]
    a = np.bincount(true_ids).astype(np.float64)
    b = np.bincount(p).astype(np.float64)
    c = overlap.astype(np.float64)
    sum_ab = float(c @ c) + n0
    rand_merge, rand_split = sum_ab / (float(b @ b) + n0), sum_ab / float(a @ a)
    singletons = n0 / n * math.log(n)
    h_true = _entropy(a, n)
    h_pred = _entropy(b, n) + singletons
    mutual = max(h_true + h_pred - (_entropy(c, n) + singletons), 0.0)
    # 1 - H(T|S) / H(T) and 1 - H(S|T) / H(S); an entropy of 0 leaves nothing to merge (split).
    info_merge = mutual / h_true if h_true > 0 else 1.0
    info_split = mutual / h_pred if h_pred > 0 else 1.0
    v_info = _f_score(info_merge, info_split) if h_true > 0 and h_pred > 0 else 0.0
    return {
        "v_rand": _f_score(rand_merge, rand_split), "v_rand_split": rand_split,
        "v_rand_merge": rand_merge, "v_info": v_info,
        "v_info_split": info_split, "v_info_merge": info_merge,
    }


def _scores_at(
    slices: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    threshold: float,
    cache: dict[tuple[int, bytes], dict[str, float]],
) -> list[dict[str, float]]:
    """Per-slice scores at one threshold; a binarisation seen before is not scored again."""
    out = []
    for i, (prob, true_ids, foreground) in enumerate(slices):
        membrane = prob >= threshold
        key = (i, np.packbits(membrane).tobytes())
        if key not in cache:
            cache[key] = _slice_scores(true_ids, thinned_segments(membrane)[foreground])
        out.append(cache[key])
    return out


def challenge_scores(
    prob: ImageInput,
    target: ImageInput,
    *,
    threshold: float | None = None,
    thresholds: Sequence[float] = CHALLENGE_THRESHOLDS,
) -> dict[str, Any]:
    """V_rand and V_info after border thinning, as on the ISBI 2012 leaderboard (module docstring).

    Args:
        prob: membrane probability (or binary membrane map), ``(H, W)``, ``(N, H, W)`` or a
            sequence of ``(H, W)`` slices, values in ``[0, 1]``; membrane where
            ``prob >= threshold``.
        target: binary membrane ground truth of the same shape(s).
        threshold: score at this threshold only; ``None`` (default) takes the best over
            ``thresholds``, as the challenge's script does.
        thresholds: the grid for ``threshold=None``; default 0.0, 0.1, ..., 1.0 (the script's).

    Returns a JSON-serialisable dict of floats: ``v_rand``, ``v_rand_split``, ``v_rand_merge``,
    ``v_info``, ``v_info_split``, ``v_info_merge`` (means over slices; a false merge lowers the
    ``*_merge`` parts, a false split the ``*_split`` parts), ``threshold`` and ``n_slices``. For
    the best over thresholds, ``threshold`` is the one that maximises the stack's mean
    ``v_rand`` (the rand parts are those at it) and ``threshold_info`` the one that maximises
    ``v_info`` (the info parts are those at it); ties go to the highest threshold, one threshold
    for the whole stack. ``curve`` lists, for every threshold in increasing order, a dict with
    the threshold and the six scores (to choose a threshold on validation slices and apply it
    unchanged to test slices).
    """
    if threshold is not None:
        grid = [_check_unit("threshold", threshold)]
    else:
        grid = sorted({_check_unit("thresholds", t) for t in thresholds})
        if not grid:
            raise ValueError("thresholds is empty")
    pairs = _slices(prob, target, "prob")
    slices = []
    for i, (p, t) in enumerate(pairs):
        true_lab = _label_components(~t, connectivity=1)
        foreground = true_lab != 0
        if not foreground.any():
            name = f"target[{i}]" if len(pairs) > 1 else "target"
            raise ValueError(f"{name} has no cell pixel (it is all membrane)")
        slices.append((p, true_lab[foreground] - 1, foreground))
    cache: dict[tuple[int, bytes], dict[str, float]] = {}
    curve = []
    for th in grid:
        per_slice = _scores_at(slices, th, cache)
        curve.append({"threshold": th} | {k: float(np.mean([s[k] for s in per_slice]))
                                          for k in SCORE_KEYS})
    if threshold is not None:
        return curve[0] | {"n_slices": len(slices)}
    # Highest threshold first, so that max() keeps it on ties (the script's first strict maximum).
    best_rand = max(reversed(curve), key=lambda r: r["v_rand"])
    best_info = max(reversed(curve), key=lambda r: r["v_info"])
    return {
        "v_rand": best_rand["v_rand"], "v_rand_split": best_rand["v_rand_split"],
        "v_rand_merge": best_rand["v_rand_merge"], "threshold": best_rand["threshold"],
        "v_info": best_info["v_info"], "v_info_split": best_info["v_info_split"],
        "v_info_merge": best_info["v_info_merge"], "threshold_info": best_info["threshold"],
        "n_slices": len(slices), "curve": curve,
    }
