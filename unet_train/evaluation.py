"""Evaluating a trained model: overlap-tile probabilities, metrics, and the threshold choice.

* :func:`predict_probability`: the foreground probability of one prepared image, computed with
  overlap-tile inference (paper Sec. 2, Fig. 2; :func:`unet_core.tiling.predict_tiled`) and
  the config's test-time augmentation.
* :func:`evaluate`: pooled, mean and per-image metrics of a set of images (DRIVE inside the
  FOV; ISBI 2012 adds pixel, Rand and VI errors).
* :func:`choose_threshold`: the threshold of a trained model, chosen on training-set images,
  never on the test set (:mod:`unet_core.thresholds`).

Explained in chapters 2 (tiling), 5 (training) and 6 (results).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unet_core.data.splits import DataBundle, Example
from unet_core.losses import foreground_probability
from unet_core.metrics import evaluate_set, pixel_error, rand_error, variation_of_information
from unet_core.model import UNet
from unet_core.thresholds import f1_optimum
from unet_core.tiling import predict_tiled
from unet_train.config import TrainConfig
from unet_train.placement import INFER_BATCH, Placement, choose, in_memory_format


def predict_probability(model: UNet, image: np.ndarray, cfg: TrainConfig,
                        placement: Placement | None = None) -> np.ndarray:
    """Foreground probability ``(H, W)`` of a prepared ``(H, W, C)`` image (overlap-tile).

    Runs on the model's device under ``torch.inference_mode``, in the inference placement
    (precision and memory format) that :func:`unet_train.placement.choose` gives ``cfg`` on this
    machine, unless ``placement`` is given. The model is put in that memory format for the call
    and back afterwards, so the same weights give the same numbers during training and after
    :func:`unet_train.runs.load_model` (the memory format alone changes fp32 convolutions in the
    7th digit on some CPUs).
    """
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, 2, 0)))  # (C, H, W)
    device = next(model.parameters()).device
    placement = placement or choose(cfg, model, device, "infer")
    with in_memory_format(model, placement.channels_last):
        logits = predict_tiled(
            model, x, cfg.eval_tile, tta=cfg.tta, batch_size=INFER_BATCH,
            autocast_dtype=placement.precision.autocast,
        )  # (K, H, W)
    return foreground_probability(logits[None])[0].numpy()


def evaluate(
    model: UNet, examples: Sequence[Example], cfg: TrainConfig, threshold: float,
    probs: list[np.ndarray] | None = None, placement: Placement | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``examples`` (pooled, mean and per image); ``placement`` as in
    :func:`predict_probability`."""
    if probs is None:
        probs = [predict_probability(model, e.image, cfg, placement) for e in examples]
    targets = [e.target for e in examples]
    fovs = None if examples[0].fov is None else [e.fov for e in examples]
    result: dict[str, Any] = {"threshold": threshold, "images": [e.name for e in examples]}
    ev = evaluate_set(probs, targets, fovs, threshold=threshold)
    result["pooled"] = ev.pooled.as_dict()
    result["mean"] = ev.mean.as_dict()
    result["per_image"] = [m.as_dict() for m in ev.per_image]
    if cfg.dataset == "isbi2012":
        result["isbi"] = isbi_errors(probs, targets, threshold)
    return result


def isbi_errors(probs: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                threshold: float) -> dict[str, float]:
    """ISBI 2012's pixel error, Rand error and variation of information, mean over slices."""
    pairs = list(zip(probs, targets, strict=True))
    return {
        "pixel_error": float(np.mean([pixel_error(p, t, threshold=threshold) for p, t in pairs])),
        "rand_error": float(np.mean([rand_error(p, t, threshold=threshold) for p, t in pairs])),
        "variation_of_information": float(np.mean([
            variation_of_information(p, t, threshold=threshold).total for p, t in pairs])),
    }


def _optimum(probs: Sequence[np.ndarray], examples: Sequence[Example]) -> dict[str, Any]:
    return f1_optimum(probs, [e.target for e in examples], [e.fov for e in examples],
                      [e.name for e in examples])


def choose_threshold(
    model: UNet, data: DataBundle, cfg: TrainConfig, val_probs: list[np.ndarray] | None = None,
    placement: Placement | None = None,
) -> tuple[float, dict[str, Any]]:
    """The binarisation threshold of a trained model, and a record of how it was chosen.

    ``cfg.tune_threshold`` off: ``cfg.threshold``. On: the threshold that maximises the F1 score
    pooled over ``cfg.threshold_images``: ``"validation"`` (the held-out validation images) or
    ``"training_set"`` (every official training image: those trained on and the validation
    images). The test set is never used. The record holds the F1 optimum of every candidate set
    computed, so a report can say what the other rule would have chosen.
    """
    choice: dict[str, Any] = {"tuned": cfg.tune_threshold, "images": cfg.threshold_images}
    if not cfg.tune_threshold:
        return cfg.threshold, choice | {"threshold": cfg.threshold}
    if data.val:
        if val_probs is None:
            val_probs = [predict_probability(model, e.image, cfg, placement) for e in data.val]
        choice["validation"] = _optimum(val_probs, data.val)
    if cfg.threshold_images == "training_set":
        probs = [predict_probability(model, e.image, cfg, placement) for e in data.train]
        choice["training_set"] = _optimum(probs + list(val_probs or []), [*data.train, *data.val])
    threshold = float(choice[cfg.threshold_images]["threshold"])
    return threshold, choice | {"threshold": threshold}
