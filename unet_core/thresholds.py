"""Which images choose the binarisation threshold, and the F1 optimum over them.

The paper binarises the softmax at 0.5; this project may instead pick the threshold that
maximises the F1 score pooled over ``THRESHOLD_IMAGES``: ``"training_set"`` (every official
training image: those trained on and the validation images) or ``"validation"`` (the held-out
validation images only). The test set is never a choice. Explained in chapters 5 and 6;
:func:`unet_train.evaluation.choose_threshold` applies it to a trained model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unet_core.metrics import best_threshold

#: ``TrainConfig.threshold_images`` choices.
THRESHOLD_IMAGES: tuple[str, ...] = ("training_set", "validation")


def f1_optimum(
    probs: Sequence[np.ndarray], targets: Sequence[np.ndarray],
    fovs: Sequence[np.ndarray | None], names: Sequence[str],
) -> dict[str, Any]:
    """Pooled F1 optimum of a set of images, and each image's own optimum (how much they
    disagree). ``fovs`` are all ``None`` (ISBI 2012) or all masks (DRIVE)."""
    best = best_threshold(list(probs), list(targets), None if fovs[0] is None else list(fovs))
    per_image = [best_threshold(p, t, f) for p, t, f in zip(probs, targets, fovs, strict=True)]
    return {"threshold": best.threshold, "f1": best.value, "n_images": len(names),
            "per_image": [{"name": n, "threshold": b.threshold, "f1": b.value}
                          for n, b in zip(names, per_image, strict=True)]}
