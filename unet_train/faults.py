"""Faults during training: the two ways a run stops early, and signals turned into a flag.

* :class:`TrainingDiverged`: a loss, a gradient norm or a parameter became NaN or infinite;
  no step is taken with it and the last good checkpoint is kept.
* :class:`TrainingInterrupted`: SIGINT (Ctrl-C) or SIGTERM (a scheduler's notice) arrived; the
  loop wrote a checkpoint at the end of the current step, and the same command resumes the
  run. The command line exits with ``128 + signal number`` (130, 143).
* :func:`signals_to_flag`: while the loop runs, those signals only set a flag, which every
  process agrees on at the next step (:mod:`unet_train.distributed`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class TrainingDiverged(RuntimeError):
    """A loss, gradient or parameter became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM: a checkpoint was written; the same command resumes the run."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


@contextlib.contextmanager
def signals_to_flag() -> Iterator[dict[str, int]]:
    """While training, SIGINT and SIGTERM only set a flag; the loop stops at the step's end."""
    caught: dict[str, int] = {}
    if threading.current_thread() is not threading.main_thread():
        yield caught  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, _frame: object) -> None:
        caught.setdefault("signum", signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
