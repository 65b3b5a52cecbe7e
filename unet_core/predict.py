"""Segment arbitrary image files with a trained model (overlap-tile inference, paper Sec. 2).

Any fundus photograph or EM slice that Pillow reads (TIFF, PNG, JPEG, GIF, ...; RGB, RGBA,
greyscale, palette, 16-bit) and of any size is converted to what the model was trained on and
segmented tile by tile. For each image two PNGs are written: ``<stem>_prob.png`` (the
foreground probability scaled to 0-255) and ``<stem>_mask.png`` (0/255 at the model's
threshold). Files are read by :func:`unet_core.data.imageio.read_image` (one reader, one
error type: :class:`~unet_core.data.errors.DataError`). Chapter 8 uses it on a reader's image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from unet_core.atomic import write_image
from unet_core.config import TrainConfig
from unet_core.data.imageio import read_image
from unet_core.data.prepare import prepare_image
from unet_core.evaluation import predict_probability
from unet_core.model import UNet

Image.MAX_IMAGE_PIXELS = 20_000 * 20_000  # large slides are fine: inference is tiled


def to_model_input(image: np.ndarray, cfg: TrainConfig, in_channels: int) -> np.ndarray:
    """uint8 ``(H, W[, 3])`` -> float32 ``(H, W, in_channels)`` as the model was trained."""
    x = prepare_image(image, cfg.channels)
    if x.shape[2] == in_channels:
        return x
    if x.shape[2] == 1 and in_channels == 3:  # a greyscale photograph for a colour model
        return np.repeat(x, 3, axis=2)
    if x.shape[2] == 3 and in_channels == 1:
        return prepare_image(image, "gray")
    raise ValueError(f"cannot turn a {x.shape[2]}-channel image into {in_channels} channels")


@dataclass(frozen=True)
class Prediction:
    source: Path
    probability: Path
    mask: Path
    shape: tuple[int, int]
    foreground_fraction: float


def predict_files(
    model: UNet,
    cfg: TrainConfig,
    paths: Sequence[str | Path],
    output: str | Path,
    *,
    threshold: float,
    tile: int | None = None,
    tta: str | None = None,
    on_error: Callable[[Path, Exception], None] | None = None,
) -> tuple[list[Prediction], list[tuple[Path, Exception]]]:
    """Segment every file in ``paths`` into ``output``; a bad file does not stop the others.

    Returns the predictions and the ``(path, error)`` pairs of the files that failed.
    """
    out_dir = Path(output)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = cfg.to_dict()
    if tile is not None:
        settings["eval_tile"] = tile
    if tta is not None:
        settings["tta"] = tta
    run_cfg = TrainConfig.from_dict(settings)
    done: list[Prediction] = []
    failed: list[tuple[Path, Exception]] = []
    for raw in paths:
        path = Path(raw)
        try:
            image = read_image(path)
            prob = predict_probability(model, to_model_input(image, cfg, model.in_channels),
                                       run_cfg)
            mask = prob >= threshold
            prob_path = out_dir / f"{path.stem}_prob.png"
            mask_path = out_dir / f"{path.stem}_mask.png"
            write_image(prob_path, Image.fromarray((prob * 255.0).round().astype(np.uint8)))
            write_image(mask_path, Image.fromarray(mask.astype(np.uint8) * 255))
            done.append(Prediction(path, prob_path, mask_path, prob.shape,
                                   float(mask.mean())))
        except Exception as exc:  # report and go on with the next file
            failed.append((path, exc))
            if on_error is not None:
                on_error(path, exc)
    return done, failed
