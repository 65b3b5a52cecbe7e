"""Atomic, code-free checkpoints.

A checkpoint is a dict of tensors and plain Python values (numbers, strings, lists, dicts), so
that it loads with ``torch.load(..., weights_only=True)``: a checkpoint from a stranger cannot
run code. It is written through :func:`unet_train.atomic.atomic_write` (a temporary file in the
same folder, flushed to disk, then renamed over the old one), so a run killed while saving never
leaves a truncated checkpoint and never loses the previous one.

Explained in chapter 5 (training); the run folder that holds checkpoints is :mod:`unet_train.runs`.
"""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_train.atomic import atomic_write


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically; returns the path."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a clear error names a bad file.

    A missing file raises ``FileNotFoundError``; a truncated, corrupt or foreign file (one not
    written by this package, or holding Python objects that could run code) raises a one-line
    ``ValueError`` that names the file and says it is not a valid unet_core checkpoint. The
    message never suggests loading it with ``weights_only=False``, as PyTorch's own does.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before failing
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle errors, truncated zip, unsafe globals, ...
        raise ValueError(
            f"checkpoint {path} could not be loaded: it is not a valid unet_core checkpoint "
            f"({_why_not_loaded(exc)})"
        ) from exc
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} is not a valid unet_core checkpoint (it holds a "
                         f"{type(state).__name__}, not a dict)")
    return state


def _why_not_loaded(exc: Exception) -> str:
    """What a failed ``torch.load`` says, in a few words (its own text is long)."""
    text = str(exc)
    if "Unsupported global" in text:
        return ("it holds Python objects other than tensors and plain values, which are not "
                "loaded because loading them could run code")
    if "zip archive" in text or "central directory" in text:
        return "the file is truncated or corrupt"
    return "the file is truncated, corrupt or not a PyTorch checkpoint"


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
