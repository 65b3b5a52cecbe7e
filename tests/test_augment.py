"""Tests for unet_core.augment: the paper's elastic deformation (Sec. 3.1) and the alternatives."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from unet_core.augment import (
    AlbumentationsAugmentation,
    ElasticDeformation,
    NoAugmentation,
    albumentations_pipeline,
    coarse_displacements,
    displacement_field,
    elastic_deform,
    make_augmentation,
    tile_displacement_field,
    warp,
)


def blobs(shape: tuple[int, int], seed: int = 0, n: int = 6) -> np.ndarray:
    """Integer instance image with ``n`` disks (labels 1..n) on background 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, dtype=np.int64)
    for k in range(1, n + 1):
        cy, cx = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(16, 64)] = k
    return labels


@pytest.fixture(scope="module")
def alb() -> AlbumentationsAugmentation:
    return albumentations_pipeline()


# -- building blocks ------------------------------------------------------------------------------
def test_coarse_displacements_have_requested_std() -> None:
    rng = np.random.default_rng(123)
    draws = np.stack([coarse_displacements(3, 10.0, rng) for _ in range(2000)])
    assert draws.shape == (2000, 2, 3, 3)
    # 36,000 samples: the standard error of the std is 10 / sqrt(2 * 36000) ~ 0.04 px.
    assert draws.std() == pytest.approx(10.0, abs=0.2)
    assert abs(draws.mean()) < 0.2
    # every grid point and both components have the same spread
    per_entry = draws.std(axis=0)
    assert np.all(np.abs(per_entry - 10.0) < 0.6)  # 2000 samples each: s.e. ~ 0.16 px


def test_displacement_field_interpolates_corner_aligned_grid() -> None:
    coarse = coarse_displacements(3, 10.0, rng=7)
    field = displacement_field(coarse, (41, 61))  # grid points at rows 0/20/40, cols 0/30/60
    assert field.shape == (2, 41, 61)
    np.testing.assert_allclose(field[:, ::20, ::30], coarse, atol=1e-9)
    # a constant coarse field is a translation (the spline reproduces constants)
    shift = np.stack([np.full((3, 3), 2.5), np.full((3, 3), -1.25)])
    np.testing.assert_allclose(displacement_field(shift, (17, 9)),
                               shift[:, :1, :1] * np.ones((2, 17, 9)), atol=1e-12)
    # smooth: neighbouring pixels differ by far less than sigma
    big = displacement_field(coarse, (572, 572))
    assert np.abs(np.diff(big, axis=1)).max() < 0.5
    assert np.abs(np.diff(big, axis=2)).max() < 0.5


def test_warp_integer_shift_mirrors_at_border() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((20, 30))
    field = np.zeros((2, 20, 30))
    field[0] = -3.0  # out[y, x] = in[y - 3, x]: the top rows come from the mirror image
    expected = np.pad(image, ((3, 0), (0, 0)), mode="reflect")[:20]  # numpy reflect = d c b|a b
    np.testing.assert_allclose(warp(image, field, order=3), expected, atol=1e-9)
    np.testing.assert_array_equal(warp(image, field, order=0), expected)
    labels = blobs((20, 30))
    np.testing.assert_array_equal(
        warp(labels, field, order=0), np.pad(labels, ((3, 0), (0, 0)), mode="reflect")[:20]
    )


# -- elastic_deform -------------------------------------------------------------------------------
def test_identity_at_sigma_zero_is_exact() -> None:
    rng = np.random.default_rng(1)
    image = rng.random((37, 53)).astype(np.float32)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    labels = blobs((37, 53))
    fov = labels > 0
    for img in (image, rgb):
        out = elastic_deform(img, labels, fov, sigma=0.0, rng=5)
        assert len(out) == 3
        for before, after in zip((img, labels, fov), out, strict=True):
            assert after.dtype == before.dtype
            np.testing.assert_array_equal(after, before)
            assert after is not before


def test_masks_stay_binary_and_label_valued() -> None:
    labels = blobs((96, 96), seed=3)
    binary = labels > 0
    mask255 = np.where(binary, 255, 0).astype(np.uint8)
    image = np.random.default_rng(0).random((96, 96))
    for seed in range(5):
        _, lab, fov, m255 = elastic_deform(image, labels, binary, mask255, sigma=10.0, rng=seed)
        assert fov.dtype == bool and lab.dtype == labels.dtype and m255.dtype == np.uint8
        assert set(np.unique(m255)) <= {0, 255}
        assert set(np.unique(lab)) <= set(np.unique(labels))
        np.testing.assert_array_equal(fov, lab > 0)  # the masks moved identically
        assert not np.array_equal(fov, binary)  # and they did move


def test_image_and_mask_move_together() -> None:
    """A Gaussian dot in the image and a disk around the same centre in the mask end up at the
    output pixel whose sampling position ``p + field(p)`` is closest to the dot."""
    shape, dot, sigma = (96, 96), np.array([40.0, 55.0]), 6.0
    yy, xx = np.indices(shape)
    r2 = (yy - dot[0]) ** 2 + (xx - dot[1]) ** 2
    image = np.exp(-r2 / (2 * 2.0**2))
    mask = r2 <= 9
    moves = []
    for seed in range(8):
        out_image, out_mask = elastic_deform(image, mask, sigma=sigma, rng=seed)
        field = displacement_field(coarse_displacements(3, sigma, rng=seed), shape)
        distance = np.hypot(yy + field[0] - dot[0], xx + field[1] - dot[1])
        predicted = np.unravel_index(np.argmin(distance), shape)
        moves.append(np.hypot(*(np.array(predicted) - dot)))

        assert np.unravel_index(np.argmax(out_image), shape) == predicted
        assert out_mask[predicted]
        centroid = np.argwhere(out_mask).mean(axis=0)
        assert np.hypot(*(centroid - np.array(predicted))) <= 1.0
    assert min(moves) >= 2.0  # the dot really moved every time (up to 15 px)


def test_determinism_by_seed_and_generator() -> None:
    image = np.random.default_rng(0).random((64, 48, 3)).astype(np.float32)
    labels = blobs((64, 48))
    a = elastic_deform(image, labels, rng=42)
    b = elastic_deform(image, labels, rng=42)
    c = elastic_deform(image, labels, rng=43)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    first, second = elastic_deform(image, rng=g1), elastic_deform(image, rng=g1)
    np.testing.assert_array_equal(first[0], elastic_deform(image, rng=g2)[0])
    assert not np.array_equal(first[0], second[0])  # the generator advanced


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((50, 70), np.float32), ((50, 70), np.float64), ((64, 64, 3), np.uint8),
     ((40, 33, 3), np.float32), ((30, 30), np.uint16)],
)
def test_shapes_and_dtypes(shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.integer):
        image = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    else:
        image = rng.random(shape).astype(dtype)
    mask = rng.random(shape[:2]) > 0.5
    out, out_mask = elastic_deform(image, mask, rng=1)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out_mask.shape == mask.shape and out_mask.dtype == bool
    (alone,) = elastic_deform(image, rng=1)
    np.testing.assert_array_equal(alone, out)  # masks do not change the image's deformation


def test_channels_share_one_deformation() -> None:
    gray = np.random.default_rng(2).random((48, 40))
    rgb = np.stack([gray, 2 * gray, 3 * gray], axis=-1)
    (out_rgb,) = elastic_deform(rgb, rng=4)
    (out_gray,) = elastic_deform(gray, rng=4)
    for ch, factor in enumerate((1, 2, 3)):
        np.testing.assert_allclose(out_rgb[..., ch], factor * out_gray, atol=1e-12)


def test_bad_arguments_name_the_argument() -> None:
    image = np.zeros((32, 32))
    with pytest.raises(ValueError, match="sigma"):
        elastic_deform(image, sigma=-1.0)
    with pytest.raises(ValueError, match="sigma"):
        elastic_deform(image, sigma=float("nan"))
    with pytest.raises(ValueError, match="grid"):
        elastic_deform(image, grid=1)
    with pytest.raises(ValueError, match="grid"):
        elastic_deform(image, grid=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"masks\[1\]"):
        elastic_deform(image, np.zeros((32, 32), bool), np.zeros((32, 31), bool))
    with pytest.raises(ValueError, match="order"):
        elastic_deform(image, order=6)
    with pytest.raises(ValueError, match="image"):
        elastic_deform(np.zeros((4, 4, 3, 2)))
    with pytest.raises(ValueError, match="rng"):
        elastic_deform(image, rng="seed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grid"):
        coarse_displacements(grid=0)
    with pytest.raises(ValueError, match="field"):
        warp(image, np.zeros((2, 31, 32)))


# -- albumentations and the factory ---------------------------------------------------------------
def test_albumentations_deterministic_per_rng(alb: AlbumentationsAugmentation) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    labels = blobs((64, 64))
    a = alb(image, labels, rng=5)
    b = alb(image, labels, rng=5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    outs = [alb(image, labels, rng=s)[0] for s in range(6)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    for _ in range(3):
        np.testing.assert_array_equal(alb(image, rng=g1)[0], alb(image, rng=g2)[0])


def test_albumentations_masks_and_dtypes(alb: AlbumentationsAugmentation) -> None:
    rng = np.random.default_rng(1)
    labels = blobs((80, 80), seed=2)
    fov = labels > 0
    for image in (rng.integers(0, 256, (80, 80), dtype=np.uint8),
                  rng.random((80, 80, 3)).astype(np.float32), rng.random((80, 80))):
        for seed in range(4):
            out, lab, mask = alb(image, labels, fov, rng=seed)
            assert out.dtype == image.dtype and out.shape == image.shape
            assert lab.dtype == labels.dtype and mask.dtype == bool
            assert set(np.unique(lab)) <= set(np.unique(labels))
            np.testing.assert_array_equal(mask, lab > 0)


def test_albumentations_keeps_non_square_shape(alb: AlbumentationsAugmentation) -> None:
    image = np.random.default_rng(0).random((60, 44)).astype(np.float32)
    for seed in range(6):
        out, mask = alb(image, image > 0.5, rng=seed)
        assert out.shape == (60, 44) and mask.shape == (60, 44)


def test_albumentations_image_and_masks_move_together() -> None:
    labels = blobs((64, 64), seed=5)
    image = (labels * 30).astype(np.uint8)
    exact = albumentations_pipeline(elastic_p=0, grid_distortion_p=0, brightness_contrast_p=0)
    for seed in range(16):
        out, lab = exact(image, labels, rng=seed)
        np.testing.assert_array_equal(out, (lab * 30).astype(np.uint8))  # pure permutations
    warped = albumentations_pipeline(elastic_p=1, grid_distortion_p=1, brightness_contrast_p=0)
    for seed in range(4):
        out, lab = warped(image, labels, rng=seed)
        assert not np.array_equal(lab, labels)
        # bilinear image vs nearest-neighbour labels: equal away from label edges
        inner = ndimage.maximum_filter(lab, 5) == ndimage.minimum_filter(lab, 5)
        assert np.mean((out == lab * 30)[inner]) > 0.98


def test_albumentations_sibling_transforms_are_independent() -> None:
    """Flips must not be correlated (albumentations' Compose(seed=...) makes them so)."""
    flips_only = albumentations_pipeline(rotate90=False, elastic_p=0, grid_distortion_p=0,
                                         brightness_contrast_p=0)
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    corners = {int(flips_only(image, rng=s)[0][0, 0]) for s in range(40)}
    assert corners == {0, 3, 12, 15}  # identity, h-flip, v-flip, both


def test_make_augmentation() -> None:
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    mask = image > 0.5
    paper = make_augmentation("paper", sigma=5.0)
    assert isinstance(paper, ElasticDeformation) and paper.sigma == 5.0
    for x, y in zip(paper(image, mask, rng=3), elastic_deform(image, mask, sigma=5.0, rng=3),
                    strict=True):
        np.testing.assert_array_equal(x, y)
    none = make_augmentation("none")
    assert isinstance(none, NoAugmentation)
    out, out_mask = none(image, mask, rng=0)
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(out_mask, mask)
    assert isinstance(make_augmentation("albumentations", elastic_p=0.0),
                      AlbumentationsAugmentation)
    with pytest.raises(ValueError, match="paper, paper_full, albumentations, "
                                         "albumentations_paper_elastic, none"):
        make_augmentation("imgaug")
    with pytest.raises(ValueError, match="sigma"):
        make_augmentation("paper", sigma=-2)
    with pytest.raises(ValueError, match="elastic_p"):
        make_augmentation("albumentations", elastic_p=2.0)
    with pytest.raises(ValueError, match="masks"):
        none(image, mask[:-1])


def test_tile_field_is_a_window_of_the_tile_field() -> None:
    """``tile_displacement_field`` equals the matching rows and columns of the whole tile's
    field (the patch is cut from the deformed tile)."""
    coarse = coarse_displacements(3, 10.0, np.random.default_rng(0))
    whole = displacement_field(coarse, (101, 101))
    window = tile_displacement_field(coarse, 101, (13, 40, 30, 25))
    np.testing.assert_allclose(window, whole[:, 13:43, 40:65], atol=1e-12)


def _max_gradient(field: np.ndarray) -> float:
    grads = [np.abs(g) for comp in field for g in np.gradient(comp)]
    return float(max(g.max() for g in grads))


def test_paper_scale_tile_keeps_the_paper_strain_on_small_patches() -> None:
    """The grid over a 572-pixel tile deforms a 128-pixel patch as gently as the paper's
    tiles (median largest displacement gradient ~0.14 at 572, ~0.64 with the grid on the
    patch itself), and the patch's position in the tile is drawn from the generator."""
    rng = np.random.default_rng(1)
    on_patch, in_tile = [], []
    for _ in range(60):
        coarse = coarse_displacements(3, 10.0, rng)
        on_patch.append(_max_gradient(displacement_field(coarse, (128, 128))))
        top, left = rng.integers(0, 572 - 128 + 1, size=2)
        in_tile.append(_max_gradient(tile_displacement_field(coarse, 572, (top, left, 128,
                                                                           128))))
    assert 0.5 < np.median(on_patch) < 0.8
    assert np.median(in_tile) < 0.16
    image = np.random.default_rng(2).random((128 + 2 * 8, 128 + 2 * 8)).astype(np.float32)
    deform = ElasticDeformation(tile=572, context=8)
    a, b = deform(image, rng=5)[0], deform(image, rng=5)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, deform(image, rng=6)[0])


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"tile": 1}, "tile must be None or an integer >= 2"),
    ({"context": 4}, "context needs a tile"),
    ({"tile": 64, "context": -1}, "context must be an integer >= 0"),
])
def test_tile_arguments_are_checked(kwargs, pattern) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=pattern):
        ElasticDeformation(**kwargs)


def test_patch_larger_than_tile_is_refused() -> None:
    with pytest.raises(ValueError, match="must fit in the 64x64 tile"):
        elastic_deform(np.zeros((80, 80), np.float32), tile=64, rng=0)
