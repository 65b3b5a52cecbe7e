"""The train / validation / test splits of a config's data set, as :class:`Example` s.

DRIVE: the official 20 training images minus the last ``val_images`` (validation), and the
official 20 test images (evaluated inside the FOV against ``1st_manual``).
ISBI 2012: slices 25-29 are the held-out test set (the challenge's test labels are not
public); the ``isbi_gap`` slices before them (default 2: slices 23 and 24) are left out, so
that no slice trained or validated on is adjacent to a held-out one; the rest, minus the last
``val_images``, train.
ISBI 2012 cross-validation (``cv_folds`` > 1, :func:`isbi_folds`): the slices are cut into
``cv_folds`` consecutive folds; fold ``cv_fold`` is the test set, the ``isbi_gap`` slices on
each side of it are left out, and the last ``val_images`` of the remaining slices validate.
``train_images`` (> 0) keeps only that many training images, from the ``train_start``-th on
(DRIVE: 21_training is the 0th), a fixed choice for studies of learning from few images.

Used by training (:mod:`unet_train.train`), evaluation and the book's chapters 5-9.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from unet_core.data.prepare import prepare_image
from unet_core.data.resolve import resolve_dataset

ISBI_TEST_SLICES = 5  # ISBI 2012 has no public test labels: hold out slices 25-29


class SplitConfig(Protocol):
    """The fields of a run's config that choose its data and splits (``unet_train``'s
    ``TrainConfig`` has them; this package does not import it)."""

    dataset: str  # "drive" or "isbi2012"
    channels: str  # DRIVE's input channels: "rgb", "green", "gray" or "green_clahe"
    val_images: int  # the last training images kept for validation
    isbi_gap: int  # ISBI slices left out beside the test slices
    cv_folds: int  # 0: the fixed split; > 1: cross-validation folds
    cv_fold: int  # the fold tested
    train_images: int  # 0: all; > 0: only that many training images
    train_start: int  # ... from this one on


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


def load_data(cfg: SplitConfig, data_root: str | Path | None = None) -> DataBundle:
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
        if cfg.cv_folds:
            train_idx, test_idx = isbi_folds(len(examples), cfg.cv_folds, cfg.cv_fold,
                                             cfg.isbi_gap)
            train_all = [examples[i] for i in train_idx]
            test = [examples[i] for i in test_idx]
        else:
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
        if cfg.train_start + cfg.train_images > len(train):
            raise ValueError(f"train_start={cfg.train_start} with train_images="
                             f"{cfg.train_images} needs {cfg.train_start + cfg.train_images} "
                             f"training images; {len(train)} remain after val_images="
                             f"{cfg.val_images}")
        train = train[cfg.train_start:cfg.train_start + cfg.train_images]
    return DataBundle(cfg.dataset, resolved.root, resolved.synthetic, train, train_all[cut:], test)


def isbi_folds(n: int, folds: int, fold: int, gap: int) -> tuple[list[int], list[int]]:
    """``(train and validation slices, test slices)`` of one cross-validation fold.

    The ``n`` slices are cut into ``folds`` consecutive folds as equal as possible (the first
    ``n % folds`` one slice longer); fold ``fold`` is the test set and the ``gap`` slices on
    each side of it belong to no set, so no slice trained or validated on is within ``gap``
    of a test slice (serial sections look alike). 30 slices, 5 folds, gap 2: fold 2 tests
    slices 12-17 and leaves out 10-11 and 18-19.
    """
    if not 2 <= folds <= n or not 0 <= fold < folds or gap < 0:
        raise ValueError(f"need 2 <= folds <= {n} slices, 0 <= fold < folds and gap >= 0, got "
                         f"folds={folds}, fold={fold}, gap={gap}")
    bounds = np.cumsum([0] + [n // folds + (k < n % folds) for k in range(folds)])
    start, stop = int(bounds[fold]), int(bounds[fold + 1])
    rest = [i for i in range(n) if i < start - gap or i >= stop + gap]
    if not rest:
        raise ValueError(f"fold {fold} of {folds} with gap {gap} leaves no slice to train on")
    return rest, list(range(start, stop))
