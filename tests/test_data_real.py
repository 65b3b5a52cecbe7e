"""Loaders on the real data sets; skipped unless ``UNET_DATA_DIR`` holds them (a few seconds).

Run with e.g. ``UNET_DATA_DIR=../shared/data pytest tests/test_data_real.py``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unet_core.data import (
    DriveSample,
    IsbiSample,
    PatchSampler,
    load_drive,
    load_isbi2012,
    resolve_dataset,
)

ROOT = Path(os.environ["UNET_DATA_DIR"]) if os.environ.get("UNET_DATA_DIR") else None
needs_drive = pytest.mark.skipif(
    ROOT is None or not (ROOT / "DRIVE" / "training" / "images").is_dir(),
    reason="UNET_DATA_DIR does not hold the real DRIVE",
)
needs_isbi = pytest.mark.skipif(
    ROOT is None or not (ROOT / "isbi2012" / "train" / "images").is_dir(),
    reason="UNET_DATA_DIR does not hold the real isbi2012 (PNG layout)",
)


@pytest.fixture(scope="module")
def drive_training() -> list[DriveSample]:
    assert ROOT is not None
    return load_drive(ROOT / "DRIVE", "training")


@pytest.fixture(scope="module")
def drive_test() -> list[DriveSample]:
    assert ROOT is not None
    return load_drive(ROOT / "DRIVE", "test")


@needs_drive
def test_real_drive_training(drive_training: list[DriveSample]) -> None:
    assert [s.id for s in drive_training] == list(range(21, 41))
    for s in drive_training:
        assert s.image.shape == (584, 565, 3) and s.image.dtype == np.uint8
        assert s.second_observer is None
    vessels = np.mean([s.vessels.mean() for s in drive_training])
    assert vessels == pytest.approx(0.086, abs=0.005)  # the README's 8.6 %
    assert np.mean([s.fov.mean() for s in drive_training]) == pytest.approx(0.68, abs=0.02)


@needs_drive
def test_real_drive_second_observer_is_read_by_palette_index(
    drive_test: list[DriveSample],
) -> None:
    assert [s.id for s in drive_test] == list(range(1, 21))
    assert ROOT is not None
    with Image.open(ROOT / "DRIVE" / "test" / "2nd_manual" / "01_manual2.gif") as im:
        assert im.mode == "P"
    for s in drive_test:
        assert s.second_observer is not None
        assert 0.05 < s.second_observer.mean() < 0.15  # vessels, not the background
        agreement = (s.second_observer == s.vessels)[s.fov].mean()
        assert agreement > 0.9  # DRIVE's inter-observer accuracy is ~0.947


@needs_isbi
def test_real_isbi_png_layout() -> None:
    assert ROOT is not None
    train: list[IsbiSample] = load_isbi2012(ROOT / "isbi2012", "train")
    test = load_isbi2012(ROOT / "isbi2012", "test")
    assert len(train) == 30 and len(test) == 30
    assert all(s.image.shape == (512, 512) and s.membranes is not None for s in train)
    assert all(s.membranes is None for s in test)
    fraction = np.mean([s.membranes.mean() for s in train if s.membranes is not None])
    assert fraction == pytest.approx(0.22, abs=0.01)  # membranes are the minority class
    sampler = PatchSampler([s.image for s in train[:4]], [s.membranes for s in train[:4]],
                           input_size=572, output_size=388, border="overhang", seed=0)
    batch = sampler.sample(2)
    assert batch.image.shape == (2, 1, 572, 572) and batch.target.shape == (2, 388, 388)


@pytest.mark.skipif(ROOT is None or not (ROOT / "DRIVE").is_dir(), reason="no real DRIVE")
def test_resolve_finds_the_real_data() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = resolve_dataset("drive")
    assert ROOT is not None
    assert not found.synthetic and found.root == ROOT / "DRIVE"
