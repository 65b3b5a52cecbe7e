"""From a decoded image to what the network reads: float32 ``(H, W, C)`` in [0, 1].

``CHANNELS`` are the input choices a config can make (``TrainConfig.channels``); the data
splits (:mod:`unet_core.data.splits`) and ``predict`` (:mod:`unet_train.predict`) both convert
through :func:`prepare_image`, so a photograph is seen exactly as the training images were.

Chapter 5 (training) explains the input channels.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Input channels of a colour image: keep RGB, the green channel, the luminance, or the green
#: channel after contrast-limited adaptive histogram equalisation (the usual DRIVE input).
CHANNELS: tuple[str, ...] = ("rgb", "green", "gray", "green_clahe")
#: CLAHE of ``green_clahe``: clip limit and tile grid (OpenCV's defaults for retinal images).
CLAHE_CLIP, CLAHE_GRID = 2.0, 8


def prepare_image(image: np.ndarray, channels: str = "rgb") -> np.ndarray:
    """uint8 ``(H, W[, C])`` -> float32 ``(H, W, C)`` in [0, 1] with the chosen channels.

    ``rgb`` keeps colour, ``green`` keeps the green channel (where vessels contrast most),
    ``gray`` takes the luminance, ``green_clahe`` equalises the green channel's contrast
    locally (CLAHE, 8-bit, :data:`CLAHE_CLIP` on a :data:`CLAHE_GRID` grid of tiles). A
    greyscale image stays one channel whatever is asked (``green_clahe`` equalises it).
    """
    image = np.asarray(image)
    if channels == "green_clahe":
        return _green_clahe(image)
    scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0
    x = image.astype(np.float32) * np.float32(scale)
    if x.ndim == 2:
        return x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if x.shape[2] == 4:  # RGBA: drop alpha
        x = x[:, :, :3]
    if x.shape[2] == 1 or channels == "rgb":
        return np.ascontiguousarray(x)
    if channels == "green":
        return np.ascontiguousarray(x[:, :, 1:2])
    gray = x[:, :, 0] * 0.299 + x[:, :, 1] * 0.587 + x[:, :, 2] * 0.114
    return gray[:, :, None].astype(np.float32)


def _green_clahe(image: np.ndarray) -> np.ndarray:
    """The green (or only) channel, CLAHE-equalised at 8 bits, as float32 ``(H, W, 1)``."""
    plane = image if image.ndim == 2 else image[:, :, 1 if image.shape[2] >= 3 else 0]
    if plane.dtype != np.uint8:  # float in [0, 1] or a wider integer type: to 8 bits
        top = 1.0 if plane.dtype.kind == "f" else float(np.iinfo(plane.dtype).max)
        plane = np.clip(np.rint(plane.astype(np.float64) * (255.0 / top)), 0, 255)
    clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_GRID, CLAHE_GRID))
    out = clahe.apply(np.ascontiguousarray(plane, dtype=np.uint8))
    return (out.astype(np.float32) * np.float32(1.0 / 255.0))[:, :, None]
