"""ISBI 2012 challenge metrics: V_rand / V_info after border thinning and the warping error.

Synthetic membrane maps only (a grid of 22x22 cells with membranes 3-8 px wide, as ISBI), no
real data. The expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label

from unet_core import metrics
from unet_core.challenge import CHALLENGE_THRESHOLDS, challenge_scores, thinned_segments
from unet_core.warping import (
    NEIGHBOURS,
    SIMPLE_POINT,
    mismatch_kinds,
    simple_point_warp,
    warping_error,
    warping_error_and_kinds,
)

CELL = 22
N_CELLS = 5  # per side: 25 cells


def grid(seed: int) -> tuple[np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]:
    """``(H, W)`` membrane mask of 5x5 cells of 22x22 px; membrane widths 3-8 px (seeded).

    Returns the mask and the [start, stop) rows of the horizontal and columns of the vertical
    membranes.
    """
    rng = np.random.default_rng(seed)
    widths = rng.integers(3, 9, size=(2, N_CELLS + 1))
    bands = []
    for w in widths:
        starts = np.concatenate(([0], np.cumsum(w[:-1] + CELL)))
        bands.append([(int(s), int(s + k)) for s, k in zip(starts, w, strict=True)])
    shape = (bands[0][-1][1], bands[1][-1][1])
    membrane = np.zeros(shape, dtype=bool)
    for start, stop in bands[0]:
        membrane[start:stop, :] = True
    for start, stop in bands[1]:
        membrane[:, start:stop] = True
    return membrane, bands[0], bands[1]


def merged(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Ground truth and a prediction without the membrane between the first two cells.

    Also returns the length of the removed segment (its rows).
    """
    gt, rows, cols = grid(seed)
    pred = gt.copy()
    pred[rows[0][1]:rows[1][0], cols[1][0]:cols[1][1]] = False
    return gt, pred, rows[1][0] - rows[0][1]


def tunnel(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and a prediction with a 1-px tunnel through the membrane of two cells."""
    gt, rows, cols = grid(seed)
    pred = gt.copy()
    pred[rows[1][1] + CELL // 2, cols[1][0]:cols[1][1]] = False
    return gt, pred


def split(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth and a prediction with a spurious 1-px membrane across one cell."""
    gt, rows, cols = grid(seed)
    pred = gt.copy()
    pred[rows[1][1] + CELL // 2, cols[1][1]:cols[2][0]] = True
    return gt, pred


def n_cells(membrane: np.ndarray) -> int:
    return int(label(~membrane, connectivity=1).max())


# -- V_rand / V_info after thinning ------------------------------------------------------------
def _membranes_thick_diagonal_touching() -> list[np.ndarray]:
    thick, _, _ = grid(3)
    thick = ndimage.binary_dilation(thick, iterations=2)  # 7-12 px wide
    n = 48
    diagonal = np.eye(n, dtype=bool) | np.fliplr(np.eye(n, dtype=bool))  # 1-px, 8-connected
    diagonal |= ndimage.binary_dilation(np.eye(n, k=12, dtype=bool), iterations=1)
    touching = np.zeros((40, 40), dtype=bool)
    touching[:, 10:16] = touching[:, 17:25] = True  # a 1-px wide cell between two membranes
    touching[5:12, 25:33] = touching[12:20, 33:40] = True  # blocks touching at a corner
    touching[20:26, :] = True  # a junction with both
    return [thick, diagonal, touching]


MAPS = {"grid0": grid(0)[0], "grid1": grid(1)[0], "grid2": grid(2)[0]} | dict(
    zip(("thick", "diagonal", "touching"), _membranes_thick_diagonal_touching(), strict=True)
)


@pytest.mark.parametrize("name", MAPS)
@pytest.mark.parametrize("threshold", [None, 0.5, 1.0])
def test_ground_truth_against_itself_scores_exactly_one(name, threshold):
    gt = MAPS[name]
    r = challenge_scores(gt.astype(np.float32), gt, threshold=threshold)
    for key in ("v_rand", "v_rand_split", "v_rand_merge", "v_info", "v_info_split",
                "v_info_merge"):
        assert r[key] == 1.0, key
    if threshold is None:
        assert r["threshold"] == 1.0 == r["threshold_info"]  # ties: the highest threshold


def test_stacks_and_sequences_are_scored_per_slice_and_averaged():
    gt, pred, _ = merged(0)
    single = challenge_scores(pred, gt, threshold=0.5)
    stack = challenge_scores(np.stack([pred, gt]), np.stack([gt, gt]), threshold=0.5)
    assert stack["v_rand"] == pytest.approx((single["v_rand"] + 1.0) / 2)
    assert stack["n_slices"] == 2
    other, _, _ = grid(1)  # another size: a sequence of slices
    seq = challenge_scores([pred, other], [gt, other], threshold=0.5)
    assert seq["v_rand_merge"] == pytest.approx((single["v_rand_merge"] + 1.0) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dilated_membranes_keep_thinned_scores_but_not_the_plain_rand_index(seed):
    gt, _, _ = grid(seed)
    dilated = ndimage.binary_dilation(gt, iterations=2)
    assert n_cells(dilated) == n_cells(gt)  # topology unchanged
    r = challenge_scores(dilated, gt)
    assert r["v_rand"] >= 0.99 and r["v_info"] >= 0.99
    # Without thinning the 2 px of extra border are singletons: a clear drop.
    assert 1.0 - metrics.rand_error(dilated, gt) < 0.9


@pytest.mark.parametrize("seed", [0, 1])
def test_a_false_merge_lowers_the_merge_parts_only(seed):
    gt, pred, _ = merged(seed)
    r = challenge_scores(pred, gt, threshold=0.5)
    # 25 cells of a = 484 px; two become one segment: sum a^2 = 25 a^2, sum b^2 = 27 a^2.
    assert r["v_rand_merge"] == pytest.approx(25 / 27, abs=1e-12)
    assert r["v_rand_split"] == 1.0
    assert r["v_rand"] == pytest.approx(25 / 26, abs=1e-12)
    # H(T) = ln 25; H(S) = 23/25 ln 25 + 2/25 ln(25/2) = I (nothing split).
    h_s = 23 / 25 * math.log(25) + 2 / 25 * math.log(25 / 2)
    assert r["v_info_merge"] == pytest.approx(h_s / math.log(25), abs=1e-12)
    assert r["v_info_split"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_spurious_membrane_lowers_the_split_parts_only(seed):
    gt, pred = split(seed)
    r = challenge_scores(pred, gt, threshold=0.5)
    assert r["v_rand_split"] < 0.99 and r["v_info_split"] < 0.995
    assert r["v_rand_merge"] == 1.0
    assert r["v_info_merge"] == pytest.approx(1.0, abs=1e-12)


def test_one_segment_against_two_cells_by_hand():
    # Two cells of 10x10 px left and right of a 2-px membrane; the prediction has no membrane.
    gt = np.zeros((10, 22), dtype=bool)
    gt[:, 10:12] = True
    r = challenge_scores(np.zeros(gt.shape), gt, threshold=0.5)
    # sum c^2 = sum a^2 = 2 * 100^2, sum b^2 = 200^2: merge 1/2, split 1, F = 2/3.
    assert r["v_rand_merge"] == 0.5 and r["v_rand_split"] == 1.0
    assert r["v_rand"] == pytest.approx(2 / 3, abs=1e-15)
    # H(S) = 0: V_info is 0 (the Java code's convention); everything merged, nothing split.
    assert (r["v_info"], r["v_info_merge"], r["v_info_split"]) == (0.0, 0.0, 1.0)


def test_predicted_boundary_on_a_cell_is_a_singleton():
    # One 1-px line across the left cell: it cannot be thinned, its 10 pixels are singletons.
    gt = np.zeros((10, 22), dtype=bool)
    gt[:, 10:12] = True
    pred = gt.copy()
    pred[:, 4] = True
    r = challenge_scores(pred, gt, threshold=0.5)
    # Left cell: 40 + 50 px and 10 singletons; right cell 100 px (n = 200).
    sum_ab = 40**2 + 50**2 + 10 + 100**2
    assert r["v_rand_split"] == pytest.approx(sum_ab / (2 * 100**2), abs=1e-15)
    assert r["v_rand_merge"] == 1.0


@pytest.mark.parametrize("name", ["thick", "diagonal", "touching"])
def test_thinning_never_merges_cells(name):
    membrane = MAPS[name]
    segments = thinned_segments(membrane)
    n = n_cells(membrane)
    assert len(np.unique(segments[segments > 0])) == n
    assert label(segments > 0, connectivity=1).max() == n  # 4-connected segments, as before
    assert not (segments == 0)[~membrane].any()  # lines only where there was membrane
    assert np.count_nonzero(segments == 0) < np.count_nonzero(membrane)


def test_best_over_thresholds_is_the_maximum_of_the_curve():
    rng = np.random.default_rng(7)
    gt = np.stack([grid(0)[0], grid(1)[0][:141, :141]])
    prob = np.clip(ndimage.gaussian_filter(gt.astype(float), (0, 2, 2)) * 1.3
                   + 0.3 * rng.standard_normal(gt.shape), 0, 1)
    r = challenge_scores(prob, gt)
    curve = r["curve"]
    assert [c["threshold"] for c in curve] == list(CHALLENGE_THRESHOLDS)
    for key, th_key in (("v_rand", "threshold"), ("v_info", "threshold_info")):
        best = max(c[key] for c in curve)
        assert r[key] == best
        assert r[th_key] == max(c["threshold"] for c in curve if c[key] == best)
        again = challenge_scores(prob, gt, threshold=r[th_key])
        assert again[key] == r[key]  # one threshold for the whole stack
    assert 0.0 < r["threshold"] < 1.0
    assert len({round(c["v_rand"], 9) for c in curve}) > 3  # the grid matters here


def test_results_are_plain_json_floats():
    import json

    gt, pred, _ = merged(0)
    r = challenge_scores(pred, gt)
    assert json.loads(json.dumps(r)) == r


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: challenge_scores(g[:, :-1], g), "target has shape"),
        (lambda g: challenge_scores(g, g, threshold=1.5), r"threshold must be in \[0, 1\]"),
        (lambda g: challenge_scores(g, g, threshold=float("nan")), "threshold must be in"),
        (lambda g: challenge_scores(g, g, thresholds=(0.5, -0.1)), "thresholds must be in"),
        (lambda g: challenge_scores(g, g, thresholds=()), "thresholds is empty"),
        (lambda g: challenge_scores(g * 2.0, g), "prob must hold probabilities"),
        (lambda g: challenge_scores(g, g * 2), "target must be boolean"),
        (lambda g: challenge_scores(g, np.ones_like(g)), "target has no cell pixel"),
        (lambda g: challenge_scores([g, g], [g]), "target holds 1 images but prob holds 2"),
        (lambda g: warping_error(g - 1.0, g), "pred must hold probabilities"),
        (lambda g: warping_error(g, g[None, :, :-1]), "target has shape"),
        (lambda g: warping_error(g, g, threshold=-0.5), r"threshold must be in \[0, 1\]"),
    ],
)
def test_bad_input_gives_one_clear_line(call, message):
    gt, _, _ = grid(0)
    with pytest.raises(ValueError, match=message) as info:
        call(gt.astype(np.float64))
    assert "\n" not in str(info.value)


# -- warping error -----------------------------------------------------------------------------
def test_simple_point_table_is_the_topological_number_definition():
    # x is simple for (4, 8) topology iff exactly one 4-component of the interior in N8*(x) is
    # 4-adjacent to x and the membrane in N8*(x) is one 8-component (Bertrand and Malandain).
    for code in range(256):
        patch = np.zeros((3, 3), dtype=bool)
        for k, (dr, dc) in enumerate(NEIGHBOURS):
            patch[1 + dr, 1 + dc] = bool(code >> k & 1)
        cells = label(patch, connectivity=1)
        t4 = len({cells[r, c] for r, c in ((0, 1), (1, 0), (1, 2), (2, 1))} - {0})
        ring = ~patch
        ring[1, 1] = False
        t8 = label(ring, connectivity=2).max()
        assert SIMPLE_POINT[code] == (t4 == 1 and t8 == 1), code


def test_warping_error_is_zero_for_identical_maps_and_shifted_borders():
    gt, _, cols = grid(0)
    assert warping_error(gt, gt) == (0.0, 0, 0, 0, 0, 0, 0, 0)
    start, stop = cols[2]  # move this vertical membrane one pixel to the right
    shifted = gt.copy()
    shifted[:, start] = gt[:, start - 1]  # a column of the cells to its left
    shifted[:, stop] = True
    assert n_cells(shifted) == n_cells(gt) and np.count_nonzero(shifted != gt) == 2 * 5 * CELL
    assert warping_error(shifted.astype(np.float32), gt).error == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warping_error_sees_a_merge(seed):
    gt, pred, gap = merged(seed)
    r = warping_error(pred, gt)
    # The warp thins the removed membrane to a line it cannot remove: an 8-connected path
    # from one horizontal membrane to the other, at least one pixel per row.
    assert r.mismatches >= gap and r.error == r.mismatches / gt.size
    assert (r.merges, r.splits) == (1, 0)
    gt, pred = tunnel(seed)
    # The cells grow into the tunnel from both ends until its last pixel, which would join them.
    assert warping_error(pred, gt)[:4] == (1 / gt.size, 1, 0, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_warping_error_sees_a_split(seed):
    gt, pred = split(seed)
    r = warping_error(pred, gt)
    # The warp draws the spurious line except its last pixel, which would cut the cell.
    assert r.mismatches == 1 and r.error == 1 / gt.size
    assert (r.splits, r.merges) == (1, 0)


@pytest.mark.parametrize("order_seed", range(4))
@pytest.mark.parametrize("make", [tunnel, split], ids=["merge", "split"])
def test_warping_error_does_not_depend_on_which_simple_points_flip_first(make, order_seed):
    # Different probabilities with the same binarisation give different visiting orders
    # (the Java code visits the most confident pixels first). In a 1-px tunnel or line every
    # pixel next to one end can flip and the last one cannot, whatever the order: 1 pixel.
    gt, pred = make(1)
    u = np.random.default_rng(order_seed).random(gt.shape)
    prob = np.where(pred, 0.5 + 0.5 * u, 0.5 * u)
    reference = warping_error(pred, gt)
    assert reference.mismatches == 1
    assert warping_error(prob, gt) == reference
    random_order = simple_point_warp(~gt, ~pred, u)
    assert np.count_nonzero(random_order != ~pred) == 1


@pytest.mark.parametrize("confident", [None, (3, 3), (3, 4)])
def test_the_most_confident_mismatch_flips_first(confident):
    # A 2-px membrane with a 1-px tunnel of two pixels: either can join its cell, then the
    # other would join both cells. The Java code visits the most confident one first (ties:
    # column by column, so (3, 3)); the other one is left.
    gt = np.zeros((7, 7), dtype=bool)
    gt[:, 3:5] = True
    predicted_cell = ~gt
    predicted_cell[3, 3:5] = True
    priority = np.zeros(gt.shape)
    if confident is not None:
        priority[confident] = 1.0
    warped = simple_point_warp(~gt, predicted_cell, None if confident is None else priority)
    flipped = (3, 3) if confident in (None, (3, 3)) else (3, 4)
    left = (3, 7 - flipped[1])
    assert warped[flipped] and not warped[left]
    assert np.count_nonzero(warped != predicted_cell) == 1


def _java_loop(cells: np.ndarray, predicted: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """``simplePointWarp2d`` as written: list the mismatches column by column, stable-sort them
    by decreasing priority, flip each one simple at its turn; repeat until nothing flips."""
    warped, goal = np.pad(cells, 1), np.pad(predicted, 1)
    height, width = cells.shape
    while True:
        listed = [(r, c) for c in range(1, width + 1) for r in range(1, height + 1)
                  if warped[r, c] != goal[r, c]]
        flipped = False
        for r, c in sorted(listed, key=lambda rc: -priority[rc[0] - 1, rc[1] - 1]):
            code = sum(int(warped[r + dr, c + dc]) << k for k, (dr, dc) in enumerate(NEIGHBOURS))
            if SIMPLE_POINT[code]:
                warped[r, c] = not warped[r, c]
                flipped = True
        if not flipped:
            return warped[1:-1, 1:-1]


@pytest.mark.parametrize("seed", range(3))
def test_warp_is_the_java_loop(seed):
    rng = np.random.default_rng(seed)
    gt = grid(seed)[0][:50, :60]
    predicted_cell = ndimage.binary_opening(rng.random(gt.shape) < 0.6)
    priority = np.round(rng.random(gt.shape), 1).astype(np.float32)  # many ties
    expected = _java_loop(~gt, predicted_cell, priority)
    assert np.array_equal(simple_point_warp(~gt, predicted_cell, priority), expected)
    assert np.array_equal(simple_point_warp(~gt, predicted_cell),
                          _java_loop(~gt, predicted_cell, np.zeros(gt.shape)))


def test_warping_error_visits_in_the_order_of_its_probabilities():
    gt, pred, gap = merged(1)
    counts = set()
    for seed in range(4):
        u = np.random.default_rng(seed).random(gt.shape)
        prob = np.where(pred, 0.5 + 0.5 * u, 0.5 * u).astype(np.float32)
        priority = np.abs(prob.astype(np.float64) - 0.5).astype(np.float32)
        warped = simple_point_warp(~gt, prob < 0.5, priority)
        mismatches = np.count_nonzero(warped != (prob < 0.5))
        r = warping_error(prob, gt)
        assert r.mismatches == mismatches
        assert (r.merges, r.splits) == (1, 0)  # one error: its pixels are 8-connected
        counts.add(mismatches)
    assert len(counts | {warping_error(pred, gt).mismatches}) > 1  # the order matters here


def test_warping_error_of_a_stack_is_the_mean_over_slices():
    gt, pred, gap = merged(0)
    r = warping_error(np.stack([pred, gt]), np.stack([gt, gt]))
    assert r.error == pytest.approx(gap / gt.size / 2)
    assert (r.mismatches, r.merges) == (gap, 1)


def test_warping_keeps_the_topology_of_the_ground_truth():
    gt, _, _ = grid(2)
    rng = np.random.default_rng(0)
    noisy = rng.random(gt.shape) < 0.3  # random cell interior
    warped = simple_point_warp(~gt, noisy, rng.random(gt.shape))
    padded = np.pad(warped, 1)
    assert label(padded, connectivity=1).max() == n_cells(gt)
    assert label(~padded, connectivity=2).max() == label(np.pad(gt, 1, constant_values=True),
                                                         connectivity=2).max()


@pytest.mark.parametrize("seed", [0, 1])
def test_mismatch_kinds_locate_what_warping_error_counts(seed) -> None:  # noqa: ANN001
    gt, pred, _ = merged(seed)
    kinds = mismatch_kinds(pred.astype(float), gt, threshold=0.5)
    assert set(kinds) == {"split", "merge", "object_addition", "object_deletion",
                          "hole_addition", "hole_deletion"}
    assert kinds["merge"].any() and not any(kinds[k].any() for k in kinds if k != "merge")
    assert not (kinds["merge"] & pred).any()  # merged pixels: membrane missed there
    gt, pred = split(seed)
    kinds = mismatch_kinds(pred.astype(float), gt, threshold=0.5)
    assert kinds["split"].any() and not kinds["merge"].any()
    assert not any(v.any() for v in mismatch_kinds(gt.astype(float), gt).values())


@pytest.mark.parametrize("seed", [0, 1])
def test_one_warp_gives_both_the_error_and_the_kinds(seed) -> None:  # noqa: ANN001
    gt, merge, _ = merged(seed)
    rng = np.random.default_rng(seed)
    noisy = np.clip(merge + rng.normal(0, 0.3, merge.shape), 0, 1)  # many kinds of error
    for pred in (merge.astype(float), split(seed)[1].astype(float), noisy, gt.astype(float)):
        error, kinds = warping_error_and_kinds(pred, gt, threshold=0.5)
        assert error == warping_error(pred, gt, threshold=0.5)
        expected = mismatch_kinds(pred, gt, threshold=0.5)
        assert kinds.keys() == expected.keys()
        assert all(np.array_equal(kinds[k], expected[k]) for k in expected)
    assert error.mismatches == 0 and not any(v.any() for v in kinds.values())  # gt itself
