"""Training with run folders, atomic checkpoints, exact resume and agreed stops (paper Sec. 3).

:func:`train` reads in one screen: set up (:func:`_setup`: seed, data, and the one assembly step
:func:`unet_train.recipe.build`), resume (:func:`unet_train.resume.resume_from_checkpoint`),
the loop of :func:`train_step` calls with a checkpoint every ``checkpoint_every`` steps and a
validation pass every ``eval_every`` steps (:func:`_validate_and_save`), and the final evaluation
(:func:`_finish`). The hooks live in their own modules: the run's state and its checkpoint in
:mod:`unet_train.run_state`, resuming in :mod:`unet_train.resume`, signals and the two early
stops in :mod:`unet_train.faults`, the processes' agreement in :mod:`unet_train.distributed`,
the run's provenance in :mod:`unet_train.provenance`. The run folder's files are described in
:mod:`unet_train.runs`.

Faults:

* A run killed at any point and started again with the same config continues from its last
  checkpoint. It ends with the same weights as an uninterrupted run with the same seed on the
  same machine: same device, torch build, thread count and number of processes (CPU runs are
  bit-identical; on CUDA set ``deterministic=True``, which makes cuDNN and cuBLAS choose
  deterministic kernels). The patch sampler, the augmentation and dropout draw from
  generators whose states are saved, for every process.
* SIGINT (Ctrl-C) and SIGTERM (a scheduler's notice) write a checkpoint at the end of the
  current step and raise :class:`TrainingInterrupted`; the command line then exits with
  ``128 + signal number`` (130, 143) and a line that says how to resume. One that arrives
  after the last step, during the final evaluation, lets the finished run be written and
  returned, with ``RunResult.late_signal`` set so that a caller running several stops there
  (the command line says so and exits with the same code).
* A loss, a gradient norm or a parameter that becomes NaN or infinite stops the run with
  :class:`TrainingDiverged`; no step is taken with it and the last good checkpoint is kept.
  ``grad_clip`` (optional) clips the gradient norm.
* A fresh run into a folder that holds another run's files first removes those files
  (:func:`unet_train.runs.clear_run_files`).

Deviations from the paper are those of the chosen profile (see :mod:`unet_train.config`); the
paper profile follows Sec. 3 where the paper is explicit. Explained in chapter 5.
"""

from __future__ import annotations

import datetime
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from unet_core.data.sampler import PatchBatch
from unet_core.data.splits import load_data
from unet_train.checkpoint import save_checkpoint
from unet_train.config import TrainConfig
from unet_train.devices import (
    Precision,
    pick_device,
    synchronize,
)
from unet_train.distributed import Distributed, from_environment, rank_device
from unet_train.evaluation import choose_threshold, evaluate, predict_probability
from unet_train.faults import TrainingDiverged, TrainingInterrupted, signals_to_flag
from unet_train.identity import default_run_name
from unet_train.placement import is_channels_last
from unet_train.provenance import fingerprint
from unet_train.recipe import build
from unet_train.resume import resume_from_checkpoint
from unet_train.run_state import RunState
from unet_train.runs import (
    HISTORY,
    RunResult,
    clear_run_files,
    remove_stale_temporaries,
    runs_dir,
    save_model,
    write_config,
    write_environment,
    write_history,
    write_metrics,
    write_provenance,
)

#: A batch source replacing the patch sampler: ``(step, group) -> this process's batch``.
BatchSource = Callable[[int, Distributed], PatchBatch]


class StepResult(NamedTuple):
    loss: torch.Tensor  # detached, fp32
    grad_norm: torch.Tensor | None  # None when the loss was not finite (no backward pass)
    taken: bool  # False when the loss or (without a scaler) the gradient norm was not finite


def train_step(
    model: torch.nn.Module,
    batch: PatchBatch,
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    device: torch.device,
    *,
    precision: Precision,
    scaler: torch.amp.GradScaler | None = None,
    agree_finite: Callable[[bool], bool] | None = None,
) -> StepResult:
    """One optimisation step on a batch of patches.

    The forward pass runs under ``precision`` (the one :mod:`unet_train.placement` chose for
    training, :attr:`Parts.precision <unet_train.recipe.Parts.precision>`) and in the model's
    memory format (the batch is put in
    channels-last when the model is); the loss is computed in fp32. No step is taken when the loss
    is not finite (``agree_finite`` makes every process agree on that first) or, without a
    gradient scaler, when the gradient norm is not finite. ``cfg.grad_clip > 0`` clips the norm.
    """
    x = batch.image.to(device)  # (N, C, H_in, W_in)
    if is_channels_last(model):
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=device.type, dtype=precision.autocast or torch.bfloat16,
                        enabled=precision.autocast is not None):
        logits = model(x)  # (N, K, H_out, W_out)
    weight = None if batch.weight is None else batch.weight.to(device)  # (N, H_out, W_out)
    loss = loss_fn(logits.float(), batch.target.to(device), mask=batch.valid.to(device),
                   weight_map=weight)
    finite = bool(torch.isfinite(loss))
    if agree_finite is not None:
        finite = agree_finite(finite)
    if not finite:
        return StepResult(loss.detach(), None, False)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if scaler is None and not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(loss.detach(), norm, False)
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grads_with_norm_(params, cfg.grad_clip, norm)
    if scaler is not None:
        scaler.step(optimizer)  # skipped by the scaler when the unscaled gradients are not finite
        scaler.update()
    else:
        optimizer.step()
    return StepResult(loss.detach(), norm, True)


def seconds_per_step(cfg: TrainConfig, steps: int = 40, warmup: int = 20) -> float:
    """Median seconds per training step of ``cfg`` on its training device (no training kept).

    Each timed step ends with a device synchronisation, so a GPU's queued work is counted. The
    first steps of a process are slow and noisy (kernel selection, memory pools): with 6
    warm-up steps and 10 timed ones, the first of six equal-budget ablation runs was once
    calibrated at 0.27 s/step where its run then took 0.19 s/step, and got 30 % less training
    than the others. 20 warm-up steps and the median of 20 more make that less likely.
    """
    if steps <= warmup:
        raise ValueError(f"steps={steps} must exceed warmup={warmup}")
    parts = build(cfg, load_data(cfg), pick_device(cfg.device))  # compiled in the warm-up steps
    times = []
    for i in range(steps):
        t0 = time.perf_counter()  # sampling and augmentation count: training pays for them
        train_step(parts.net, parts.sampler.sample(cfg.batch_size // cfg.world_size),
                   parts.loss_fn, parts.optimizer, cfg, parts.device,
                   precision=parts.precision, scaler=parts.scaler)
        if parts.ema is not None:
            parts.ema.update(parts.model)
        synchronize(parts.device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _apply_world(cfg: TrainConfig, group: Distributed) -> TrainConfig:
    """The config's ``world_size`` is the number of processes that train it."""
    if cfg.world_size == group.world_size:
        return cfg
    if cfg.world_size == 1:  # the default: launched by torchrun with several processes
        return replace(cfg, world_size=group.world_size)
    raise ValueError(
        f"world_size={cfg.world_size} but {group.world_size} process(es) were started; launch "
        f"with torchrun --nproc-per-node (x --nnodes) = {cfg.world_size}, or drop world_size"
    )


def _determinism(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(cfg.deterministic)
    torch.backends.cudnn.deterministic = cfg.deterministic
    torch.backends.cudnn.benchmark = not cfg.deterministic and device.type == "cuda"


def _setup(cfg: TrainConfig, run_dir: Path, data_root: str | Path | None, group: Distributed,
           log: Callable[[str], None]) -> RunState:
    """Seed, load the data, assemble the parts (:func:`unet_train.recipe.build`)."""
    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = rank_device(pick_device(cfg.device), group)
    _determinism(cfg, device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    data = load_data(cfg, data_root)
    made_by = fingerprint(cfg.dataset, data.root, data.synthetic)
    kind = "SYNTHETIC stand-in" if data.synthetic else "real"
    log(f"data: {cfg.dataset} from the folder {data.root.name} ({kind}), {len(data.train)} train / "
        f"{len(data.val)} val / {len(data.test)} test images")
    parts = build(cfg, data, device, group)
    log(f"device: {device}, training: {parts.placement.describe()}, inference: "
        f"{parts.inference.describe()}"
        + (f", {group.world_size} processes ({group.backend})" if group.active else ""))
    return RunState(cfg, run_dir, group, data, parts, provenance=made_by)


def _validate_and_save(run: RunState, mean_loss: float) -> None:
    """Validation metrics into the history (rank 0), then checkpoint, snapshot, ``history.csv``."""
    row = {"step": run.step, "minutes": round(run.minutes, 4), "loss": mean_loss,
           "lr": run.parts.optimizer.param_groups[0]["lr"]}
    evaluated = run.evaluated() if run.group.is_main else run.parts.model
    if run.data.val and run.group.is_main:
        evaluated.eval()
        res = evaluate(evaluated, run.data.val, run.cfg, run.cfg.threshold,
                       placement=run.parts.inference)
        run.parts.model.train()
        row.update({"val_auc_roc": res["pooled"]["auc_roc"], "val_f1": res["pooled"]["f1"]})
    run.history.append(row)
    run.save()
    if not run.group.is_main:
        return
    if run.cfg.keep_snapshots:  # weights only, for quality-vs-time curves after the run
        save_checkpoint(run.run_dir / "snapshots" / f"step{run.step:07d}.pt", {
            "model": evaluated.state_dict(), "step": run.step, "minutes": run.minutes})
    write_history(run.run_dir / HISTORY, run.history)


def _finish(run: RunState, stopped_by: str, log: Callable[[str], None]) -> RunResult:
    """Final checkpoint, threshold choice, test evaluation, ``metrics.json`` and ``model.pt``."""
    cfg, data = run.cfg, run.data
    if stopped_by == "time" or not run.history or run.history[-1]["step"] != run.step:
        run.save()
    if not run.group.is_main:  # rank 0 evaluates and writes; the others are done
        return RunResult(run.run_dir, cfg, run.step, run.minutes, {}, run.history,
                         data.synthetic, run.resumed_from, stopped_by)
    model = run.evaluated()
    model.eval()
    placement = run.parts.inference
    val_probs = [predict_probability(model, e.image, cfg, placement) for e in data.val] or None
    threshold, choice = choose_threshold(model, data, cfg, val_probs, placement=placement)
    test_probs = [predict_probability(model, e.image, cfg, placement) for e in data.test]
    metrics = {
        "dataset": cfg.dataset, "synthetic": data.synthetic, "provenance": run.provenance,
        "finished_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "steps": run.step, "train_minutes": run.minutes, "stopped_by": stopped_by,
        "threshold_choice": choice,
        "test": evaluate(model, data.test, cfg, threshold, test_probs, placement=placement),
    }
    if data.val:
        metrics["val"] = evaluate(model, data.val, cfg, threshold, val_probs,
                                  placement=placement)
    write_metrics(run.run_dir, metrics)
    save_model(run.run_dir, model, cfg, data.in_channels, threshold)
    pooled = metrics["test"]["pooled"]
    log(f"done: {run.step} steps in {run.minutes:.1f} min; test AUC {pooled['auc_roc']:.4f} "
        f"F1 {pooled['f1']:.4f} (threshold {threshold:.3f})"
        + (" [synthetic data]" if data.synthetic else ""))
    return RunResult(run.run_dir, cfg, run.step, run.minutes, metrics, run.history,
                     data.synthetic, run.resumed_from, stopped_by, run.provenance,
                     probabilities={"val": val_probs or [], "test": test_probs})


def train(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    data_root: str | Path | None = None,
    stop_after: int | None = None,
    batches: BatchSource | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train ``cfg`` in ``run_dir`` (default ``runs/<dataset>-<profile>-<config hash>``).

    Args:
        resume: continue from ``run_dir/checkpoint.pt`` if it exists (its config must match);
            ``False`` starts over, removing the run files already there.
        progress: tqdm progress bar.
        data_root: data directory (default ``$UNET_DATA_DIR``).
        stop_after: stop (as if killed) after this many steps without final evaluation; for
            testing resume.
        batches: a test hook replacing the patch sampler (:data:`BatchSource`).

    Under ``torchrun`` every process calls this; see :mod:`unet_train.distributed`. The run's
    figures (``curves.png``) are drawn by the caller from ``RunResult.history``.
    """
    group = from_environment(pick_device(cfg.device).type)
    log = log if group.is_main else (lambda _: None)
    cfg = _apply_world(cfg, group)
    run_dir = Path(run_dir) if run_dir is not None else (
        runs_dir() / default_run_name(cfg, data_root))
    try:
        run = _setup(cfg, run_dir, data_root, group, log)
        if group.is_main and (stale := remove_stale_temporaries(run_dir)):
            log(f"removed {len(stale)} incomplete file(s) left by a killed writer: "
                f"{', '.join(stale)}")
        if resume and run.checkpoint.exists():
            resume_from_checkpoint(run, log)
        elif group.is_main and (removed := clear_run_files(run_dir)):
            log(f"fresh run in {run_dir}: removed the earlier run's {', '.join(removed)}")
        group.barrier()
        if group.is_main:
            write_config(run_dir, cfg)
            write_environment(run_dir, run._environment())
            write_provenance(run_dir, run.provenance)
        with signals_to_flag() as caught:
            result = _loop(run, caught, progress, stop_after, batches, log)
        # a signal after the last step's check came during the final evaluation: the run is
        # complete, so it is returned, and the signal with it rather than lost
        return replace(result, late_signal=caught.get("signum"))
    finally:
        group.close()


def _loop(run: RunState, caught: dict[str, int], progress: bool, stop_after: int | None,
          batches: BatchSource | None, log: Callable[[str], None]) -> RunResult:
    cfg, group = run.cfg, run.group
    stopped_by, running, count = "steps", 0.0, 0
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train",
               disable=not progress or not group.is_main)
    agree = (lambda ok: not group.agree(run.device, nonfinite=not ok)["nonfinite"]
             ) if group.active else None
    run.parts.net.train()
    while run.step < cfg.steps:
        flags = group.agree(run.device, interrupted="signum" in caught,
                            time=bool(cfg.time_budget_min) and run.minutes >= cfg.time_budget_min)
        if flags["interrupted"]:
            bar.close()
            raise _interrupted(run, caught.get("signum", signal.SIGTERM), log)
        if flags["time"]:
            stopped_by = "time"
            break
        t0 = time.perf_counter()
        batch = (batches(run.step, group) if batches is not None
                 else run.parts.sampler.sample(cfg.batch_size // cfg.world_size))
        p = run.parts
        loss, norm, taken = train_step(p.net, batch, p.loss_fn, p.optimizer, cfg, p.device,
                                       precision=p.precision, scaler=p.scaler,
                                       agree_finite=agree)
        if not taken:
            bar.close()
            raise _diverged(run, loss, norm)
        run.parts.scheduler.step()
        if run.parts.ema is not None:
            run.parts.ema.update(run.parts.model)
        run.step += 1
        run.minutes += (time.perf_counter() - t0) / 60.0
        running, count = running + loss.item(), count + 1
        bar.update(1)
        bar.set_postfix(loss=f"{running / count:.4f}")
        if (cfg.eval_every and run.step % cfg.eval_every == 0) or run.step == cfg.steps:
            _validate_and_save(run, running / count)
            running, count = 0.0, 0
        elif cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0:
            run.save()
        if stop_after is not None and run.step >= stop_after:
            bar.close()
            return RunResult(run.run_dir, cfg, run.step, run.minutes, {}, run.history,
                             run.data.synthetic, run.resumed_from, "stop_after")
    bar.close()
    return _finish(run, stopped_by, log)


def _interrupted(run: RunState, signum: int, log: Callable[[str], None]) -> TrainingInterrupted:
    run.save()
    name = signal.Signals(signum).name
    message = (f"{name} received: stopped after step {run.step} of {run.cfg.steps}; checkpoint "
               f"written to {run.checkpoint}. Run the same command again to resume.")
    log(message)
    return TrainingInterrupted(message, signum)


def _diverged(run: RunState, loss: torch.Tensor, norm: torch.Tensor | None) -> TrainingDiverged:
    last = (f"{run.checkpoint} (step {run.saved_step})" if run.saved_step is not None
            else "none yet")
    what = (f"loss became {loss.item()}" if norm is None
            else f"gradient norm became {norm.item()} (loss {loss.item():.4g})")
    return TrainingDiverged(
        f"{what} at step {run.step + 1} of run {run.run_dir}; stopped. Last good checkpoint: "
        f"{last}. Try a lower lr (now {run.cfg.lr}), grad_clip, or precision='fp32'."
    )
