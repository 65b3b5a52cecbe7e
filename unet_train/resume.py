"""Resuming a run from its folder's checkpoint: the config, the number of processes and the
provenance must match; the weights, optimiser, schedule, scaler, weight average, every random
state, the step, the minutes and the history are restored, so a resumed run ends with the same
weights as one never stopped (same machine type, torch build, threads and processes).
"""

from __future__ import annotations

from collections.abc import Callable

from unet_train.checkpoint import load_checkpoint, restore_rng
from unet_train.identity import config_diff
from unet_train.provenance import describe, same_origin
from unet_train.run_state import RunState

#: What a training checkpoint must hold to be resumed from.
RESUME_KEYS: tuple[str, ...] = ("model", "optimizer", "scheduler", "step", "minutes", "history",
                                "rng", "config")

def resume_from_checkpoint(run: RunState, log: Callable[[str], None]) -> None:
    """Continue from the run folder's checkpoint (its config and world size must match)."""
    state = load_checkpoint(run.checkpoint, map_location=str(run.device))
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise ValueError(f"{run.checkpoint} is not a unet_core training checkpoint (it has no "
                         f"{', '.join(missing)}); move it away or start over with --no-resume")
    world = int(state.get("world_size", 1))
    if world != run.group.world_size:
        raise ValueError(
            f"{run.checkpoint} was written by {world} process(es), this run has "
            f"{run.group.world_size}: resume with torchrun --nproc-per-node (x --nnodes) = "
            f"{world}, or start over with --no-resume"
        )
    diff = config_diff(state["config"], run.cfg.to_dict(), ignore=("world_size",))
    if diff:
        raise ValueError(
            f"{run.checkpoint} was written with a different config ({', '.join(diff)} differ); "
            "use another run directory or --no-resume (resume=False) to start over"
        )
    before = state.get("provenance")
    if before and not same_origin(before, run.provenance):
        raise ValueError(
            f"{run.checkpoint} was written by other code or on other data ({describe(before)}; "
            f"now: {describe(run.provenance)}); use another run directory or --no-resume "
            "(resume=False) to start over"
        )
    run.parts.model.load_state_dict(state["model"])
    run.parts.optimizer.load_state_dict(state["optimizer"])
    run.parts.scheduler.load_state_dict(state["scheduler"])
    if run.parts.scaler is not None and "scaler" in state:
        run.parts.scaler.load_state_dict(state["scaler"])
    if run.parts.ema is not None:
        run.parts.ema.load_state_dict(state["ema"])
    rng = state["rng_ranks"][run.group.rank] if run.group.active else state["rng"]
    restore_rng(rng, run.parts.sampler.rng)
    run.step, run.minutes = int(state["step"]), float(state["minutes"])
    run.history = [dict(row) for row in state["history"]]
    run.resumed_from = run.saved_step = run.step
    before = state.get("environment", {})
    if before and before.get("device") != run.device.type:
        log(f"warning: {run.checkpoint} was written on {before.get('device')}, resuming on "
            f"{run.device.type}: the run continues, but not bit for bit as it would have there")
    elif before.get("precision", run.precision.name) != run.precision.name:
        log(f"warning: {run.checkpoint} was trained in {before['precision']}, resuming in "
            f"{run.precision.name} (this machine's choice): the run continues, but not bit for "
            "bit as it would have in one precision")
    log(f"resumed from {run.checkpoint} at step {run.step}")
