"""Where a run computes: the device choices and how ``auto`` picks one.

Used by :mod:`unet_core.train` and the command line (chapter 5 explains training).
"""

from __future__ import annotations

import torch

#: ``TrainConfig.device`` choices; ``auto`` is the best available (CUDA, then MPS, then CPU).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str) -> torch.device:
    """The ``torch.device`` for a :data:`DEVICES` choice (an unavailable CUDA raises)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available")
    return torch.device(name)
