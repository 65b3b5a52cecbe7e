"""Training with run folders, atomic checkpoints and exact resume (paper Sec. 3).

:func:`train` reads in one screen: set up (:func:`_setup`), resume (:func:`_resume`), the loop
of :func:`train_step` calls, a validation pass and checkpoint every ``eval_every`` steps
(:func:`_validate_and_save`), and the final evaluation (:func:`_finish`). The run folder's
files are described in :mod:`unet_core.runs`.

A run killed at any point and started again with the same config continues from its last
checkpoint and ends with the same weights as an uninterrupted run with the same seed (the
patch sampler, the augmentation and dropout all draw from generators whose states are saved).
A loss that becomes NaN or infinite stops the run with :class:`TrainingDiverged`; the last good
checkpoint is kept.

Deviations from the paper are those of the chosen profile (see :mod:`unet_core.config`); the
paper profile follows Sec. 3 where the paper is explicit. Explained in chapter 5.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unet_core.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from unet_core.config import TrainConfig
from unet_core.data.sampler import PatchBatch, PatchSampler
from unet_core.data.splits import DataBundle, load_data
from unet_core.devices import pick_device
from unet_core.evaluation import choose_threshold, evaluate, predict_probability
from unet_core.losses import SegmentationLoss, make_loss
from unet_core.model import UNet
from unet_core.recipe import build_model, build_optimizer, build_sampler, build_scheduler
from unet_core.runs import (
    CHECKPOINT,
    HISTORY,
    RunResult,
    config_diff,
    default_run_name,
    runs_dir,
    save_model,
    write_config,
    write_history,
    write_metrics,
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def train_step(
    model: UNet,
    batch: PatchBatch,
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    device: torch.device,
) -> torch.Tensor:
    """One optimisation step on a batch of patches; returns the (detached) loss.

    Runs the forward pass under bf16 autocast and in channels-last layout when the config asks
    for them; the loss is computed in fp32. When the loss is not finite, no step is taken.
    """
    x = batch.image.to(device)  # (N, C, H_in, W_in)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        logits = model(x)  # (N, K, H_out, W_out)
    weight = None if batch.weight is None else batch.weight.to(device)  # (N, H_out, W_out)
    loss = loss_fn(logits.float(), batch.target.to(device), mask=batch.valid.to(device),
                   weight_map=weight)
    if torch.isfinite(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.detach()


def seconds_per_step(cfg: TrainConfig, steps: int = 40, warmup: int = 20) -> float:
    """Median seconds per training step of ``cfg`` on this machine (no training kept).

    The first steps of a process are slow and noisy (kernel selection, memory pools): with 6
    warm-up steps and 10 timed ones, the first of six equal-budget ablation runs was once
    calibrated at 0.27 s/step where its run then took 0.19 s/step, and got 30 % less training
    than the others. 20 warm-up steps and the median of 20 more make that less likely.
    """
    if steps <= warmup:
        raise ValueError(f"steps={steps} must exceed warmup={warmup}")
    data = load_data(cfg)
    model = build_model(cfg, data.in_channels)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    sampler = build_sampler(cfg, model, data.train)
    loss_fn = make_loss(cfg.loss, out_channels=model.out_channels)
    times = []
    for i in range(steps):
        t0 = time.perf_counter()  # sampling and augmentation count: training pays for them
        train_step(model, sampler.sample(cfg.batch_size), loss_fn, optimizer, cfg,
                   torch.device("cpu"))
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


@dataclass
class _Run:
    """Everything a run's loop changes, and what it needs to save it."""

    cfg: TrainConfig
    run_dir: Path
    device: torch.device
    data: DataBundle
    model: UNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: PatchSampler
    loss_fn: SegmentationLoss
    step: int = 0
    minutes: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT

    def save(self) -> None:
        save_checkpoint(self.checkpoint, {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "step": self.step,
            "minutes": self.minutes, "history": self.history,
            "rng": capture_rng(self.sampler.rng), "config": self.cfg.to_dict(),
            "in_channels": self.data.in_channels,
        })


def _setup(cfg: TrainConfig, run_dir: Path, data_root: str | Path | None,
           log: Callable[[str], None]) -> _Run:
    """Seed, load the data, build model, optimiser, schedule, sampler and loss."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    data = load_data(cfg, data_root)
    kind = "SYNTHETIC stand-in" if data.synthetic else "real"
    log(f"data: {cfg.dataset} from {data.root} ({kind}), {len(data.train)} train / "
        f"{len(data.val)} val / {len(data.test)} test images")
    model = build_model(cfg, data.in_channels).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    sampler = build_sampler(cfg, model, data.train)
    loss_fn = make_loss(cfg.loss, out_channels=model.out_channels)
    return _Run(cfg, run_dir, device, data, model, optimizer, scheduler, sampler, loss_fn)


def _resume(run: _Run, log: Callable[[str], None]) -> None:
    """Continue from the run folder's checkpoint (its config must match)."""
    state = load_checkpoint(run.checkpoint)
    diff = config_diff(state["config"], run.cfg.to_dict())
    if diff:
        raise ValueError(
            f"{run.checkpoint} was written with a different config ({', '.join(diff)} differ); "
            "use another run directory or resume=False to start over"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"], run.sampler.rng)
    run.step, run.minutes = int(state["step"]), float(state["minutes"])
    run.history = [dict(row) for row in state["history"]]
    run.resumed_from = run.step
    log(f"resumed from {run.checkpoint} at step {run.step}")


def _validate_and_save(run: _Run, mean_loss: float) -> None:
    """Validation metrics into the history, then checkpoint, snapshot and ``history.csv``."""
    row = {"step": run.step, "minutes": round(run.minutes, 4), "loss": mean_loss,
           "lr": run.optimizer.param_groups[0]["lr"]}
    if run.data.val:
        run.model.eval()
        res = evaluate(run.model, run.data.val, run.cfg, run.cfg.threshold)
        run.model.train()
        row.update({"val_auc_roc": res["pooled"]["auc_roc"], "val_f1": res["pooled"]["f1"]})
    run.history.append(row)
    run.save()
    if run.cfg.keep_snapshots:  # weights only, for quality-vs-time curves after the run
        save_checkpoint(run.run_dir / "snapshots" / f"step{run.step:07d}.pt", {
            "model": run.model.state_dict(), "step": run.step, "minutes": run.minutes})
    write_history(run.run_dir / HISTORY, run.history)


def _finish(run: _Run, stopped_by: str, log: Callable[[str], None]) -> RunResult:
    """Final checkpoint, threshold choice, test evaluation, ``metrics.json`` and ``model.pt``."""
    cfg, data, model = run.cfg, run.data, run.model
    if stopped_by == "time" or not run.history or run.history[-1]["step"] != run.step:
        run.save()
    model.eval()
    val_probs = [predict_probability(model, e.image, cfg) for e in data.val] or None
    threshold, choice = choose_threshold(model, data, cfg, val_probs)
    metrics = {
        "dataset": cfg.dataset, "synthetic": data.synthetic, "steps": run.step,
        "train_minutes": run.minutes, "stopped_by": stopped_by, "threshold_choice": choice,
        "test": evaluate(model, data.test, cfg, threshold),
    }
    if data.val:
        metrics["val"] = evaluate(model, data.val, cfg, threshold, val_probs)
    write_metrics(run.run_dir, metrics)
    save_model(run.run_dir, model, cfg, data.in_channels, threshold)
    pooled = metrics["test"]["pooled"]
    log(f"done: {run.step} steps in {run.minutes:.1f} min; test AUC {pooled['auc_roc']:.4f} "
        f"F1 {pooled['f1']:.4f} (threshold {threshold:.3f})"
        + (" [synthetic data]" if data.synthetic else ""))
    return RunResult(run.run_dir, cfg, run.step, run.minutes, metrics, run.history,
                     data.synthetic, run.resumed_from, stopped_by)


def train(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    data_root: str | Path | None = None,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train ``cfg`` in ``run_dir`` (default ``runs/<dataset>-<profile>-<config hash>``).

    Args:
        resume: continue from ``run_dir/checkpoint.pt`` if it exists (its config must match).
        progress: tqdm progress bar.
        data_root: data directory (default ``$UNET_DATA_DIR``).
        stop_after: stop (as if killed) after this many steps without final evaluation; for
            testing resume.

    The run's figures (``curves.png``) are drawn by the caller from ``RunResult.history``.
    """
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / default_run_name(cfg)
    run = _setup(cfg, run_dir, data_root, log)
    if resume and run.checkpoint.exists():
        _resume(run, log)
    write_config(run_dir, cfg)

    stopped_by, running, count = "steps", 0.0, 0
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train", disable=not progress)
    run.model.train()
    while run.step < cfg.steps:
        if cfg.time_budget_min and run.minutes >= cfg.time_budget_min:
            stopped_by = "time"
            break
        t0 = time.perf_counter()
        batch = run.sampler.sample(cfg.batch_size)
        loss = train_step(run.model, batch, run.loss_fn, run.optimizer, cfg, run.device)
        if not torch.isfinite(loss):
            bar.close()
            raise _diverged(run, loss)
        run.scheduler.step()
        run.step += 1
        run.minutes += (time.perf_counter() - t0) / 60.0
        running, count = running + loss.item(), count + 1
        bar.update(1)
        bar.set_postfix(loss=f"{running / count:.4f}")
        if (cfg.eval_every and run.step % cfg.eval_every == 0) or run.step == cfg.steps:
            _validate_and_save(run, running / count)
            running, count = 0.0, 0
        if stop_after is not None and run.step >= stop_after:
            bar.close()
            return RunResult(run_dir, cfg, run.step, run.minutes, {}, run.history,
                             run.data.synthetic, run.resumed_from, "stop_after")
    bar.close()
    return _finish(run, stopped_by, log)


def _diverged(run: _Run, loss: torch.Tensor) -> TrainingDiverged:
    last = (f"{run.checkpoint} (step {run.history[-1]['step']:.0f})" if run.history
            else "none yet")
    return TrainingDiverged(
        f"loss became {loss.item()} at step {run.step + 1} of run {run.run_dir}; stopped. "
        f"Last good checkpoint: {last}. Try a lower lr (now {run.cfg.lr}) or bf16=False."
    )
