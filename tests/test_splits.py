"""The train / validation / test splits of a config's data set (unet_core.data.splits)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet_core.data import write_synthetic_isbi2012
from unet_core.data.splits import ISBI_TEST_SLICES, load_data
from unet_train.config import TrainConfig


def smoke(**overrides) -> TrainConfig:
    return TrainConfig.from_profile("smoke", **overrides)


def test_drive_splits_hold_out_the_last_training_images(small_data_root):
    data = load_data(smoke(val_images=1), small_data_root)
    assert data.dataset == "drive" and data.root == small_data_root / "DRIVE"
    assert [e.name for e in data.train] == ["21_training", "22_training"]
    assert [e.name for e in data.val] == ["23_training"]
    assert [e.name for e in data.test] == ["01_test", "02_test"]
    two = load_data(smoke(val_images=2), small_data_root)
    assert [e.name for e in two.train] == ["21_training"]
    assert [e.name for e in two.val] == ["22_training", "23_training"]
    assert [e.name for e in two.test] == ["01_test", "02_test"]


def test_drive_examples_are_the_files_on_disk(small_data_root):
    data = load_data(smoke(), small_data_root)
    drive = small_data_root / "DRIVE"
    for split, examples in (("training", [*data.train, *data.val]), ("test", data.test)):
        for e in examples:
            raw = np.asarray(Image.open(drive / split / "images" / f"{e.name}.tif"))
            vessels = np.asarray(Image.open(
                drive / split / "1st_manual" / f"{e.name.split('_')[0]}_manual1.gif"))
            assert e.image.shape == (72, 68, 3) and e.image.dtype == np.float32
            np.testing.assert_allclose(e.image, raw / 255.0, atol=1e-6)
            assert e.target.dtype == bool and e.fov.dtype == bool
            assert np.array_equal(e.target, vessels > 0)
            assert 0 < e.fov.mean() < 1 and 0 < e.target[e.fov].mean() < 0.5
    assert all(e.second_observer is not None for e in data.test)
    assert all(e.second_observer is None for e in data.train)
    assert data.in_channels == 3


@pytest.mark.parametrize("channels, n", [("rgb", 3), ("green", 1), ("gray", 1)])
def test_drive_channels(small_data_root, channels, n):
    data = load_data(smoke(channels=channels), small_data_root)
    rgb = load_data(smoke(channels="rgb"), small_data_root).train[0].image
    image = data.train[0].image
    assert image.shape == (72, 68, n) and data.in_channels == n
    if channels == "green":
        assert np.array_equal(image[:, :, 0], rgb[:, :, 1])
    if channels == "gray":
        want = rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114
        np.testing.assert_allclose(image[:, :, 0], want, atol=1e-6)


def test_isbi_holds_out_the_last_slices_for_testing(small_data_root):
    data = load_data(smoke(dataset="isbi2012", val_images=1, isbi_gap=0), small_data_root)
    assert ISBI_TEST_SLICES == 5
    # 10 labelled slices: 5 held out for testing, no gap here, 1 validation, 4 training.
    assert [e.name for e in data.train] == ["00", "01", "02", "03"]
    assert [e.name for e in data.val] == ["04"]
    assert [e.name for e in data.test] == ["05", "06", "07", "08", "09"]
    for e in [*data.train, *data.val, *data.test]:
        assert e.fov is None and e.target.dtype == bool and e.image.shape == (64, 64, 1)
        label = np.asarray(Image.open(small_data_root / "isbi2012" / "train" / "labels"
                                      / f"{e.name}.png"))
        assert np.array_equal(e.target, label == 0)  # membranes = not cell interior
    assert data.in_channels == 1


def test_isbi_gap_slices_are_neither_trained_nor_validated_on(small_data_root):
    """The default gap of 2 leaves slices 03 and 04 out: the last slice trained or validated
    on (02) is three sections from the first held-out one (05)."""
    data = load_data(smoke(dataset="isbi2012", val_images=1), small_data_root)
    assert [e.name for e in data.train] == ["00", "01"] and [e.name for e in data.val] == ["02"]
    assert [e.name for e in data.test] == ["05", "06", "07", "08", "09"]


def test_train_images_keeps_the_first_ones(small_data_root):
    data = load_data(smoke(val_images=1, train_images=1), small_data_root)
    assert [e.name for e in data.train] == ["21_training"]
    assert [e.name for e in data.val] == ["23_training"]
    with pytest.raises(ValueError, match="train_images=3 but only 2 training images remain"):
        load_data(smoke(val_images=1, train_images=3), small_data_root)


def test_isbi_with_too_few_slices_is_refused(tmp_path):
    write_synthetic_isbi2012(tmp_path / "isbi2012", n_train=6, n_test=1, size=32, seed=0)
    with pytest.raises(ValueError, match="has 6 labelled slices: need more than 5 held-out "
                                         r"\+ 2 gap \(isbi_gap\) \+ 0 validation"):
        load_data(smoke(dataset="isbi2012", val_images=0, tune_threshold=False), tmp_path)
    data = load_data(smoke(dataset="isbi2012", val_images=0, tune_threshold=False, isbi_gap=0),
                     tmp_path)
    assert len(data.train) == 1 and data.val == [] and len(data.test) == 5


def test_too_many_validation_images_is_refused(small_data_root: Path):
    with pytest.raises(ValueError, match="val_images=3 leaves no training image"):
        load_data(smoke(val_images=3), small_data_root)
