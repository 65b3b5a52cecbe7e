"""From a decoded image to what the network reads: float32 ``(H, W, C)`` in [0, 1].

``CHANNELS`` are the input choices a config can make (``TrainConfig.channels``); the data
splits (:mod:`unet_core.data.splits`) and ``predict`` (:mod:`unet_core.predict`) both convert
through :func:`prepare_image`, so a photograph is seen exactly as the training images were.

Chapter 5 (training) explains the input channels.
"""

from __future__ import annotations

import numpy as np

#: Input channels of a colour image: keep RGB, the green channel, or the luminance.
CHANNELS: tuple[str, ...] = ("rgb", "green", "gray")


def prepare_image(image: np.ndarray, channels: str = "rgb") -> np.ndarray:
    """uint8 ``(H, W[, C])`` -> float32 ``(H, W, C)`` in [0, 1] with the chosen channels.

    ``rgb`` keeps colour, ``green`` keeps the green channel (where vessels contrast most),
    ``gray`` takes the luminance. A greyscale image stays one channel whatever is asked.
    """
    image = np.asarray(image)
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
