"""How much compute a run had: the machine's matrix-multiply rate, FLOPs per step, normalised time.

Machines differ (the same 3000-step run trained in 10.6 minutes on one 2-core machine and in 5.3
on another), so a budget in wall minutes alone is met or missed by the machine a run gets.
This module measures what the machine can do in the dtype a run trains in and states time in
**normalised minutes** = wall minutes x (measured GFLOP/s / :data:`REFERENCE_GFLOPS`): the
minutes the run would have taken on a machine whose matmul runs at 400 GFLOP/s, if it scaled
with the matmul rate.

* :func:`matmul_gflops`: the best of several square matmuls (2048 x 2048 by default) with the
  current thread count; measure at the start and the end of a run and keep the higher
  (a busy machine only ever lowers it).
* :func:`training_flops`: FLOPs of one training step (forward, loss, backward) counted by
  ``torch.utils.flop_counter`` (convolutions and matmuls; element-wise work is not counted).
* :func:`code_version`: the git commit of the code (with ``+dirty`` for uncommitted changes).

Used by the benchmarks (``benchmarks/drive_quality.py``, ``throughput.py``, ``levers.py``) and
explained in chapter 6.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from unet_train.config import TrainConfig
from unet_train.devices import processor_name
from unet_train.placement import choose
from unet_train.recipe import build_model, input_channels

#: The matmul rate (GFLOP/s) that defines a normalised minute.
REFERENCE_GFLOPS = 400.0


def matmul_gflops(dtype: torch.dtype = torch.bfloat16, size: int = 2048,
                  repeats: int = 12) -> float:
    """Best GFLOP/s of ``size`` x ``size`` matmuls in ``dtype`` with torch's thread count."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dtype)
    b = torch.randn(size, size, generator=gen).to(dtype)
    for _ in range(3):  # warm-up: thread pool, caches, the CPU's clock
        a @ b
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2.0 * size**3 / (time.perf_counter() - t0) / 1e9)
    return best


#: ``environment.json``'s precision names and their dtypes.
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16,
                                  "fp16": torch.float16}


def training_dtype(cfg: TrainConfig | None = None) -> torch.dtype:
    """The dtype a CPU run of ``cfg`` (default: the ``cpu`` profile on DRIVE) trains in: the
    precision :func:`unet_train.placement.choose` gives its network on this machine (measured
    once, then cached), so that a normalised minute uses the matmul rate of that dtype."""
    cfg = cfg or TrainConfig.from_profile("cpu")
    model = build_model(cfg, input_channels(cfg))
    return choose(cfg, model, torch.device("cpu"), "train").precision.autocast or torch.float32


def run_dtype(environment: dict[str, Any]) -> torch.dtype:
    """The dtype a run trained in, from its ``environment.json``."""
    return DTYPES[str(environment.get("precision", "fp32"))]


def normalised_minutes(wall_minutes: float, gflops: float) -> float:
    """Wall minutes x (measured GFLOP/s / 400)."""
    return wall_minutes * gflops / REFERENCE_GFLOPS


def training_flops(step: Any) -> int:
    """FLOPs counted while ``step()`` (one training step) runs."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def machine_summary(dtype: torch.dtype | None = None) -> dict[str, Any]:
    """CPU model, thread count, torch version and this moment's matmul rate in ``dtype``."""
    dtype = dtype or training_dtype()
    return {"cpu": processor_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "matmul_dtype": str(dtype).removeprefix("torch."),
            "matmul_gflops": round(matmul_gflops(dtype), 1)}


def code_version(root: Path | None = None) -> str:
    """``git describe --always --dirty`` of the project (``unknown`` outside a git clone)."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=10"], cwd=root,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
