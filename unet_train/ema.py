"""An exponential moving average of a model's weights (not in the paper; a ``cpu`` recipe lever).

After every optimisation step the average moves towards the current weights:
``avg <- avg + (1 - d_t) (w - avg)`` with ``d_t = min(decay, (1 + t) / (10 + t))`` at step
``t``, so the first steps are not dominated by the random initial weights. Batch-norm running
statistics are averaged the same way; integer buffers (the batch counters) are copied. With
``TrainConfig.ema_decay > 0`` the validation passes, the threshold choice, the test evaluation
and ``model.pt`` use the averaged weights; the checkpoint holds both, so a resumed run continues
the same average. Chapter 5 explains the recipe; the levers benchmark measures it.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """The running average of ``model``'s state (parameters and buffers)."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) to average, got {decay!r}")
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current state (call after each step)."""
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        current = model.state_dict()
        floats = [k for k, v in self.state.items() if v.is_floating_point()]
        torch._foreach_lerp_([self.state[k] for k in floats],
                             [current[k].detach() for k in floats], 1.0 - d)
        for k, v in self.state.items():
            if not v.is_floating_point():
                v.copy_(current[k])
        self.updates += 1

    def averaged(self, model: torch.nn.Module) -> torch.nn.Module:
        """A copy of ``model`` holding the averaged weights (in eval mode)."""
        out = copy.deepcopy(model)
        out.load_state_dict(self.state)
        return out.eval()

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "updates": self.updates, "state": self.state}

    def load_state_dict(self, saved: dict[str, object]) -> None:
        if float(saved["decay"]) != self.decay:  # type: ignore[arg-type]
            raise ValueError(f"the checkpoint's weight average has decay {saved['decay']}, "
                             f"this run {self.decay}")
        self.updates = int(saved["updates"])  # type: ignore[call-overload]
        state = saved["state"]
        for k, v in self.state.items():
            v.copy_(state[k])  # type: ignore[index]
