"""Evaluation metrics: DRIVE pixel metrics against scikit-learn, FOV handling, ISBI 2012 metrics."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from skimage.metrics import adapted_rand_error
from skimage.metrics import variation_of_information as skimage_vi
from sklearn import metrics as skm

from unet_core.metrics import (
    ConfusionCounts,
    SegmentationMetrics,
    best_threshold,
    confusion_counts,
    evaluate_set,
    pixel_error,
    pr_curve,
    rand_error,
    rand_scores,
    roc_curve,
    segment_labels,
    segmentation_metrics,
    variation_of_information,
)


def _random_case(seed, shape=(3, 17, 23), levels=12, prevalence=0.3, with_fov=True):
    """Probabilities on a coarse grid (many ties), correlated with a random target."""
    rng = np.random.default_rng(seed)
    target = rng.random(shape) < prevalence
    noisy = np.clip(0.35 * target + 0.65 * rng.random(shape), 0, 1)
    prob = np.round(noisy * (levels - 1)) / (levels - 1)
    fov = rng.random(shape) < 0.8 if with_fov else None
    return prob, target, fov


def _sklearn_metrics(prob, target, fov, threshold):
    if fov is None:
        fov = np.ones(prob.shape, dtype=bool)
    s, y = prob[fov], target[fov]
    pred = s >= threshold
    return {
        "auc_roc": skm.roc_auc_score(y, s),
        "auc_pr": skm.average_precision_score(y, s),
        "f1": skm.f1_score(y, pred),
        "iou": skm.jaccard_score(y, pred),
        "accuracy": skm.accuracy_score(y, pred),
        "sensitivity": skm.recall_score(y, pred),
        "specificity": skm.recall_score(y, pred, pos_label=0),
        "precision": skm.precision_score(y, pred),
    }


# -- pixel metrics against scikit-learn --------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [3, 12, 1000])
@pytest.mark.parametrize("prevalence", [0.1, 0.5])
@pytest.mark.parametrize("threshold", [0.3, 0.5])
def test_metrics_match_sklearn(seed, levels, prevalence, threshold):
    prob, target, fov = _random_case(seed, levels=levels, prevalence=prevalence)
    got = segmentation_metrics(prob, target, fov, threshold=threshold).as_dict()
    expected = _sklearn_metrics(prob, target, fov, threshold)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtypes_and_negative_zero(dtype):
    prob, target, fov = _random_case(7, levels=50)
    prob = prob.astype(dtype)
    prob[prob == 0] = -0.0  # -0.0 is a valid probability and equals 0.0
    got = segmentation_metrics(prob, target, fov).as_dict()
    expected = _sklearn_metrics(prob.astype(np.float64), target, fov, 0.5)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-12), name


def test_iou_is_the_jaccard_index_not_accuracy():
    prob, target, fov = _random_case(3, prevalence=0.1)
    m = segmentation_metrics(prob, target, fov)
    assert m.iou == pytest.approx(m.f1 / (2 - m.f1))
    assert abs(m.iou - m.accuracy) > 0.3  # the mislabelled "Jaccard" would be near accuracy


def test_constructed_counts_give_exact_fractions():
    # TP = 3, FP = 1, FN = 2, TN = 10 in a 4x4 image.
    target = np.zeros((4, 4), dtype=bool)
    prob = np.zeros((4, 4))
    target.flat[:5] = True
    prob.flat[:3] = 0.9  # 3 true positives; pixels 3, 4 are false negatives
    prob.flat[3:5] = 0.2
    prob.flat[5] = 0.7  # one false positive
    prob.flat[6:] = 0.1
    assert confusion_counts(prob, target) == ConfusionCounts(tp=3, fp=1, fn=2, tn=10)
    m = segmentation_metrics(prob, target)
    assert m.f1 == 6 / 9
    assert m.iou == 3 / 6
    assert m.accuracy == 13 / 16
    assert m.sensitivity == 3 / 5
    assert m.specificity == 10 / 11
    assert m.precision == 3 / 4
    # Ranks: positives 0.9 x3, 0.2 x2; negatives 0.7, 0.1 x10.
    # Pairs won: 3 * 11 + 2 * 10 = 53 of 5 * 11 = 55.
    assert m.auc_roc == pytest.approx(53 / 55, abs=1e-15)


def test_perfect_prediction_gives_ones():
    prob, target, fov = _random_case(1)
    m = segmentation_metrics(target.astype(float), target, fov)
    assert all(v == 1.0 for v in m.as_dict().values())
    # Any strictly separating scores give AUCs of 1, whatever the threshold metrics are.
    scores = np.where(target, 0.6 + 0.4 * np.random.default_rng(0).random(target.shape), 0.55)
    m = segmentation_metrics(scores, target, fov, threshold=0.9)
    assert m.auc_roc == 1.0 and m.auc_pr == 1.0


def test_undefined_values_are_nan():
    prob = np.random.default_rng(0).random((5, 5))
    m = segmentation_metrics(prob, np.zeros((5, 5), dtype=bool))
    assert math.isnan(m.auc_roc) and math.isnan(m.auc_pr) and math.isnan(m.sensitivity)
    assert m.specificity == pytest.approx(np.mean(prob < 0.5))


# -- the field of view -------------------------------------------------------------------------
def test_pixels_outside_the_fov_change_nothing():
    prob, target, fov = _random_case(2)
    ref = segmentation_metrics(prob, target, fov)
    rng = np.random.default_rng(5)
    for _ in range(3):
        p2, t2 = prob.copy(), target.copy()
        p2[~fov] = rng.random(np.count_nonzero(~fov))
        t2[~fov] = ~t2[~fov]
        assert segmentation_metrics(p2, t2, fov) == ref
        assert best_threshold(p2, t2, fov) == best_threshold(prob, target, fov)
    # ... and one pixel inside it does.
    p3 = prob.copy()
    i = np.flatnonzero(fov & target)[0]
    p3.flat[i] = 0.0
    assert segmentation_metrics(p3, target, fov) != ref
    # Equivalent to evaluating the FOV pixels alone.
    alone = segmentation_metrics(prob[fov][None], target[fov][None])
    assert alone == ref


# -- sets --------------------------------------------------------------------------------------
def test_evaluate_set_pooled_mean_and_per_image():
    prob, target, fov = _random_case(4, shape=(4, 11, 13))
    ev = evaluate_set(prob, target, fov)
    assert len(ev.per_image) == 4
    assert ev.pooled == segmentation_metrics(prob, target, fov)
    expected = _sklearn_metrics(prob, target, fov, 0.5)
    for name, value in expected.items():
        assert getattr(ev.pooled, name) == pytest.approx(value, rel=1e-12)
    for i, m in enumerate(ev.per_image):
        assert m == segmentation_metrics(prob[i], target[i], fov[i])
    for name in expected:
        values = [getattr(m, name) for m in ev.per_image]
        assert getattr(ev.mean, name) == pytest.approx(np.mean(values))
    assert ev.pooled.auc_roc != pytest.approx(ev.mean.auc_roc)  # pooled is not the mean


def test_sets_of_different_sizes_as_sequences():
    a = _random_case(5, shape=(1, 9, 14))
    b = _random_case(6, shape=(1, 20, 7))
    probs, targets, fovs = ([x[0] for x in c] for c in zip(a, b, strict=True))
    ev = evaluate_set(probs, targets, fovs)
    pooled_p = np.concatenate([p[f] for p, f in zip(probs, fovs, strict=True)])[None]
    pooled_t = np.concatenate([t[f] for t, f in zip(targets, fovs, strict=True)])[None]
    assert ev.pooled == segmentation_metrics(pooled_p, pooled_t)
    assert ev.per_image[1] == segmentation_metrics(probs[1], targets[1], fovs[1])
    assert isinstance(ev.mean, SegmentationMetrics)


# -- curves and thresholds ---------------------------------------------------------------------
@pytest.mark.parametrize("levels", [4, 30, 10_000])
def test_curves_match_sklearn(levels):
    prob, target, fov = _random_case(8, levels=levels)
    s, y = prob[fov], target[fov]
    fpr, tpr, thr = roc_curve(prob, target, fov)
    e_fpr, e_tpr, e_thr = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, e_fpr, rtol=1e-12)
    np.testing.assert_allclose(tpr, e_tpr, rtol=1e-12)
    np.testing.assert_array_equal(thr, e_thr)
    precision, recall, thr = pr_curve(prob, target, fov)
    e_p, e_r, e_thr = skm.precision_recall_curve(y, s)
    np.testing.assert_allclose(precision, e_p, rtol=1e-12)
    np.testing.assert_allclose(recall, e_r, rtol=1e-12)
    np.testing.assert_array_equal(thr, e_thr)


def test_curve_thinning_keeps_the_ends_and_is_a_subset():
    prob, target, fov = _random_case(9, shape=(2, 40, 40), levels=100_000)
    full = roc_curve(prob, target, fov)
    thin = roc_curve(prob, target, fov, max_points=50)
    assert 3 <= thin[0].size <= 50 < full[0].size
    assert (thin[0][0], thin[1][0]) == (0.0, 0.0) and (thin[0][-1], thin[1][-1]) == (1.0, 1.0)
    assert np.isin(thin[2], full[2]).all()
    assert np.all(np.diff(thin[2]) < 0)
    p_full = pr_curve(prob, target, fov)
    p_thin = pr_curve(prob, target, fov, max_points=40)
    assert p_thin[0].size <= 40 and p_thin[0].size == p_thin[2].size + 1
    assert (p_thin[0][-1], p_thin[1][-1]) == (1.0, 0.0)
    assert p_thin[1][0] == p_full[1][0] == 1.0
    with pytest.raises(ValueError, match="max_points"):
        roc_curve(prob, target, fov, max_points=1)


@pytest.mark.parametrize("metric", ["f1", "iou", "accuracy", "youden"])
@pytest.mark.parametrize("seed", [0, 1])
def test_best_threshold_is_the_brute_force_optimum(metric, seed):
    prob, target, fov = _random_case(seed, levels=25, prevalence=0.2)
    best = best_threshold(prob, target, fov, metric=metric)
    s, y = prob[fov], target[fov]

    def score(t):
        pred = s >= t
        if metric == "f1":
            return skm.f1_score(y, pred, zero_division=0.0)
        if metric == "iou":
            return skm.jaccard_score(y, pred, zero_division=0.0)
        if metric == "accuracy":
            return skm.accuracy_score(y, pred)
        return skm.recall_score(y, pred) + skm.recall_score(y, pred, pos_label=0) - 1

    candidates = [np.inf, *np.unique(s)]
    values = [score(t) for t in candidates]
    assert best.value == pytest.approx(max(values), rel=1e-12)
    assert score(best.threshold) == pytest.approx(best.value, rel=1e-12)
    if metric in ("f1", "iou", "accuracy"):
        m = segmentation_metrics(prob, target, fov, threshold=best.threshold)
        assert getattr(m, metric) == pytest.approx(best.value, rel=1e-12)
    with pytest.raises(ValueError, match="metric"):
        best_threshold(prob, target, fov, metric="auc")


def test_best_threshold_can_predict_nothing():
    prob = np.array([[0.9, 0.8, 0.7, 0.1]])
    target = np.array([[False, False, False, True]])
    assert best_threshold(prob, target, metric="accuracy") == (np.inf, 0.75)


# -- validation --------------------------------------------------------------------------------
def test_input_validation_names_the_argument():
    prob, target, fov = _random_case(0, shape=(2, 5, 6))
    with pytest.raises(ValueError, match="target"):
        segmentation_metrics(prob, target[:, :4])
    with pytest.raises(ValueError, match="fov"):
        segmentation_metrics(prob, target, fov[:, :, :5])
    with pytest.raises(ValueError, match="prob"):
        segmentation_metrics(prob * 1.5, target)
    with pytest.raises(ValueError, match="prob"):
        segmentation_metrics(prob - 0.5, target)
    bad = prob.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"prob\[0\]"):
        evaluate_set(bad, target)
    with pytest.raises(ValueError, match="fov.*empty"):
        segmentation_metrics(prob, target, np.zeros_like(fov))
    with pytest.raises(ValueError, match=r"fov\[1\].*empty"):
        evaluate_set(prob, target, np.stack([fov[0], np.zeros_like(fov[1])]))
    with pytest.raises(ValueError, match="target"):
        segmentation_metrics(prob, target.astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="fov"):
        segmentation_metrics(prob, target, fov.astype(float) * 0.5)
    with pytest.raises(ValueError, match="target holds 1 images"):
        evaluate_set(prob, target[:1])
    with pytest.raises(ValueError, match="prob"):
        segmentation_metrics(prob[0, 0], target[0, 0])
    with pytest.raises(ValueError, match="threshold"):
        segmentation_metrics(prob, target, threshold=float("nan"))
    # 0/1 numbers are accepted for target and fov
    assert segmentation_metrics(prob, target.astype(np.uint8), fov.astype(float)) == (
        segmentation_metrics(prob, target, fov)
    )


# -- speed: DRIVE-sized input ------------------------------------------------------------------
@pytest.mark.slow
def test_drive_sized_set_is_fast():
    """20 images of 584 x 565 (6.6 M pixels, float32 with ties): pooled + per image."""
    rng = np.random.default_rng(0)
    shape = (20, 584, 565)
    target = rng.random(shape) < 0.12
    prob = (np.clip(0.3 * target + 0.7 * rng.random(shape), 0, 1)).astype(np.float32)
    prob = np.round(prob * 4096) / np.float32(4096)
    start = time.perf_counter()
    ev = evaluate_set(prob, target)
    elapsed = time.perf_counter() - start
    assert 0.5 < ev.pooled.auc_roc < 1
    # Typically about 1 s on a shared 2-core CPU; a loop over thresholds would take minutes.
    assert elapsed < 20, f"evaluate_set took {elapsed:.1f} s"


# -- ISBI 2012: pixel error --------------------------------------------------------------------
def test_pixel_error():
    rng = np.random.default_rng(0)
    membranes = rng.random((2, 8, 9)) < 0.3
    prob = rng.random((2, 8, 9))
    expected = np.mean((prob >= 0.5) != membranes)
    assert pixel_error(prob, membranes) == pytest.approx(expected)
    # Polarity does not matter as long as both agree.
    assert pixel_error(prob >= 0.5, membranes) == pixel_error(prob < 0.5, ~membranes)
    assert pixel_error(membranes, membranes) == 0.0
    assert pixel_error(prob, membranes) == pytest.approx(
        1 - segmentation_metrics(prob, membranes).accuracy
    )
    with pytest.raises(ValueError, match="target"):
        pixel_error(prob, membranes[:, :7])
    with pytest.raises(ValueError, match="pred"):
        pixel_error(prob + 1, membranes)


# -- ISBI 2012: segments, Rand error, VI -------------------------------------------------------
def _cells() -> np.ndarray:
    """A 24x24 ground truth: four cells separated by a 2-pixel membrane cross (label 0)."""
    labels = np.zeros((24, 24), dtype=np.int64)
    labels[:11, :11], labels[:11, 13:] = 1, 2
    labels[13:, :11], labels[13:, 13:] = 3, 4
    return labels


def _brute_force_rand(pred: np.ndarray, true: np.ndarray, self_pairs: bool) -> float:
    """1 - V_rand by enumerating pixel pairs (tiny images only): an independent definition."""
    fg = true != 0
    t, p = true[fg], pred[fg].astype(np.int64)
    singles = p == 0
    p[singles] = -1 - np.arange(np.count_nonzero(singles))  # unique: never paired
    same_t = t[:, None] == t[None, :]
    same_p = p[:, None] == p[None, :]
    if not self_pairs:
        np.fill_diagonal(same_t, False)
        np.fill_diagonal(same_p, False)
    both = np.count_nonzero(same_t & same_p)
    return 1 - 2 * both / (np.count_nonzero(same_t) + np.count_nonzero(same_p))


def test_segment_labels_conventions():
    true = _cells()
    membranes = true == 0
    seg = segment_labels(membranes)  # default: True means membrane
    assert seg.max() == 4 and np.array_equal(seg == 0, membranes)
    assert np.array_equal(segment_labels(~membranes, means="interior"), seg)
    prob = np.where(membranes, 0.8, 0.2)
    assert np.array_equal(segment_labels(prob), seg)
    # 4-connectivity (the challenge's): diagonal neighbours are separate cells.
    diag = np.array([[1, 0], [0, 1]], dtype=bool)
    assert segment_labels(diag, means="interior").max() == 2
    assert segment_labels(diag, means="interior", connectivity=2).max() == 1
    stack = segment_labels(np.stack([membranes, membranes]))
    assert stack.shape == (2, 24, 24) and np.array_equal(stack[1], seg)
    with pytest.raises(ValueError, match="means"):
        segment_labels(membranes, means="cells")


def test_rand_error_zero_for_identical_segmentations():
    true = _cells()
    assert rand_error(true, true) == 0.0
    permuted = np.array([0, 7, 3, 9, 2])[true]  # label ids do not matter
    assert rand_error(permuted, true) == 0.0
    assert rand_error(true == 0, true) == 0.0  # a binary membrane map
    assert rand_error(np.where(true == 0, 0.9, 0.1), true == 0) == 0.0  # probabilities
    assert variation_of_information(permuted, true) == (0.0, 0.0)
    assert rand_scores(true, true) == (0.0, 1.0, 1.0)


def test_merges_and_splits_are_penalised_in_the_right_direction():
    true = _cells()
    merged = np.where(true == 2, 1, true)  # cells 1 and 2 become one
    split = true.copy()
    split[:5][true[:5] == 1] = 5  # cell 1 cut in two
    m, s = rand_scores(merged, true), rand_scores(split, true)
    assert m.error > 0 and m.recall == 1.0 and m.precision < 1.0
    assert s.error > 0 and s.precision == 1.0 and s.recall < 1.0
    vi_m, vi_s = variation_of_information(merged, true), variation_of_information(split, true)
    assert vi_m.merge > 0 and vi_m.split == pytest.approx(0, abs=1e-12)
    assert vi_s.split > 0 and vi_s.merge == pytest.approx(0, abs=1e-12)
    assert vi_m.total == pytest.approx(vi_m.merge)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("self_pairs", [True, False])
def test_rand_error_matches_pair_counting_and_skimage(seed, self_pairs):
    rng = np.random.default_rng(seed)
    true = _cells()[::2, ::2]  # 12 x 12: pair enumeration stays small
    pred = rng.integers(0, 4, size=true.shape)  # random labels, some boundary (0) pixels
    got = rand_error(pred, true, self_pairs=self_pairs)
    assert got == pytest.approx(_brute_force_rand(pred, true, self_pairs), rel=1e-12)
    if not self_pairs:
        # scikit-image treats predicted 0 as one segment; give each such pixel its own label.
        unique = pred.copy()
        zeros = unique == 0
        unique[zeros] = 100 + np.arange(np.count_nonzero(zeros))
        are, prec, rec = adapted_rand_error(true, unique)
        assert got == pytest.approx(are, rel=1e-12)
        # scikit-image (0.26) returns these two in the opposite order to their definition.
        scores = rand_scores(pred, true, self_pairs=False)
        assert (scores.precision, scores.recall) == pytest.approx((rec, prec), rel=1e-12)
        # ... and with pred_boundary="segment" it is exactly scikit-image's default.
        seg = rand_error(pred, true, self_pairs=False, pred_boundary="segment")
        assert seg == pytest.approx(adapted_rand_error(true, pred)[0], rel=1e-12)


def test_predicted_boundaries_are_singletons():
    """Thick predicted membranes only split off single pixels; as one segment they merge."""
    true = _cells()
    thick = true.copy()
    thick[:, 9:15] = 0
    thick[9:15, :] = 0
    s = rand_scores(thick, true)
    assert s.precision == 1.0 and s.recall < 1.0
    assert rand_error(thick, true, pred_boundary="segment") > s.error


def test_vi_matches_skimage():
    rng = np.random.default_rng(3)
    true = _cells()
    pred = rng.integers(0, 5, size=true.shape)
    got = variation_of_information(pred, true, pred_boundary="segment")
    fg = true != 0
    split, merge = skimage_vi(true[fg], pred[fg])
    assert got == pytest.approx((split, merge), rel=1e-12)
    full = skimage_vi(true, pred, ignore_labels=(0,))  # same thing on the full images
    assert got == pytest.approx(tuple(full), rel=1e-12)


def test_stacks_average_the_slices():
    true = _cells()
    merged = np.where(true == 2, 1, true)
    stack_pred, stack_true = np.stack([true, merged]), np.stack([true, true])
    assert rand_error(stack_pred, stack_true) == pytest.approx(rand_error(merged, true) / 2)
    vi = variation_of_information(stack_pred, stack_true)
    assert vi.merge == pytest.approx(variation_of_information(merged, true).merge / 2)


def test_isbi_validation():
    true = _cells()
    with pytest.raises(ValueError, match="target"):
        rand_error(true, true[:, :5])
    with pytest.raises(ValueError, match="target.*no segment"):
        rand_error(true, np.zeros_like(true))
    with pytest.raises(ValueError, match="pred"):
        rand_error(np.full(true.shape, 2.0), true)
    with pytest.raises(ValueError, match="pred"):
        rand_error(-true, true)
    with pytest.raises(ValueError, match="pred_boundary"):
        rand_error(true, true, pred_boundary="drop")
    with pytest.raises(ValueError, match="connectivity"):
        variation_of_information(true, true, connectivity=3)
