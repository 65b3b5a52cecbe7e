"""Training with run directories, atomic checkpoints and exact resume (paper Sec. 3).

A run lives in ``runs/<name>/``:

* ``config.json``: the :class:`~unet_core.config.TrainConfig`;
* ``history.csv``: one row per validation pass (step, minutes, loss, learning rate, metrics);
* ``checkpoint.pt``: model, optimizer, scheduler, step, history and every RNG state, written
  atomically at every validation pass (``weights_only`` loadable);
* ``model.pt``: the final weights with the config and the chosen threshold (for ``predict``);
* ``metrics.json``: the final evaluation (test split for DRIVE, held-out slices for ISBI) and
  ``threshold_choice``, how the threshold was chosen (:func:`choose_threshold`);
* ``curves.png``: loss and validation metrics against minutes of training.

A run killed at any point and started again with the same config continues from its last
checkpoint and ends with the same weights as an uninterrupted run with the same seed (the
patch sampler, the augmentation and dropout all draw from generators whose states are saved).
A loss that becomes NaN or infinite stops the run with :class:`TrainingDiverged`; the last good
checkpoint is kept.

Deviations from the paper are those of the chosen profile (see :mod:`unet_core.config`); the
paper profile follows Sec. 3 where the paper is explicit.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from unet_core.augment import make_augmentation
from unet_core.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from unet_core.config import TrainConfig
from unet_core.data import PatchBatch, PatchSampler, resolve_dataset
from unet_core.losses import foreground_probability, make_loss
from unet_core.metrics import (
    best_threshold,
    evaluate_set,
    pixel_error,
    rand_error,
    variation_of_information,
)
from unet_core.model import UNet
from unet_core.tiling import predict_tiled
from unet_core.weights import balanced_class_weights, instances_from_membranes, weight_map

RUNS_DIR_ENV = "UNET_RUNS_DIR"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
ISBI_TEST_SLICES = 5  # ISBI 2012 has no public test labels: hold out slices 25-29


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def runs_dir() -> Path:
    """Where runs live: ``$UNET_RUNS_DIR`` if set, else ``./runs``."""
    return Path(os.environ.get(RUNS_DIR_ENV, "./runs"))


def default_run_name(cfg: TrainConfig) -> str:
    return f"{cfg.dataset}-{cfg.profile}-{cfg.key()}"


# -- data -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Example:
    """One image ready for training or evaluation."""

    name: str
    image: np.ndarray = field(repr=False)  # (H, W, C) float32 in [0, 1]
    target: np.ndarray = field(repr=False)  # (H, W) bool: vessel (DRIVE) or membrane (ISBI)
    fov: np.ndarray | None = field(repr=False)  # (H, W) bool, None = everywhere
    second_observer: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class DataBundle:
    dataset: str
    root: Path
    synthetic: bool
    train: list[Example]
    val: list[Example]
    test: list[Example]

    @property
    def in_channels(self) -> int:
        return int(self.train[0].image.shape[2])


def prepare_image(image: np.ndarray, channels: str = "rgb") -> np.ndarray:
    """uint8 ``(H, W[, C])`` -> float32 ``(H, W, C)`` in [0, 1] with the chosen channels.

    ``rgb`` keeps colour, ``green`` keeps the green channel (where vessels contrast most),
    ``gray`` takes the luminance. A greyscale image stays one channel whatever is asked.
    """
    image = np.asarray(image)
    scale = 1.0 / 255.0 if image.dtype == np.uint8 else 1.0
    x = image.astype(np.float32) * np.float32(scale)
    if x.ndim == 2:
        return x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if x.shape[2] == 4:  # RGBA: drop alpha
        x = x[:, :, :3]
    if x.shape[2] == 1 or channels == "rgb":
        return np.ascontiguousarray(x)
    if channels == "green":
        return np.ascontiguousarray(x[:, :, 1:2])
    gray = x[:, :, 0] * 0.299 + x[:, :, 1] * 0.587 + x[:, :, 2] * 0.114
    return gray[:, :, None].astype(np.float32)


def load_data(cfg: TrainConfig, data_root: str | Path | None = None) -> DataBundle:
    """Load the config's data set (real if present, else synthetic) and split it.

    DRIVE: the official 20 training images minus the last ``val_images`` (validation), the
    official 20 test images (evaluated inside the FOV against ``1st_manual``).
    ISBI 2012: slices 0-24 minus the last ``val_images`` train, slices 25-29 are the held-out
    test set (the challenge's test labels are not public).
    """
    resolved = resolve_dataset(cfg.dataset, data_root)
    if cfg.dataset == "drive":
        train_s = resolved.load("training")
        test_s = resolved.load("test")

        def convert(s: Any) -> Example:
            return Example(s.name, prepare_image(s.image, cfg.channels), s.vessels, s.fov,
                           s.second_observer)

        train_all = [convert(s) for s in train_s]
        test = [convert(s) for s in test_s]
    else:
        slices = resolved.load("train")
        examples = [
            Example(s.name, prepare_image(s.image), s.membranes, None) for s in slices
        ]
        if len(examples) <= ISBI_TEST_SLICES + cfg.val_images:
            raise ValueError(
                f"ISBI 2012 at {resolved.root} has {len(examples)} labelled slices: need more "
                f"than {ISBI_TEST_SLICES} held-out + {cfg.val_images} validation slices"
            )
        train_all, test = examples[:-ISBI_TEST_SLICES], examples[-ISBI_TEST_SLICES:]
    if cfg.val_images >= len(train_all):
        raise ValueError(
            f"val_images={cfg.val_images} leaves no training image ({len(train_all)} available)"
        )
    cut = len(train_all) - cfg.val_images
    return DataBundle(cfg.dataset, resolved.root, resolved.synthetic, train_all[:cut],
                      train_all[cut:], test)


def instance_labels(example: Example, cfg: TrainConfig) -> np.ndarray:
    """Instances for the weight map: connected components of the cell interiors for ISBI
    (the non-target class, separated by the membranes we segment), of the vessels for DRIVE."""
    objects = ~example.target if cfg.dataset == "isbi2012" else example.target
    return instances_from_membranes(objects.astype(np.uint8))


def loss_weight_maps(examples: Sequence[Example], cfg: TrainConfig) -> list[np.ndarray]:
    """The paper's weight maps (Eq. 2), precomputed per image as in the paper (Sec. 3).

    ``w_c`` balances the class frequencies of the whole training set (the paper: "the weight
    map to balance the class frequencies"), not of each image.
    """
    labels = [instance_labels(e, cfg) for e in examples]
    class_weights = balanced_class_weights(labels)
    return [weight_map(lab, w0=cfg.w0, sigma=cfg.wmap_sigma, class_weights=class_weights)
            for lab in labels]


# -- model, optimiser -------------------------------------------------------------------------
def out_channels_for(loss: str) -> int:
    """The paper's two-channel softmax for weighted CE, one sigmoid channel otherwise."""
    return 2 if loss == "weighted_ce" else 1


def build_model(cfg: TrainConfig, in_channels: int) -> UNet:
    return UNet(
        in_channels,
        out_channels_for(cfg.loss),
        base_channels=cfg.base_channels,
        depth=cfg.depth,
        padding=cfg.padding,  # type: ignore[arg-type]
        batch_norm=cfg.batch_norm,
        dropout=cfg.dropout,
    )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available")
    return torch.device(name)


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.15,
            cycle_momentum=cfg.optimizer == "sgd",
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def build_sampler(cfg: TrainConfig, model: UNet, examples: Sequence[Example]) -> PatchSampler:
    if cfg.padding == "valid" and not model.is_valid_size(cfg.patch_size):
        raise ValueError(model._size_message("patch_size", cfg.patch_size))
    if cfg.padding == "same" and cfg.patch_size % 2**cfg.depth:
        raise ValueError(model._size_message("patch_size", cfg.patch_size))
    aug_kwargs: dict[str, Any] = {}
    if cfg.augmentation == "paper":
        aug_kwargs = {"sigma": cfg.elastic_sigma, "grid": cfg.elastic_grid}
    transform = make_augmentation(cfg.augmentation, **aug_kwargs)
    weights = (
        loss_weight_maps(examples, cfg) if cfg.loss == "weighted_ce" else None
    )
    return PatchSampler(
        [e.image for e in examples],
        [e.target for e in examples],
        None if examples[0].fov is None else [e.fov for e in examples],
        input_size=cfg.patch_size,
        output_size=model.output_size(cfg.patch_size),
        seed=cfg.seed,
        transform=None if cfg.augmentation == "none" else transform,
        weights=weights,
        min_valid_fraction=0.1 if examples[0].fov is not None else 0.0,
    )


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
    x = batch.image.to(device)
    if cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
        logits = model(x)  # (N, K, H_out, W_out)
    weight = None if batch.weight is None else batch.weight.to(device)
    loss = loss_fn(logits.float(), batch.target.to(device), mask=batch.valid.to(device),
                   weight_map=weight)
    if torch.isfinite(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return loss.detach()


# -- evaluation -------------------------------------------------------------------------------
def predict_probability(model: UNet, image: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Foreground probability ``(H, W)`` of a prepared ``(H, W, C)`` image (overlap-tile)."""
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, 2, 0)))
    logits = predict_tiled(
        model, x, cfg.eval_tile, tta=cfg.tta, batch_size=4,
        autocast_dtype=torch.bfloat16 if cfg.bf16 else None,
    )
    return foreground_probability(logits[None])[0].numpy()


def evaluate(
    model: UNet, examples: Sequence[Example], cfg: TrainConfig, threshold: float,
    probs: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``examples`` (pooled, mean and per image)."""
    if probs is None:
        probs = [predict_probability(model, e.image, cfg) for e in examples]
    targets = [e.target for e in examples]
    fovs = None if examples[0].fov is None else [e.fov for e in examples]
    result: dict[str, Any] = {"threshold": threshold, "images": [e.name for e in examples]}
    ev = evaluate_set(probs, targets, fovs, threshold=threshold)
    result["pooled"] = ev.pooled.as_dict()
    result["mean"] = ev.mean.as_dict()
    result["per_image"] = [m.as_dict() for m in ev.per_image]
    if cfg.dataset == "isbi2012":
        result["isbi"] = {
            "pixel_error": float(np.mean([pixel_error(p, t, threshold=threshold)
                                          for p, t in zip(probs, targets, strict=True)])),
            "rand_error": float(np.mean([rand_error(p, t, threshold=threshold)
                                         for p, t in zip(probs, targets, strict=True)])),
            "variation_of_information": float(np.mean([
                variation_of_information(p, t, threshold=threshold).total
                for p, t in zip(probs, targets, strict=True)
            ])),
        }
    return result


# -- run state --------------------------------------------------------------------------------
@dataclass
class RunResult:
    run_dir: Path
    config: TrainConfig
    steps: int
    train_minutes: float
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    synthetic: bool
    resumed_from: int | None = None
    stopped_by: str = "steps"


HISTORY_FIELDS = ("step", "minutes", "loss", "lr", "val_auc_roc", "val_f1", "val_loss")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_history(path: Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    _write_text_atomic(path, buf.getvalue())


def config_diff(a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Config fields that differ (device and threads never change a result)."""
    skip = {"device", "threads", *ignore}
    return sorted(k for k in set(a) | set(b) if k not in skip and a.get(k) != b.get(k))


def load_model(path: str | Path) -> tuple[UNet, TrainConfig, float]:
    """Load ``model.pt`` (or a ``checkpoint.pt``): the model, its config and its threshold."""
    state = load_checkpoint(path)
    for key in ("model", "config", "in_channels"):
        if key not in state:
            raise ValueError(f"{path} is not a unet_core model file: it has no {key!r} entry")
    cfg = TrainConfig.from_dict(state["config"])
    model = build_model(cfg, int(state["in_channels"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, cfg, float(state.get("threshold", cfg.threshold))


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
    """
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / default_run_name(cfg)
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

    step, minutes, history, resumed_from = 0, 0.0, [], None
    ckpt_path = run_dir / CHECKPOINT
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        diff = config_diff(state["config"], cfg.to_dict())
        if diff:
            raise ValueError(
                f"{ckpt_path} was written with a different config ({', '.join(diff)} differ); "
                "use another run directory or resume=False to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"], sampler.rng)
        step, minutes = int(state["step"]), float(state["minutes"])
        history = [dict(row) for row in state["history"]]
        resumed_from = step
        log(f"resumed from {ckpt_path} at step {step}")
    _write_text_atomic(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")

    def save(step_: int) -> None:
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "step": step_, "minutes": minutes,
            "history": history, "rng": capture_rng(sampler.rng), "config": cfg.to_dict(),
            "in_channels": data.in_channels,
        })

    def validate() -> dict[str, float]:
        if not data.val:
            return {}
        res = evaluate(model, data.val, cfg, cfg.threshold)
        return {"val_auc_roc": res["pooled"]["auc_roc"], "val_f1": res["pooled"]["f1"]}

    stopped_by = "steps"
    running, count = 0.0, 0
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not progress)
    model.train()
    while step < cfg.steps:
        if cfg.time_budget_min and minutes >= cfg.time_budget_min:
            stopped_by = "time"
            break
        t0 = time.perf_counter()
        loss = train_step(model, sampler.sample(cfg.batch_size), loss_fn, optimizer, cfg, device)
        if not torch.isfinite(loss):
            bar.close()
            last = f"{ckpt_path} (step {history[-1]['step']:.0f})" if history else "none yet"
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {step + 1} of run {run_dir}; stopped. "
                f"Last good checkpoint: {last}. Try a lower lr (now {cfg.lr}) or bf16=False."
            )
        scheduler.step()
        step += 1
        minutes += (time.perf_counter() - t0) / 60.0
        running += loss.item()
        count += 1
        bar.update(1)
        bar.set_postfix(loss=f"{running / count:.4f}")
        at_eval = (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps
        if at_eval:
            row = {"step": step, "minutes": round(minutes, 4), "loss": running / count,
                   "lr": optimizer.param_groups[0]["lr"]}
            model.eval()
            row.update(validate())
            model.train()
            history.append(row)
            running, count = 0.0, 0
            save(step)
            if cfg.keep_snapshots:  # weights only, for quality-vs-time curves after the run
                save_checkpoint(run_dir / "snapshots" / f"step{step:07d}.pt", {
                    "model": model.state_dict(), "step": step, "minutes": minutes})
            _write_history(run_dir / "history.csv", history)
        if stop_after is not None and step >= stop_after:
            bar.close()
            return RunResult(run_dir, cfg, step, minutes, {}, history, data.synthetic,
                             resumed_from, "stop_after")
    bar.close()
    if stopped_by == "time" or not history or history[-1]["step"] != step:
        save(step)

    model.eval()
    val_probs = [predict_probability(model, e.image, cfg) for e in data.val] or None
    threshold, choice = choose_threshold(model, data, cfg, val_probs)
    metrics = {
        "dataset": cfg.dataset, "synthetic": data.synthetic, "steps": step,
        "train_minutes": minutes, "stopped_by": stopped_by, "threshold_choice": choice,
        "test": evaluate(model, data.test, cfg, threshold),
    }
    if data.val:
        metrics["val"] = evaluate(model, data.val, cfg, threshold, val_probs)
    _write_text_atomic(run_dir / "metrics.json", json.dumps(_finite(metrics), indent=1) + "\n")
    from unet_core.results import save_run_figures  # here: results imports this module

    save_run_figures(run_dir, history)
    save_checkpoint(run_dir / MODEL, {
        "model": model.state_dict(), "config": cfg.to_dict(), "in_channels": data.in_channels,
        "threshold": threshold, "format": 1,
    })
    pooled = metrics["test"]["pooled"]
    log(f"done: {step} steps in {minutes:.1f} min; test AUC {pooled['auc_roc']:.4f} "
        f"F1 {pooled['f1']:.4f} (threshold {threshold:.3f})"
        + (" [synthetic data]" if data.synthetic else ""))
    return RunResult(run_dir, cfg, step, minutes, metrics, history, data.synthetic,
                     resumed_from, stopped_by)


def _f1_optimum(probs: list[np.ndarray], examples: Sequence[Example]) -> dict[str, Any]:
    """Pooled F1 optimum of a set, and each image's own optimum (how much they disagree)."""
    fovs = [e.fov for e in examples]  # all None (ISBI) or all masks (DRIVE)
    best = best_threshold(probs, [e.target for e in examples], None if fovs[0] is None else fovs)
    per_image = [best_threshold(p, e.target, e.fov) for p, e in zip(probs, examples, strict=True)]
    return {"threshold": best.threshold, "f1": best.value, "n_images": len(examples),
            "per_image": [{"name": e.name, "threshold": b.threshold, "f1": b.value}
                          for e, b in zip(examples, per_image, strict=True)]}


def choose_threshold(
    model: UNet, data: DataBundle, cfg: TrainConfig, val_probs: list[np.ndarray] | None = None,
) -> tuple[float, dict[str, Any]]:
    """The binarisation threshold of a trained model, and a record of how it was chosen.

    ``cfg.tune_threshold`` off: ``cfg.threshold``. On: the threshold that maximises the F1 score
    pooled over ``cfg.threshold_images``: ``"validation"`` (the held-out validation images) or
    ``"training_set"`` (every official training image: those trained on and the validation
    images). The test set is never used. The record holds the F1 optimum of every candidate set
    computed, so a report can say what the other rule would have chosen.
    """
    choice: dict[str, Any] = {"tuned": cfg.tune_threshold, "images": cfg.threshold_images}
    if not cfg.tune_threshold:
        return cfg.threshold, choice | {"threshold": cfg.threshold}
    if data.val:
        if val_probs is None:
            val_probs = [predict_probability(model, e.image, cfg) for e in data.val]
        choice["validation"] = _f1_optimum(val_probs, data.val)
    if cfg.threshold_images == "training_set":
        probs = [predict_probability(model, e.image, cfg) for e in data.train]
        choice["training_set"] = _f1_optimum(probs + list(val_probs or []),
                                             [*data.train, *data.val])
    threshold = float(choice[cfg.threshold_images]["threshold"])
    return threshold, choice | {"threshold": threshold}


def _finite(obj: Any) -> Any:
    """JSON has no NaN: map non-finite floats to None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj
