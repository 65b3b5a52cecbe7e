"""Optimisers and learning-rate schedules by name (paper Sec. 3: SGD, momentum 0.99).

The paper trains with plain SGD at a constant (unstated) learning rate; ``adam``/``adamw`` and
the ``cosine``/``onecycle`` schedules are this project's modern options (the ``cpu`` profile:
Adam with one-cycle). Chapter 5 explains the training recipe; chapter 6 measures the choice.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

#: ``TrainConfig.optimizer`` choices.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
#: ``TrainConfig.scheduler`` choices.
SCHEDULERS: tuple[str, ...] = ("constant", "cosine", "onecycle")


def make_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """An :data:`OPTIMIZERS` optimiser (``momentum`` is SGD's)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r} is not valid; expected one of {', '.join(OPTIMIZERS)}")


def make_scheduler(
    name: str, optimizer: torch.optim.Optimizer, *, lr: float, steps: int,
    cycle_momentum: bool,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A :data:`SCHEDULERS` schedule spanning ``steps`` optimisation steps.

    ``onecycle`` warms up over the first 15 % of the steps to ``lr``, then anneals;
    ``cycle_momentum`` cycles SGD's momentum with it (Adam has none to cycle).
    """
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=steps, pct_start=0.15,
            cycle_momentum=cycle_momentum,
        )
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"scheduler={name!r} is not valid; expected one of {', '.join(SCHEDULERS)}")
