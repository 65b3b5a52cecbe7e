"""The train / validation / test splits of a config's data set, as :class:`Example` s.

DRIVE: the official 20 training images minus the last ``val_images`` (validation), and the
official 20 test images (evaluated inside the FOV against ``1st_manual``).
ISBI 2012: slices 25-29 are the held-out test set (the challenge's test labels are not
public); the ``isbi_gap`` slices before them (default 2: slices 23 and 24) are left out, so
that no slice trained or validated on is adjacent to a held-out one; the rest, minus the last
``val_images``, train.
``train_images`` (> 0) keeps only the first that many training images (DRIVE: 21_training
first), a fixed choice for studies of learning from few images.

Used by training (:mod:`unet_core.train`), evaluation and the book's chapters 5-9.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.config import TrainConfig
from unet_core.data.prepare import prepare_image
from unet_core.data.resolve import resolve_dataset

ISBI_TEST_SLICES = 5  # ISBI 2012 has no public test labels: hold out slices 25-29


@dataclass(frozen=True, eq=False)
class Example:
    """One image ready for training or evaluation."""

    name: str
    image: np.ndarray = field(repr=False)  # (H, W, C) float32 in [0, 1]
    target: np.ndarray = field(repr=False)  # (H, W) bool: vessel (DRIVE) or membrane (ISBI)
    fov: np.ndarray | None = field(repr=False)  # (H, W) bool, None = everywhere
    second_observer: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DataBundle:
    dataset: str
    root: Path
    synthetic: bool
    train: list[Example]
    val: list[Example]
    test: list[Example]

    @property
    def in_channels(self) -> int:
        return int(self.train[0].image.shape[2])


def load_data(cfg: TrainConfig, data_root: str | Path | None = None) -> DataBundle:
    """Load the config's data set (real if present, else synthetic) and split it."""
    resolved = resolve_dataset(cfg.dataset, data_root)
    if cfg.dataset == "drive":
        train_s = resolved.load("training")
        test_s = resolved.load("test")

        def convert(s: Any) -> Example:
            return Example(s.name, prepare_image(s.image, cfg.channels), s.vessels, s.fov,
                           s.second_observer)

        train_all = [convert(s) for s in train_s]
        test = [convert(s) for s in test_s]
    else:
        slices = resolved.load("train")
        examples = [
            Example(s.name, prepare_image(s.image), s.membranes, None) for s in slices
        ]
        if len(examples) <= ISBI_TEST_SLICES + cfg.isbi_gap + cfg.val_images:
            raise ValueError(
                f"ISBI 2012 at {resolved.root} has {len(examples)} labelled slices: need more "
                f"than {ISBI_TEST_SLICES} held-out + {cfg.isbi_gap} gap (isbi_gap) + "
                f"{cfg.val_images} validation slices"
            )
        before = len(examples) - ISBI_TEST_SLICES - cfg.isbi_gap
        train_all, test = examples[:before], examples[-ISBI_TEST_SLICES:]
    if cfg.val_images >= len(train_all):
        raise ValueError(
            f"val_images={cfg.val_images} leaves no training image ({len(train_all)} available)"
        )
    cut = len(train_all) - cfg.val_images
    train = train_all[:cut]
    if cfg.train_images:
        if cfg.train_images > len(train):
            raise ValueError(f"train_images={cfg.train_images} but only {len(train)} training "
                             f"images remain after val_images={cfg.val_images}")
        train = train[:cfg.train_images]
    return DataBundle(cfg.dataset, resolved.root, resolved.synthetic, train, train_all[cut:], test)
