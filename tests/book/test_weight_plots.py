"""Tests for unet_book.weight_plots: the figure data of the weight-map chapter, and the figures."""

from __future__ import annotations

import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import LogNorm, to_rgb
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from scipy import ndimage

from unet_book.weight_plots import (
    CELL_PALETTE,
    Panel,
    blurred_logits,
    densest_window,
    describe_machine,
    draw_window,
    gap_profile,
    instance_colours,
    near_two_cells,
    neighbour_pairs,
    per_pixel_loss,
    plot_maps,
    plot_parameter_grid,
    plot_profile,
    plot_profile_map,
    plot_weight_histogram,
    thin_gap_window,
    thinnest_gap_point,
    two_cells,
    weight_mass_near_borders,
)
from unet_core.losses import weighted_cross_entropy
from unet_core.weights import class_weight_map, distance_maps, weight_map


def voronoi_cells(shape=(80, 80), n=25, seed=0) -> np.ndarray:
    """Random Voronoi cells separated by one-pixel background borders."""
    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, dtype=np.int32)
    points = rng.integers(0, shape, size=(n, 2))
    seeds[points[:, 0], points[:, 1]] = np.arange(1, n + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    cells = seeds[iy, ix]
    border = np.zeros(shape, dtype=bool)
    border[:, 1:] |= cells[:, 1:] != cells[:, :-1]
    border[1:, :] |= cells[1:, :] != cells[:-1, :]
    return ndimage.label(~border)[0].astype(np.int32)


def two_gaps() -> np.ndarray:
    """Three 20x10 cells in a row: a 2-pixel gap between 1 and 2, a 5-pixel gap between 2 and 3."""
    labels = np.zeros((40, 60), dtype=np.int32)
    labels[10:30, 5:15] = 1
    labels[10:30, 17:27] = 2
    labels[10:30, 32:42] = 3
    return labels


# -- toy data ------------------------------------------------------------------------------------
@pytest.mark.parametrize("gap", [1, 2, 5])
def test_two_cells_gap_has_d1_plus_d2_equal_gap_plus_one(gap):
    labels, between = two_cells(gap)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert between.sum() == 20 * gap and not labels[between].any()
    d1, d2 = distance_maps(labels)
    assert np.unique((d1 + d2)[between]).tolist() == [gap + 1]
    # both cells have the same size and sit symmetrically
    assert (labels == 1).sum() == (labels == 2).sum() == 20 * 15


def test_two_cells_touching_and_errors():
    labels, between = two_cells(0)
    assert not between.any()
    assert ndimage.label(labels > 0)[1] == 1  # they touch: one blob
    with pytest.raises(ValueError):
        two_cells(-1)
    with pytest.raises(ValueError):
        two_cells(40)


# -- instances as a picture ----------------------------------------------------------------------
def test_neighbour_pairs():
    assert neighbour_pairs(two_cells(3).labels) == {(1, 2)}
    assert neighbour_pairs(two_gaps()) == {(1, 2), (2, 3)}  # 1 and 3 are not neighbours
    assert neighbour_pairs(np.zeros((5, 5), dtype=int)) == set()


def test_instance_colours_one_colour_per_cell_and_neighbours_differ():
    labels = voronoi_cells()
    rgb = instance_colours(labels)
    assert rgb.shape == (*labels.shape, 3)
    assert np.all(rgb[labels == 0] == 0)  # background black
    colour_of = {}
    for k in range(1, labels.max() + 1):
        colours = np.unique(rgb[labels == k], axis=0)
        assert len(colours) == 1
        colour_of[k] = tuple(colours[0])
    palette = {tuple(np.round(to_rgb(c), 6)) for c in CELL_PALETTE}
    assert {tuple(np.round(c, 6)) for c in colour_of.values()} <= palette
    pairs = neighbour_pairs(labels)
    assert len(pairs) > labels.max()  # a real adjacency graph
    assert all(colour_of[a] != colour_of[b] for a, b in pairs)


def test_instance_colours_over_an_image():
    labels = two_cells(4).labels
    image = np.arange(labels.size, dtype=float).reshape(labels.shape)
    rgb = instance_colours(labels, image, alpha=0.5)
    grey = (image - image.min()) / (image.max() - image.min())
    assert np.allclose(rgb[labels == 0], grey[labels == 0][:, None])  # background: the image
    plain = instance_colours(labels)
    cell = labels > 0
    assert np.allclose(rgb[cell], 0.5 * grey[cell][:, None] + 0.5 * plain[cell])


# -- where the gaps are --------------------------------------------------------------------------
def test_near_two_cells_covers_the_gap():
    labels, between = two_cells(3)
    near3 = near_two_cells(labels, 3)
    assert np.all(near3[between]) and not near3[labels > 0].any()
    near2 = near_two_cells(labels, 2)  # only the middle column of a 3-pixel gap has d2 <= 2
    cols = np.flatnonzero(between.any(axis=0))
    assert np.flatnonzero((near2 & between).any(axis=0)).tolist() == [cols[1]]
    assert not near_two_cells(two_cells(6).labels, 3).any()  # a 6-pixel gap is not thin


def test_densest_window():
    mask = np.zeros((50, 60), dtype=bool)
    mask[30:35, 40:44] = True
    rows, cols = densest_window(mask, 10)
    assert rows.stop - rows.start == 10 and cols.stop - cols.start == 10
    assert mask[rows, cols].sum() == mask.sum()
    assert densest_window(np.zeros((20, 20), dtype=bool), 5) == (slice(0, 5), slice(0, 5))
    with pytest.raises(ValueError):
        densest_window(mask, 51)


def test_thin_gap_window_and_thinnest_point():
    labels = two_gaps()
    rows, cols = thin_gap_window(labels, 12, k=2)
    assert cols.start <= 15 and 16 < cols.stop  # holds the 2-pixel gap (columns 15, 16)
    r, c = thinnest_gap_point(labels)
    assert c in (15, 16) and 10 <= r < 30
    assert 12 <= r < 28  # a straight stretch is preferred to the ends of the gap
    # restricted to a window around the 5-pixel gap, the point is in that gap
    r, c = thinnest_gap_point(labels, (slice(0, 40), slice(28, 60)))
    assert 27 <= c < 32 and labels[r, c] == 0
    with pytest.raises(ValueError):  # one cell: no pixel lies between two cells
        thinnest_gap_point((two_cells(2).labels == 1).astype(np.int32))


def test_gap_profile_across_a_straight_gap():
    labels, between = two_cells(2)
    r, c = np.argwhere(between)[len(np.argwhere(between)) // 2]
    profile = gap_profile(labels, (r, c), half_length=6, step=0.5)
    assert profile.cells in ((1, 2), (2, 1))
    assert np.allclose(np.abs(profile.direction), (0, 1))  # horizontal, across the gap
    assert np.all(profile.rows == r)
    sampled = profile.sample(labels)
    assert len(sampled) == len(profile.t) == 25
    # a cell, then the 2 gap pixels, then the other cell
    assert [k for i, k in enumerate(sampled) if i == 0 or k != sampled[i - 1]] == [
        profile.cells[0], 0, profile.cells[1]]
    assert sampled[profile.t == 0] == 0
    (r0, c0), (r1, c1) = profile.ends
    assert (r0, r1) == (r, r) and abs(c1 - c0) == pytest.approx(12)


def test_gap_profile_across_a_diagonal_gap():
    y, x = np.mgrid[0:60, 0:60]
    labels = np.where(x - y > 2, 1, np.where(x - y < -2, 2, 0)).astype(np.int32)
    profile = gap_profile(labels, (30, 30), half_length=5)
    normal = np.array([1.0, -1.0]) / math.sqrt(2)  # from cell 1 (upper right) to cell 2
    assert profile.cells == (1, 2)
    assert np.allclose(profile.direction, normal, atol=0.05)
    with pytest.raises(ValueError):
        gap_profile(two_cells(2).labels * (two_cells(2).labels == 1), (30, 30))


# -- weight mass -----------------------------------------------------------------------------
def test_weight_mass_near_borders_by_hand():
    labels, between = two_cells(2)
    cw = (2.0, 0.5)
    (mass,) = weight_mass_near_borders([labels, labels], [2], w0=10, sigma=5, class_weights=cw)
    near = near_two_cells(labels, 2)
    wc = class_weight_map(labels, cw)
    w = weight_map(labels, 10, 5, cw)
    assert mass.uniform == pytest.approx(near.mean())
    assert mass.class_only == pytest.approx(wc[near].sum() / wc.sum())
    assert mass.full == pytest.approx(w[near].sum() / w.sum(), rel=1e-6)
    assert mass.of_background == pytest.approx(near.sum() / (labels == 0).sum())
    assert mass.growth == pytest.approx(w.sum() / wc.sum(), rel=1e-6)
    assert mass.uniform < mass.class_only < mass.full


def test_weight_mass_without_separation_term_and_pooling():
    maps = [voronoi_cells(seed=s) for s in range(3)]
    masses = weight_mass_near_borders(maps, [1, 2, 4], w0=0.0)
    assert all(m.full == pytest.approx(m.class_only) and m.growth == pytest.approx(1)
               for m in masses)
    assert [m.uniform for m in masses] == sorted(m.uniform for m in masses)  # grows with k
    pooled = weight_mass_near_borders(maps, [2])[0].uniform
    assert pooled == pytest.approx(np.mean([near_two_cells(m, 2).mean() for m in maps]))
    with pytest.raises(ValueError):
        weight_mass_near_borders([], [2])


# -- a perturbed prediction and its loss ---------------------------------------------------------
def test_blurred_logits():
    labels, between = two_cells(2)
    target = (labels == 0).astype(np.int64)
    logits = blurred_logits(target, 2.0)
    assert logits.shape == (1, 2, *target.shape) and logits.dtype == torch.float32
    p = torch.softmax(logits, dim=1)[0, 1].numpy()
    q = np.clip(ndimage.gaussian_filter(target.astype(float), 2.0), 1e-3, 1 - 1e-3)
    assert np.allclose(p, q, atol=1e-5)
    middle = between.copy()
    middle[:15] = middle[25:] = False  # away from the ends of the gap
    assert p[middle].max() < 0.45  # the thin gap fades: the two cells merge
    sharp = torch.softmax(blurred_logits(target, 2.0, confidence=3), dim=1)[0, 1].numpy()
    assert np.array_equal(sharp > 0.5, p > 0.5)  # same decision, more confident
    assert np.abs(sharp - 0.5).mean() > np.abs(p - 0.5).mean()
    with pytest.raises(ValueError):
        blurred_logits(target, 2.0, confidence=0)


def test_per_pixel_loss_matches_the_library():
    labels, _ = two_cells(2)
    target = (labels == 0).astype(np.int64)
    logits = blurred_logits(target, 2.0)
    w = weight_map(labels)
    per_pixel = per_pixel_loss(logits, target, w)
    expected = weighted_cross_entropy(logits, torch.from_numpy(target)[None],
                                      torch.from_numpy(w)[None])
    assert per_pixel.shape == target.shape
    assert per_pixel.mean() == pytest.approx(expected.item(), rel=1e-5)
    plain = per_pixel_loss(logits, target)
    assert np.allclose(per_pixel, plain * w)
    assert plain.mean() == pytest.approx(
        weighted_cross_entropy(logits, torch.from_numpy(target)[None]).item(), rel=1e-5)


def test_describe_machine():
    text = describe_machine()
    assert f"{os.cpu_count()} logical CPUs" in text and "NumPy" in text


# -- drawing -------------------------------------------------------------------------------------
def test_plot_maps_crops_every_panel_and_draws_the_box():
    rng = np.random.default_rng(0)
    a, b = rng.random((30, 40)), rng.random((30, 40))
    window = (slice(5, 15), slice(10, 30))
    fig = plot_maps([Panel("a", a, colorbar=True), Panel("b", b, vmin=0, vmax=2)], ncols=3,
                    window=window)
    axes = fig.axes
    images = [ax.images[0] for ax in axes if ax.images]
    assert np.array_equal(images[0].get_array(), a[window])
    assert np.array_equal(images[1].get_array(), b[window])
    assert images[1].get_clim() == (0, 2)
    assert [ax.get_title() for ax in axes[:3]] == ["a", "b", ""]
    assert not axes[2].get_visible()  # the unused third cell
    assert len(axes) == 4  # 3 grid cells + 1 colour bar

    box = (slice(2, 12), slice(3, 8))
    fig = plot_maps([Panel("a", a)], ncols=1, box=box)
    (rect,) = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert rect.get_xy() == (2.5, 1.5) and rect.get_width() == 5 and rect.get_height() == 10
    assert np.array_equal(fig.axes[0].images[0].get_array(), a)


def test_draw_window():
    fig, ax = plt.subplots()
    rect = draw_window(ax, (slice(388, 484), slice(247, 343)))
    assert rect.get_xy() == (246.5, 387.5)
    assert (rect.get_width(), rect.get_height()) == (96, 96)
    assert rect in ax.patches


def test_plot_profile_draws_the_sampled_values_and_shades_the_gap():
    labels, between = two_cells(2)
    w = weight_map(labels)
    middle = np.argwhere(between)[between.sum() // 2]  # halfway along the gap
    profile = gap_profile(labels, tuple(middle), half_length=4, step=0.5)
    fig, ax = plt.subplots()
    plot_profile(ax, profile, {"w": w, "w_c": class_weight_map(labels)}, labels,
                 styles={"w_c": {"ls": "--"}})
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert np.array_equal(lines["w"].get_xdata(), profile.t)
    assert np.array_equal(lines["w"].get_ydata(), profile.sample(w))
    assert lines["w_c"].get_linestyle() == "--"
    (span,) = ax.patches  # one gap crossed, one shaded span (axvspan: a Rectangle)
    gap_t = profile.t[profile.sample(labels) == 0]
    assert span.get_x() == pytest.approx(gap_t.min() - 0.25)
    assert span.get_x() + span.get_width() == pytest.approx(gap_t.max() + 0.25)
    assert len(gap_t) == 4  # 2 px at 0.5 px steps


def test_plot_profile_map_draws_the_line_in_image_coordinates():
    labels, between = two_cells(2)
    profile = gap_profile(labels, tuple(np.argwhere(between)[between.sum() // 2]), half_length=5)
    fig, ax = plt.subplots()
    rows, cols = plot_profile_map(ax, labels, profile, radius=6, cmap="gray")
    r, c = profile.point
    assert (rows, cols) == (slice(r - 6, r + 7), slice(c - 6, c + 7))
    assert np.array_equal(ax.images[0].get_array(), labels[rows, cols])
    line = ax.get_lines()[0]
    (r0, c0), (r1, c1) = profile.ends
    assert np.allclose(line.get_xdata(), [c0, c1]) and np.allclose(line.get_ydata(), [r0, r1])
    assert ax.get_xlim() == (cols.start - 0.5, cols.stop - 0.5)


def test_plot_parameter_grid_maps_and_shared_scale():
    labels = voronoi_cells()
    window = (slice(10, 50), slice(20, 60))
    fig, maps = plot_parameter_grid(labels, (3, 10), (2.5, 5, 10), window=window)
    assert set(maps) == {(w0, s) for w0 in (3, 10) for s in (2.5, 5, 10)}
    assert np.array_equal(maps[10, 5], weight_map(labels, 10, 5)[window])
    images = [im for ax in fig.axes for im in ax.images if isinstance(im, AxesImage)]
    assert len(images) == 6
    top = max(m.max() for m in maps.values())
    assert all(im.get_clim() == (0.0, pytest.approx(top)) for im in images)
    grid_axes = [ax for ax in fig.axes if ax.images]
    assert grid_axes[0].get_title() == "$w_0$ = 3" and "2.5" in grid_axes[0].get_ylabel()
    assert means_increase(maps)

    fig, maps = plot_parameter_grid(labels, (10,), (5,), log=True)
    (image,) = [im for ax in fig.axes for im in ax.images]
    assert isinstance(image.norm, LogNorm)
    assert image.norm.vmin == pytest.approx(maps[10, 5].min())


def means_increase(maps) -> bool:
    return all(maps[3, s].mean() < maps[10, s].mean() for s in (2.5, 5, 10)) and all(
        maps[w0, 2.5].mean() < maps[w0, 5].mean() < maps[w0, 10].mean() for w0 in (3, 10))


def test_plot_weight_histogram_counts():
    labels = voronoi_cells()
    w = weight_map(labels)
    fig, ax = plt.subplots()
    hist = plot_weight_histogram(ax, w, labels == 0, bins=20)
    assert hist["membrane"].sum() == (labels == 0).sum()
    assert hist["cell interior"].sum() == (labels > 0).sum()
    assert len(hist["edges"]) == 21
    stairs = [p for p in ax.patches if hasattr(p, "get_data")]
    assert [s.get_label() for s in stairs] == ["membrane", "cell interior"]
    assert np.array_equal(stairs[0].get_data().values, hist["membrane"])
    assert ax.get_yscale() == "log"
