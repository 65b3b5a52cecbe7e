"""The synthetic DRIVE-like and ISBI-like generators and their on-disk writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from unet_core.data import (
    load_drive,
    load_isbi2012,
    synthetic_em,
    synthetic_fundus,
    write_synthetic_drive,
    write_synthetic_isbi2012,
)
from unet_core.data.fields import gaussian_field
from unet_core.data.synthetic_drive import DRIVE_SIZE, _fundus, _second_observer


# -- random fields -----------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [1.5, 6.0, 16.0])  # 16: the coarse-grid path
def test_gaussian_field_is_normalised_and_correlated(sigma: float) -> None:
    f = gaussian_field(np.random.default_rng(0), (400, 380), sigma, count=3)
    assert f.shape == (3, 400, 380) and f.dtype == np.float32
    np.testing.assert_allclose(f.mean(axis=(1, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(f.std(axis=(1, 2)), 1.0, rtol=1e-3)
    lag = max(1, round(sigma))
    corr = float((f[:, :, :-lag] * f[:, :, lag:]).mean())
    assert corr == pytest.approx(np.exp(-(lag**2) / (4 * sigma**2)), abs=0.12)
    neighbour = float((f[:, :-1] * f[:, 1:]).mean())
    assert neighbour > 0.5  # smooth, not white noise


# -- fundus ------------------------------------------------------------------------------------
def test_synthetic_fundus_types_and_determinism() -> None:
    a = synthetic_fundus(np.random.default_rng(7), (96, 90))
    b = synthetic_fundus(np.random.default_rng(7), (96, 90))
    c = synthetic_fundus(np.random.default_rng(8), (96, 90))
    assert a.image.shape == (96, 90, 3) and a.image.dtype == np.uint8
    assert a.vessels.shape == a.fov.shape == (96, 90)
    assert a.vessels.dtype == a.fov.dtype == bool
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.image, c.image)
    assert not (a.vessels & ~a.fov).any()  # vessels only inside the FOV


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_fundus_looks_like_drive(seed: int) -> None:
    """Full size: vessel share, FOV share, darker vessels in green, textured background."""
    f = synthetic_fundus(np.random.default_rng(seed))
    assert f.image.shape == (584, 565, 3)
    assert 0.06 <= f.vessels.mean() <= 0.12  # DRIVE's training masks: 6.0-11.6 %, mean 8.6 %
    assert 0.62 <= f.fov.mean() <= 0.72  # DRIVE: 0.68
    green = f.image[..., 1].astype(float)
    background = f.fov & ~ndi.binary_dilation(f.vessels, iterations=3)
    local = green - ndi.uniform_filter(green, 15)
    assert -14 < local[f.vessels].mean() < -3  # DRIVE: -4 to -8 grey levels
    assert green[f.vessels].mean() < green[background].mean() - 3
    assert f.image[..., 0][f.fov].mean() > green[f.fov].mean()  # fundus red > green
    assert f.image[~f.fov].mean() < 15  # dark outside the aperture
    assert green[background].std() > 4  # illumination, texture, disc: not a flat background
    # a tree of many widths, not a few lines
    widths = 2 * ndi.distance_transform_edt(f.vessels)[f.vessels]
    assert widths.max() >= 7 and np.median(widths) <= 4


def test_synthetic_fundus_vessel_fraction_can_be_set() -> None:
    low = synthetic_fundus(np.random.default_rng(3), vessel_fraction=0.05)
    high = synthetic_fundus(np.random.default_rng(3), vessel_fraction=0.11)
    assert low.vessels.mean() == pytest.approx(0.05, abs=0.015)
    assert high.vessels.mean() == pytest.approx(0.11, abs=0.02)
    with pytest.raises(ValueError, match="vessel_fraction"):
        synthetic_fundus(np.random.default_rng(3), (64, 64), vessel_fraction=0.9)
    with pytest.raises(ValueError, match="too small"):
        synthetic_fundus(np.random.default_rng(3), (8, 64))


def test_second_observer_disagrees_like_drives() -> None:
    """DRIVE's second observer scores an accuracy of 0.947 inside the FOV."""
    rng = np.random.default_rng(11)
    sample, branches, _ = _fundus(rng, DRIVE_SIZE, None)
    second = _second_observer(rng, branches, DRIVE_SIZE, sample.fov)
    accuracy = (second == sample.vessels)[sample.fov].mean()
    assert 0.9 < accuracy < 0.98
    assert not (second & ~sample.fov).any()


# -- EM ----------------------------------------------------------------------------------------
def test_synthetic_em_types_and_determinism() -> None:
    a = synthetic_em(np.random.default_rng(5), 64)
    b = synthetic_em(np.random.default_rng(5), 64)
    assert a.image.shape == (64, 64) and a.image.dtype == np.uint8
    assert a.membranes.dtype == bool and a.instances.dtype == np.int32
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert synthetic_em(np.random.default_rng(5), (40, 56)).image.shape == (40, 56)
    # instances: 0 exactly on membranes, each cell one 4-connected interior
    np.testing.assert_array_equal(a.instances == 0, a.membranes)
    labelled, n = ndi.label(~a.membranes)
    assert n == a.instances.max()


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_em_looks_like_isbi(seed: int) -> None:
    em = synthetic_em(np.random.default_rng(seed))
    image = em.image.astype(float)
    assert em.image.shape == (512, 512)
    assert 0.17 <= em.membranes.mean() <= 0.27  # ISBI 2012 training labels: 0.17-0.27
    assert image[em.membranes].mean() < image[~em.membranes].mean() - 35  # ISBI: ~95 vs ~150
    assert image[~em.membranes].std() > 20  # textured cells with organelles, not flat
    sizes = np.bincount(em.instances.ravel())[1:]
    assert 80 <= sizes.size <= 200  # ISBI: 118-136 cells per slice
    assert 300 <= np.median(sizes) <= 1500  # ISBI: median ~550-600 px
    # organelles: dark pixels inside cells, which are not membrane
    inside = ndi.binary_erosion(~em.membranes, iterations=4)
    assert (image[inside] < image[em.membranes].mean()).mean() > 0.01


# -- writers and loaders agree -----------------------------------------------------------------
def test_write_synthetic_drive_round_trip(tmp_path: Path) -> None:
    root = write_synthetic_drive(tmp_path / "DRIVE", n_train=2, n_test=2, size=(64, 60), seed=3)
    assert root == tmp_path / "DRIVE"
    assert sorted(p.name for p in (root / "training" / "images").iterdir()) == [
        "21_training.tif", "22_training.tif",
    ]
    with Image.open(root / "training" / "1st_manual" / "21_manual1.gif") as im:
        assert im.mode == "L"  # like DRIVE's
    with Image.open(root / "test" / "2nd_manual" / "01_manual2.gif") as im:
        assert im.mode == "P" and set(np.unique(np.asarray(im))) <= {0, 1}
    with Image.open(root / "test" / "images" / "01_test.tif") as im:
        assert im.mode == "RGB" and im.size == (60, 64)
    train, test = load_drive(root, "training"), load_drive(root, "test")
    assert [s.name for s in train] == ["21_training", "22_training"]
    assert [s.name for s in test] == ["01_test", "02_test"]
    for s in test:
        assert s.second_observer is not None and s.second_observer.shape == (64, 60)
        overlap = (s.second_observer & s.vessels).sum() / max(s.vessels.sum(), 1)
        assert overlap > 0.5  # a second observer agrees mostly, not exactly
    # deterministic, and an image does not depend on how many were written
    again = write_synthetic_drive(tmp_path / "again", n_train=1, n_test=2, size=(64, 60), seed=3)
    first = load_drive(again, "training")[0]
    np.testing.assert_array_equal(first.image, train[0].image)
    np.testing.assert_array_equal(first.vessels, train[0].vessels)
    other = write_synthetic_drive(tmp_path / "other", n_train=1, n_test=0, size=(64, 60), seed=4)
    assert not np.array_equal(load_drive(other, "training")[0].image, train[0].image)


def test_write_synthetic_isbi_round_trip(tmp_path: Path) -> None:
    root = write_synthetic_isbi2012(tmp_path / "isbi2012", n_train=3, n_test=2, size=48, seed=1)
    assert sorted(p.name for p in (root / "train" / "labels").iterdir()) == [
        "00.png", "01.png", "02.png",
    ]
    assert not (root / "test" / "labels").exists()  # like the real one: no public labels
    with Image.open(root / "train" / "labels" / "00.png") as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im))) == {0, 255}
    train = load_isbi2012(root)
    direct = synthetic_em(np.random.default_rng([1, 0, 0]), 48)
    np.testing.assert_array_equal(train[0].image, direct.image)
    np.testing.assert_array_equal(train[0].membranes, direct.membranes)  # 0 = membrane
    test = load_isbi2012(root, "test")
    assert len(test) == 2 and test[0].membranes is None


@pytest.mark.parametrize("writer", [write_synthetic_drive, write_synthetic_isbi2012])
def test_writers_reject_empty_requests(writer, tmp_path: Path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="n_train"):
        writer(tmp_path, n_train=0, n_test=0)
