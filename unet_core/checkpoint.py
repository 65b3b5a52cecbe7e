"""Atomic, code-free checkpoints.

A checkpoint is a dict of tensors and plain Python values (numbers, strings, lists, dicts), so
that it loads with ``torch.load(..., weights_only=True)``: a checkpoint from a stranger cannot
run code. It is written through :func:`unet_core.atomic.atomic_write` (a temporary file in the
same folder, flushed to disk, then renamed over the old one), so a run killed while saving never
leaves a truncated checkpoint and never loses the previous one.

Explained in chapter 5 (training); the run folder that holds checkpoints is :mod:`unet_core.runs`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_core.atomic import atomic_write


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a clear error names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, unsafe globals, ...
        raise ValueError(
            f"checkpoint {path} could not be loaded as a weights-only PyTorch checkpoint "
            f"(truncated, corrupt, or holding objects other than tensors and plain types): {exc}"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def capture_rng(generator: np.random.Generator | None = None) -> dict[str, Any]:
    """The state of every random number generator a run uses, as plain types and tensors."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["numpy"] = generator.bit_generator.state
    return state


def restore_rng(state: dict[str, Any], generator: np.random.Generator | None = None) -> None:
    """Restore what :func:`capture_rng` captured (``generator`` in place)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "numpy" in state:
        generator.bit_generator.state = state["numpy"]
