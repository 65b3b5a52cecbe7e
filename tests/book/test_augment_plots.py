"""Tests for unet_book.augment_plots: the strain measurements and the data each figure draws."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.contour import ContourSet
from matplotlib.patches import Rectangle

from unet_book.augment_plots import (
    deformation_statistics,
    displacement_gradient,
    grid_pattern,
    grid_points,
    jacobian_determinant,
    mask_contrast,
    max_displacement_gradient,
    overlay_mask,
    plot_augmented,
    plot_det_histograms,
    plot_displacements,
    plot_field_magnitude,
    plot_jacobian,
    plot_strain_vs_size,
)
from unet_core.augment import coarse_displacements, displacement_field


def linear_field(a: float, b: float, c: float, d: float, shape=(20, 30)) -> np.ndarray:
    """``u_0 = a y + b x``, ``u_1 = c y + d x``: a constant displacement gradient."""
    yy, xx = np.indices(shape, dtype=float)
    return np.stack([a * yy + b * xx, c * yy + d * xx])


def contours(ax) -> list[ContourSet]:
    return [c for c in ax.collections if isinstance(c, ContourSet)]


# -- measurements --------------------------------------------------------------------------------
def test_gradient_and_determinant_of_a_linear_field_are_exact() -> None:
    field = linear_field(0.1, -0.2, 0.3, 0.05)
    g = displacement_gradient(field)
    assert g.shape == (2, 2, 20, 30)
    np.testing.assert_allclose(g[:, :, 5, 7], [[0.1, -0.2], [0.3, 0.05]], atol=1e-12)
    np.testing.assert_allclose(jacobian_determinant(field), 1.1 * 1.05 - (-0.2) * 0.3, atol=1e-12)
    assert max_displacement_gradient(field) == pytest.approx(0.3)


def test_determinant_is_one_without_deformation_and_negative_for_a_fold() -> None:
    np.testing.assert_array_equal(jacobian_determinant(np.zeros((2, 8, 9))), np.ones((8, 9)))
    # a translation changes no area
    np.testing.assert_allclose(jacobian_determinant(np.full((2, 8, 9), 3.5)), 1.0)
    # u_0 = -2 y: the sampling map y -> -y reverses the row axis, a fold
    np.testing.assert_allclose(jacobian_determinant(linear_field(-2, 0, 0, 0)), -1.0)
    with pytest.raises(ValueError, match="field must have shape"):
        jacobian_determinant(np.zeros((3, 8, 9)))


def test_deformation_statistics_shapes_and_identity() -> None:
    s = deformation_statistics(33, n_draws=7, rng=0, n_pixels=50)
    assert s.n_draws == 7 and s.size == 33 and s.crop_from is None
    assert s.max_gradient.shape == s.min_det.shape == s.folded.shape == (7,)
    assert s.det_sample.shape == (7 * 50,)
    assert np.all(s.det_sample >= s.min_det.min())
    flat = deformation_statistics(33, sigma=0.0, n_draws=3, rng=0)
    np.testing.assert_array_equal(flat.max_gradient, 0.0)
    np.testing.assert_array_equal(flat.min_det, 1.0)
    assert flat.fold_probability == 0.0 and flat.label == "33 px, sigma 0"
    with pytest.raises(ValueError, match="crop_from"):
        deformation_statistics(64, crop_from=32)


def test_strain_scales_inversely_with_grid_spacing() -> None:
    """Same seed, same nine vectors: the field on 2n-1 pixels is the one on n, stretched."""
    small = deformation_statistics(129, n_draws=5, rng=3)
    large = deformation_statistics(257, n_draws=5, rng=3)
    np.testing.assert_allclose(small.max_gradient / large.max_gradient, 2.0, rtol=0.02)
    # scaling sigma with the spacing restores the strain
    scaled = deformation_statistics(129, sigma=5.0, n_draws=5, rng=3)
    np.testing.assert_allclose(scaled.max_gradient, large.max_gradient, rtol=0.02)


def _after_pick(seed: int) -> np.random.Generator:
    """The generator state at which deformation_statistics draws its first vectors."""
    rng = np.random.default_rng(seed)
    rng.integers(2**63)  # the seed of its pixel sampler
    return rng


def test_deformation_statistics_draws_the_same_vectors_at_every_size() -> None:
    rng = _after_pick(8)
    vectors = [coarse_displacements(3, 10.0, rng) for _ in range(2)]
    for size in (33, 64, 101):  # the pixel sampler draws from 1089 to 10201 positions
        s = deformation_statistics(size, n_draws=2, rng=8, n_pixels=size)
        for k in range(2):
            field = displacement_field(vectors[k], (size, size))
            assert s.min_det[k] == pytest.approx(jacobian_determinant(field).min())
            assert s.max_gradient[k] == pytest.approx(max_displacement_gradient(field))


def test_deformation_statistics_crop_measures_the_centre_of_the_tile() -> None:
    crop = deformation_statistics(17, crop_from=65, n_draws=1, rng=4, n_pixels=17 * 17)
    field = displacement_field(coarse_displacements(3, 10.0, _after_pick(4)), (65, 65))
    centre = field[:, 24:41, 24:41]
    assert crop.max_gradient[0] == pytest.approx(max_displacement_gradient(centre))
    assert crop.min_det[0] == pytest.approx(jacobian_determinant(centre).min())
    assert crop.label == "17 px, centre of 65, sigma 10"


def test_mask_contrast() -> None:
    image = np.ones((10, 10))
    mask = np.zeros((10, 10), dtype=bool)
    mask[:, 4:6] = True
    image[mask] = 0.0  # a dark line on a bright background
    assert mask_contrast(image, mask) == pytest.approx(1.0 / image.std())
    assert mask_contrast(image, np.roll(mask, 3, axis=1)) < 0  # the shifted mask misses it
    region = np.zeros_like(mask)
    region[:, 3:7] = True  # half dark, half bright: std 0.5
    assert mask_contrast(image, mask, region) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="some but not all"):
        mask_contrast(image, np.zeros_like(mask))
    with pytest.raises(ValueError, match="same shape"):
        mask_contrast(image, mask[:5])


def test_grid_pattern() -> None:
    lines = grid_pattern((40, 50), spacing=16, width=2)
    assert lines.shape == (40, 50) and set(np.unique(lines)) == {0.0, 1.0}
    assert np.all(lines[[0, 1, 16, 17, 32, 33], :] == 1)
    assert np.all(lines[:, [0, 1, 16, 17, 32, 33, 48, 49]] == 1)
    assert lines[5, 5] == lines[20, 40] == 0
    board = grid_pattern((4, 6), spacing=2, kind="checkerboard")
    np.testing.assert_array_equal(board, [[1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1],
                                          [0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 0, 0]])
    with pytest.raises(ValueError, match="kind"):
        grid_pattern((4, 4), kind="dots")


def test_overlay_mask_blends_only_on_the_mask() -> None:
    image = np.array([[0, 255], [51, 102]], dtype=np.uint8)
    mask = np.array([[True, False], [False, True]])
    out = overlay_mask(image, mask, colour=(1.0, 0.0, 0.0), alpha=0.5)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[0, 1], [1.0, 1.0, 1.0])  # off the mask: the grey value
    np.testing.assert_allclose(out[1, 0], [0.2, 0.2, 0.2])
    np.testing.assert_allclose(out[0, 0], [0.5, 0.0, 0.0])  # 0.5 * black + 0.5 * red
    np.testing.assert_allclose(out[1, 1], [0.7, 0.2, 0.2])  # 0.5 * 0.4 + 0.5 * (1, 0, 0)
    rgb = np.zeros((2, 2, 3))
    rgb[..., 2] = [[0.0, 2.0], [4.0, 4.0]]  # float: stretched to [0, 1] over all channels
    np.testing.assert_allclose(overlay_mask(rgb, ~mask, alpha=0.0)[..., 2], [[0, 0.5], [1, 1]])
    with pytest.raises(ValueError, match="does not match"):
        overlay_mask(image, mask[:1])


# -- figures -------------------------------------------------------------------------------------
def test_plot_displacements_draws_the_field_and_the_vectors() -> None:
    coarse = coarse_displacements(3, 10.0, rng=1)
    field = displacement_field(coarse, (97, 129))
    fig, ax = plt.subplots()
    arrows = plot_displacements(ax, np.zeros((97, 129)), coarse, field, step=16, exaggerate=2)
    rows, cols = np.arange(8, 97, 16), np.arange(8, 129, 16)
    assert arrows.dense.N == len(rows) * len(cols) == 6 * 8
    yy, xx = np.meshgrid(rows, cols, indexing="ij")
    np.testing.assert_allclose(arrows.dense.U, field[1][yy, xx].ravel())  # x = column
    np.testing.assert_allclose(arrows.dense.V, field[0][yy, xx].ravel())  # y = row
    np.testing.assert_allclose(arrows.dense.X, xx.ravel())
    assert arrows.coarse.N == 9
    np.testing.assert_allclose(arrows.coarse.U, coarse[1].ravel())
    np.testing.assert_allclose(arrows.coarse.V, coarse[0].ravel())
    np.testing.assert_allclose(np.unique(arrows.coarse.X), [0, 64, 128])  # corners, mid, corner
    np.testing.assert_allclose(np.unique(arrows.coarse.Y), [0, 48, 96])
    assert arrows.dense.scale == arrows.coarse.scale == 0.5  # drawn at twice their length
    # the view leaves room for the longest (exaggerated) vector beyond the border
    assert ax.get_xlim()[0] <= -2 * np.abs(coarse).max()


def test_grid_points_are_corner_aligned() -> None:
    np.testing.assert_allclose(grid_points(512, 3), [0, 255.5, 511])
    np.testing.assert_allclose(grid_points(9, 5), [0, 2, 4, 6, 8])


def test_plot_field_magnitude_shows_the_length_of_the_field() -> None:
    field = linear_field(0.1, 0.0, 0.0, -0.2, shape=(11, 13))
    fig, ax = plt.subplots()
    im = plot_field_magnitude(ax, field)
    np.testing.assert_allclose(im.get_array(), np.hypot(field[0], field[1]))
    assert len(fig.axes) == 2  # with its colour bar
    (points,) = ax.lines
    np.testing.assert_allclose(np.unique(points.get_xdata()), [0, 6, 12])


def test_plot_jacobian_outlines_folds_only_when_there_are_some() -> None:
    det = np.linspace(-0.5, 1.5, 40).reshape(5, 8)
    fig, (with_fold, without) = plt.subplots(1, 2)
    im = plot_jacobian(with_fold, det)
    np.testing.assert_allclose(im.get_array(), det)
    assert im.norm.vcenter == 1.0
    assert len(contours(with_fold)) == 1 and list(contours(with_fold)[0].levels) == [0.0]
    plot_jacobian(without, det + 1.0)
    assert contours(without) == []


def test_plot_augmented_shows_overlays_and_zoomed_windows() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50), dtype=np.uint8) for _ in range(3)]
    masks = [rng.random((40, 50)) < 0.3 for _ in range(3)]
    zoom = (slice(10, 26), slice(20, 36))
    fig = plot_augmented(images, masks, ["a", "b", "c"], zoom=zoom, colour=(1.0, 0.5, 0.0))
    assert len(fig.axes) == 6
    top, bottom = fig.axes[:3], fig.axes[3:]
    for k in range(3):
        (shown,) = top[k].images
        np.testing.assert_allclose(shown.get_array(),
                                   overlay_mask(images[k], masks[k], (1.0, 0.5, 0.0)))
        (window,) = [p for p in top[k].patches if isinstance(p, Rectangle)]
        assert (window.get_x(), window.get_y(), window.get_width()) == (19.5, 9.5, 16)
        (zoomed,) = bottom[k].images
        np.testing.assert_allclose(zoomed.get_array()[..., 0], images[k][zoom] / 255.0)
        assert len(contours(bottom[k])) == 1
    assert [ax.get_title() for ax in top] == ["a", "b", "c"]
    assert len(plot_augmented(images[:2], masks[:2], ["a", "b"]).axes) == 2  # no zoom
    with pytest.raises(ValueError, match="same length"):
        plot_augmented(images, masks[:2], ["a", "b", "c"])


def test_plot_det_histograms_one_histogram_per_entry() -> None:
    stats = [deformation_statistics(n, n_draws=4, rng=n) for n in (33, 65)]
    fig, ax = plt.subplots()
    drawn = plot_det_histograms(ax, stats)
    assert len(drawn) == 2 and ax.get_yscale() == "log"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["33 px, sigma 10", "65 px, sigma 10"]


def test_plot_strain_vs_size_draws_medians_law_and_folds() -> None:
    stats = [deformation_statistics(n, n_draws=20, rng=n) for n in (48, 96, 192)]
    fig, ax = plt.subplots()
    strain, law, folds = plot_strain_vs_size(ax, stats, reference=192)
    np.testing.assert_allclose(strain.get_xdata(), [48, 96, 192])
    np.testing.assert_allclose(strain.get_ydata(), [np.median(s.max_gradient) for s in stats])
    # the law passes through the reference point and falls like 1 / (n - 1)
    x, y = law.get_xdata(), law.get_ydata()
    assert y[-1] == pytest.approx(np.median(stats[2].max_gradient))
    np.testing.assert_allclose(y * (x - 1), y[-1] * 191)
    np.testing.assert_allclose(folds.get_ydata(), [s.fold_probability for s in stats])
    assert stats[0].fold_probability > stats[2].fold_probability == 0.0
