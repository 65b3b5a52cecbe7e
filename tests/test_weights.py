"""Tests for unet_core.weights: the paper's weight map, Eq. 2."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from unet_core.weights import (
    TERM_TOLERANCE,
    balanced_class_weights,
    class_and_weight_maps,
    class_weight_map,
    distance_maps,
    instances_from_membranes,
    weight_map,
)

W0, SIGMA = 10.0, 5.0


def two_cells(gap: int = 2) -> np.ndarray:
    """Two 20x15 rectangles side by side, ``gap`` background columns apart, in a 100x120 image."""
    labels = np.zeros((100, 120), dtype=np.int32)
    labels[40:60, 30:45] = 1
    labels[40:60, 45 + gap : 60 + gap] = 2
    return labels


def random_cells(shape: tuple[int, int] = (96, 96), n: int = 40, seed: int = 0) -> np.ndarray:
    """Voronoi cells of random seeds, separated by one-pixel borders of background."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=np.int32)
    points = rng.integers(0, shape, size=(n, 2))
    seeds[points[:, 0], points[:, 1]] = np.arange(1, n + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[iy, ix]
    border = np.zeros(shape, dtype=bool)  # of two 4-adjacent pixels of different cells,
    for axis in (0, 1):  # the one with the smaller id becomes border
        a, b = np.moveaxis(cells, axis, 0)[:-1], np.moveaxis(cells, axis, 0)[1:]
        np.moveaxis(border, axis, 0)[:-1] |= a < b
        np.moveaxis(border, axis, 0)[1:] |= b < a
    return instances_from_membranes(np.where(border, 0, cells) > 0)


def brute_force(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d1, d2 from one whole-image distance transform per cell (the O(K) reference)."""
    ids = [k for k in np.unique(labels) if k != 0]
    maps = [ndimage.distance_transform_edt(labels != k) for k in ids]
    maps += [np.full(labels.shape, np.inf)] * 2
    d = np.sort(np.stack(maps), axis=0)
    return d[0], d[1]


# -- Eq. 2 on constructed cells -------------------------------------------------------------------
def test_two_cells_with_a_two_pixel_gap() -> None:
    labels = two_cells(gap=2)
    w = weight_map(labels, w0=W0, sigma=SIGMA)
    w_c = class_weight_map(labels)
    w_background = w_c[0, 0]
    # Gap columns 45 and 46: d1 = 1 (touching one cell), d2 = 2 (one pixel across the gap)
    # -> d1 + d2 = 3 (pixel-centre distances; 2 if measured to the pixel edges).
    expected = w_background + W0 * math.exp(-(3.0**2) / (2 * SIGMA**2))  # w_c + 0.835 w0
    gap = w[40:60, 45:47]
    np.testing.assert_allclose(gap, expected, rtol=1e-6)
    assert np.all(gap - w_background > 0.8 * W0)  # "close to w_c + w0"
    # Far from both cells (d1 + d2 >= 60 px) the separation term vanishes: w = w_c.
    far = np.zeros(labels.shape, bool)
    far[:, 100:] = True
    far[:5] = True
    np.testing.assert_allclose(w[far], w_c[far], atol=TERM_TOLERANCE)
    # Cells themselves get w_c with the default where="background".
    np.testing.assert_allclose(w[labels > 0], w_c[labels > 0], rtol=1e-6)
    # Explicit class weights: the gap is 1 + 10 exp(-9/50).
    w1 = weight_map(labels, class_weights=(1.0, 1.0))
    np.testing.assert_allclose(w1[40:60, 45:47], 1 + W0 * math.exp(-9 / 50), rtol=1e-6)


def test_separation_term_decreases_with_the_gap() -> None:
    centre = [float(weight_map(two_cells(g), class_weights=(1, 1))[50, 45]) for g in (1, 2, 4, 8)]
    # one-pixel gap: d1 = d2 = 1 -> 1 + 10 exp(-4/50)
    assert centre[0] == pytest.approx(1 + W0 * math.exp(-4 / 50), rel=1e-6)
    assert centre == sorted(centre, reverse=True)


def test_where_all_spills_into_the_cells() -> None:
    labels = two_cells(gap=2)
    w_all = weight_map(labels, class_weights=(1, 1), where="all")
    # last column of cell 1: d1 = 0, d2 = 3 (distance to cell 2)
    np.testing.assert_allclose(w_all[40:60, 44], 1 + W0 * math.exp(-9 / 50), rtol=1e-6)
    w_bg = weight_map(labels, class_weights=(1, 1), where="background")
    np.testing.assert_array_equal(w_bg[labels > 0], 1.0)
    np.testing.assert_array_equal(w_all[labels == 0], w_bg[labels == 0])


def test_single_cell_and_no_cell() -> None:
    labels = np.zeros((40, 50), dtype=np.int64)
    labels[10:20, 10:30] = 7
    d1, d2 = distance_maps(labels)
    assert np.all(np.isinf(d2))  # no second cell: d2 = inf -> separation term exactly 0
    np.testing.assert_array_equal(d1, ndimage.distance_transform_edt(labels == 0))
    np.testing.assert_array_equal(weight_map(labels), class_weight_map(labels).astype(np.float32))
    empty = np.zeros((30, 30), dtype=np.uint8)
    d1, d2 = distance_maps(empty)
    assert np.all(np.isinf(d1)) and np.all(np.isinf(d2))
    np.testing.assert_array_equal(weight_map(empty), 1.0)


# -- distances ------------------------------------------------------------------------------------
def test_distance_maps_exact_and_ordered() -> None:
    labels = random_cells()
    d1, d2 = distance_maps(labels)
    assert np.all(d1 <= d2)
    assert np.all(d1[labels > 0] == 0) and np.all(d2[labels > 0] > 0)
    ref1, ref2 = brute_force(labels)
    np.testing.assert_array_equal(d1, ref1)
    np.testing.assert_array_equal(d2, ref2)
    # sparse cells far apart: the exact mode must widen its search radius
    sparse = np.zeros((150, 160), dtype=np.int32)
    sparse[5:9, 5:9], sparse[140:145, 150:155], sparse[70:72, 10:12] = 1, 2, 3
    for got, ref in zip(distance_maps(sparse), brute_force(sparse), strict=True):
        np.testing.assert_array_equal(got, ref)


def test_distance_maps_truncated() -> None:
    labels = random_cells(seed=1)
    ref1, ref2 = brute_force(labels)
    d1, d2 = distance_maps(labels, max_distance=6.0)
    for got, ref in ((d1, ref1), (d2, ref2)):
        near = ref <= 6.0
        np.testing.assert_array_equal(got[near], ref[near])
        assert np.all(np.isinf(got[~near]))


def test_weight_map_matches_brute_force_eq2() -> None:
    labels = random_cells(shape=(128, 112), n=50, seed=2)
    d1, d2 = brute_force(labels)
    w_c = class_weight_map(labels)
    for w0, sigma in ((10.0, 5.0), (5.0, 12.0)):
        exact = w_c + w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)) * (labels == 0)
        got = weight_map(labels, w0=w0, sigma=sigma)
        assert got.dtype == np.float32 and got.shape == labels.shape
        np.testing.assert_allclose(got, exact, atol=TERM_TOLERANCE + 1e-5, rtol=0)


@pytest.mark.parametrize("where", ["background", "all"])
def test_class_and_weight_maps_are_the_two_weight_maps(where) -> None:  # noqa: ANN001
    one_cell = np.zeros((20, 20), np.int32)
    one_cell[5:9, 5:9] = 1
    cases = (random_cells(seed=3), two_cells(), one_cell, np.zeros((8, 8), np.int32))
    for labels, class_weights in zip(cases, (None, (0.7, 2.5), None, (1.0, 3.0)), strict=True):
        for w0 in (10.0, 0.0):
            w_c, w = class_and_weight_maps(labels, w0=w0, sigma=SIGMA,
                                           class_weights=class_weights, where=where)
            np.testing.assert_array_equal(w_c, weight_map(labels, w0=0.0, sigma=SIGMA,
                                                          class_weights=class_weights))
            np.testing.assert_array_equal(w, weight_map(labels, w0=w0, sigma=SIGMA,
                                                        class_weights=class_weights,
                                                        where=where))
            assert w_c.dtype == w.dtype == np.float32


def test_label_ids_need_not_be_consecutive() -> None:
    labels = two_cells()
    relabelled = np.select([labels == 1, labels == 2], [1000, 3], 0)
    np.testing.assert_array_equal(weight_map(relabelled), weight_map(labels))


# -- class balance --------------------------------------------------------------------------------
def test_class_balance() -> None:
    labels = two_cells()
    w_c = class_weight_map(labels)
    fg = labels > 0
    assert w_c.mean() == pytest.approx(1.0)
    assert w_c[fg].sum() == pytest.approx(w_c[~fg].sum())  # both classes carry equal weight
    n, n_fg = labels.size, int(fg.sum())
    assert w_c[fg][0] == pytest.approx(n / (2 * n_fg))
    assert w_c[~fg][0] == pytest.approx(n / (2 * (n - n_fg)))
    # the rarer class (cells here) gets the larger weight
    assert w_c[fg][0] > w_c[~fg][0]
    # explicit weights, as a pair or a mapping
    pair = class_weight_map(labels, (0.5, 3.0))
    np.testing.assert_array_equal(pair, np.where(fg, 3.0, 0.5))
    np.testing.assert_array_equal(class_weight_map(labels, {0: 0.5, 1: 3.0}), pair)
    np.testing.assert_array_equal(
        class_weight_map(labels, {"background": 0.5, "foreground": 3.0}), pair
    )
    # data-set frequencies: pooled counts over several label maps
    other = np.ones((10, 12), dtype=np.int32)
    w_bg, w_fg = balanced_class_weights([labels, other])
    n_all, fg_all = labels.size + other.size, n_fg + other.size
    assert (w_bg, w_fg) == pytest.approx((n_all / (2 * (n_all - fg_all)), n_all / (2 * fg_all)))
    assert balanced_class_weights([labels]) == pytest.approx((w_c[~fg][0], w_c[fg][0]))
    # an image with only one class: weight 1
    np.testing.assert_array_equal(class_weight_map(other), 1.0)


# -- instances ------------------------------------------------------------------------------------
def test_instances_from_membranes() -> None:
    isbi = np.full((21, 21), 255, dtype=np.uint8)  # 255 = interior, 0 = membrane
    isbi[10, :] = 0
    isbi[:, 10] = 0
    labels = instances_from_membranes(isbi)
    assert labels.dtype == np.int32 and labels.max() == 4
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    np.testing.assert_array_equal(labels == 0, isbi == 0)
    # a membrane mask (membrane = True) via interior_value=False
    np.testing.assert_array_equal(instances_from_membranes(isbi == 0, interior_value=False),
                                  labels)
    # a one-pixel diagonal membrane separates with 4-connectivity only
    diagonal = ~np.eye(12, dtype=bool)
    assert instances_from_membranes(diagonal).max() == 2
    assert instances_from_membranes(diagonal, connectivity=2).max() == 1
    # min_size drops specks and renumbers consecutively
    specks = isbi.copy()
    specks[1:4, 1:4] = 0
    specks[2, 2] = 255  # a single interior pixel inside a membrane ring
    with_speck = instances_from_membranes(specks)
    assert with_speck.max() == 5
    cleaned = instances_from_membranes(specks, min_size=2)
    assert cleaned.max() == 4 and cleaned[2, 2] == 0
    assert set(np.unique(cleaned)) == {0, 1, 2, 3, 4}


# -- validation -----------------------------------------------------------------------------------
def test_input_validation() -> None:
    labels = two_cells()
    with pytest.raises(ValueError, match="labels"):
        weight_map(labels.astype(float))
    with pytest.raises(ValueError, match="labels"):
        weight_map(labels[None])
    with pytest.raises(ValueError, match="labels"):
        weight_map(-labels)
    with pytest.raises(ValueError, match="sigma"):
        weight_map(labels, sigma=0.0)
    with pytest.raises(ValueError, match="w0"):
        weight_map(labels, w0=-1.0)
    with pytest.raises(ValueError, match="w0"):
        weight_map(labels, w0=float("inf"))
    with pytest.raises(ValueError, match="class_weights"):
        weight_map(labels, class_weights=(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="class_weights"):
        weight_map(labels, class_weights={0: 1.0, 2: 1.0})
    with pytest.raises(ValueError, match="class_weights"):
        weight_map(labels, class_weights=(1.0, -2.0))
    with pytest.raises(ValueError, match="where"):
        weight_map(labels, where="cells")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_distance"):
        distance_maps(labels, max_distance=-1.0)
    with pytest.raises(ValueError, match="connectivity"):
        instances_from_membranes(labels, connectivity=3)
    with pytest.raises(ValueError, match="min_size"):
        instances_from_membranes(labels, min_size=-1)
    with pytest.raises(ValueError, match="mask"):
        instances_from_membranes(np.zeros((2, 3, 4)))


def test_class_balance_counts_only_inside_the_masks() -> None:
    """DRIVE's loss sees only the FOV: the class frequencies are counted there."""
    labels = np.zeros((10, 10), np.uint8)
    labels[:2] = 1  # 20 foreground pixels
    fov = np.zeros((10, 10), bool)
    fov[:5] = True  # inside: 20 foreground of 50
    whole = balanced_class_weights([labels])
    inside = balanced_class_weights([labels], [fov])
    assert whole == pytest.approx((100 / (2 * 80), 100 / (2 * 20)))
    assert inside == pytest.approx((50 / (2 * 30), 50 / (2 * 20)))
    assert balanced_class_weights([labels], [None]) == pytest.approx(whole)
    with pytest.raises(ValueError, match="mask 0 has shape"):
        balanced_class_weights([labels], [fov[:5]])
