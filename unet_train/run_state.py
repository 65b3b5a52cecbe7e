"""A training run's state: its config and folder, processes, data, assembled parts and
everything the loop changes, and how it is checkpointed (every rank's random states, rank 0
writes). :mod:`unet_train.train` runs it; :mod:`unet_train.resume` restores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unet_core.data.splits import DataBundle
from unet_core.model import UNet
from unet_train.checkpoint import capture_rng, save_checkpoint
from unet_train.config import TrainConfig
from unet_train.devices import Precision, environment
from unet_train.distributed import Distributed
from unet_train.faults import TrainingDiverged
from unet_train.recipe import Parts
from unet_train.runs import CHECKPOINT


@dataclass
class RunState:
    """A run: its config and folder, its processes and data, the assembled :class:`Parts`, and
    everything its loop changes."""

    cfg: TrainConfig
    run_dir: Path
    group: Distributed
    data: DataBundle
    parts: Parts  # model, optimiser, schedule, sampler, loss, placements (recipe.build)
    step: int = 0
    minutes: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)  # unet_train.provenance.fingerprint
    resumed_from: int | None = None
    saved_step: int | None = None  # the step of the last checkpoint written

    @property
    def device(self) -> torch.device:
        return self.parts.device

    @property
    def precision(self) -> Precision:
        return self.parts.precision

    def evaluated(self) -> UNet:
        """The network that is evaluated and saved: the weight average, or ``model``."""
        ema, model = self.parts.ema, self.parts.model
        return ema.averaged(model) if ema is not None else model  # type: ignore[return-value]

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT

    def check_parameters(self) -> None:
        """Raise :class:`TrainingDiverged` if a parameter is not finite (before a save)."""
        bad = [n for n, p in self.parts.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(
                f"parameters {', '.join(bad[:3])} became non-finite at step {self.step} of run "
                f"{self.run_dir}; stopped. Last good checkpoint: {self.checkpoint} "
                f"(step {self.saved_step})"
            )

    def save(self) -> None:
        """Checkpoint every rank's random states (a collective); rank 0 writes the file."""
        self.check_parameters()
        rng = self.group.gather(capture_rng(self.parts.sampler.rng))
        if not self.group.is_main:
            self.saved_step = self.step
            return
        state: dict[str, Any] = {
            "model": self.parts.model.state_dict(), "optimizer": self.parts.optimizer.state_dict(),
            "scheduler": self.parts.scheduler.state_dict(), "step": self.step,
            "minutes": self.minutes, "history": self.history, "rng": rng[0],
            "config": self.cfg.to_dict(), "in_channels": self.data.in_channels,
            "world_size": self.group.world_size, "environment": self._environment(),
            "provenance": self.provenance,
        }
        if self.group.active:
            state["rng_ranks"] = rng
        if self.parts.scaler is not None:
            state["scaler"] = self.parts.scaler.state_dict()
        if self.parts.ema is not None:
            state["ema"] = self.parts.ema.state_dict()
        save_checkpoint(self.checkpoint, state)
        self.saved_step = self.step

    def _environment(self) -> dict[str, Any]:
        return {**environment(self.device, self.precision),
                "memory_format": self.parts.placement.memory_format,
                "placement": {"train": self.parts.placement.as_dict(),
                              "infer": self.parts.inference.as_dict()},
                "world_size": self.group.world_size, "backend": self.group.backend}
