"""A behavioural probe of unet_core: what the code computes, one short digest per component.

A result (a run folder, a study cell, a chapter's number) is tied to what the code computes,
not to how it is written: renaming a variable or moving a function into another module makes
no run differ, while changing a formula does. :func:`run_probe` therefore runs every path that
leads to a result on small synthetic inputs and hashes what comes out;
:func:`unet_train.provenance.code_fingerprint` is the digest of these digests.

What runs (each name is a component of the result, the part of it that a reader sees change):

* ``data.drive.<channels>`` and ``data.isbi2012``: :func:`~unet_core.data.splits.load_data` on
  a synthetic DRIVE and ISBI 2012 written by the package's own generators, for every input
  choice of :data:`~unet_core.data.prepare.CHANNELS`, ISBI 2012's cross-validation folds and
  DRIVE's ``train_start``; ``data.prepare``: those choices on a
  larger image; ``fov``: the field-of-view estimate;
* ``weights.<dataset>``: the weight maps of Eq. 2 as the recipe computes them, and the uniform
  class reweighting that controls for them (``class_reweight_w0``);
* ``sampler.<augmentation>.<padding>``: patches of :func:`~unet_train.recipe.build_sampler`
  for every augmentation and both paddings (with weight maps), and with the pixels outside
  the FOV counted as background;
* ``model.<padding>``: the network with and without batch norm and drop-out, train and eval;
* ``loss.<name>``: every loss, both channel conventions, its value and gradient;
* ``optimizer.<name>``, ``schedule.<name>``: every optimiser's steps on a fixed objective and
  every schedule's learning rate (and SGD's momentum) at each step of a 3000-step run;
* ``train.<recipe>``: real steps of :func:`unet_train.train.train_step` with grad clipping,
  drop-out, each loss family, and the weight average (:mod:`unet_train.ema`) of one recipe;
* ``inference.<padding>.<tta>``: overlap-tile probabilities for every test-time augmentation;
* ``threshold.<rule>``: the threshold choice of both ``threshold_images`` rules and the fixed
  one; ``evaluate.<dataset>``: the metrics of :func:`~unet_train.evaluation.evaluate` (inside
  the FOV for DRIVE, with the ISBI errors for ISBI 2012); ``metrics.*``: the metric functions,
  the challenge's thinned scores and warping error included.

Stable numbers. The networks run in float64 (a wrapper casts their input; the library is not
changed), on one thread, with deterministic algorithms and fixed seeds; everything is restored
afterwards. :func:`train_step` computes the loss of ``logits.float()``; the probe's loss reads
the float64 logits of that same forward pass instead, so training is float64 too. Each array
is hashed through a few summaries (its L1 size, sum, a sum weighted by fixed pseudo-random
weights, sum of squares, min, max) rounded to :data:`DIGITS_64` significant digits of the
array's size for float64 data, :data:`DIGITS_32` for float32 data; integers and booleans are
hashed exactly. The last bits of a result depend on the order of its sums (thread count,
vector width); the rounding sits far above them, so the digests are the same with 1 and 2
threads (measured: 396 of 399 float arrays bit-identical, the others within 1e-6 of a rounding
step); another CPU changes the same last bits, so it should agree too, while a changed formula
changes far more. A
component that needs a module this Python lacks (albumentations on a bare GPU image) has the
digest ``unavailable: <module>``. Not probed: the precision and memory format (fp32 or bf16,
NCHW or NHWC), which change how fast the same network computes, and files written or timed.

``python -m unet_train.probe`` prints the component digests as JSON (``--threads 2`` to check
thread stability, ``--detail`` for the rounded summaries). Chapter 5 explains the provenance.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unet_core.augment import AUGMENTATIONS
from unet_core.data import (
    load_drive,
    load_isbi2012,
    synthetic_fundus,
    write_synthetic_drive,
    write_synthetic_isbi2012,
)
from unet_core.data.prepare import CHANNELS, prepare_image
from unet_core.data.splits import DataBundle, load_data
from unet_core.losses import LOSS_NAMES, make_loss
from unet_core.metrics import (
    THRESHOLD_METRICS,
    best_threshold,
    challenge_scores,
    evaluate_set,
    pixel_error,
    pr_curve,
    rand_scores,
    roc_curve,
    variation_of_information,
    warping_error,
)
from unet_core.model import PADDINGS, UNet
from unet_core.thresholds import THRESHOLD_IMAGES
from unet_core.tiling import TTA_MODES
from unet_train.config import TrainConfig
from unet_train.devices import choose_precision
from unet_train.ema import WeightAverage
from unet_train.evaluation import choose_threshold, evaluate, predict_probability
from unet_train.fov import estimate_fov
from unet_train.optim import OPTIMIZERS, SCHEDULERS
from unet_train.recipe import (
    build_model,
    build_optimizer,
    build_sampler,
    build_scheduler,
    loss_weight_maps,
)
from unet_train.train import train_step

#: Significant digits kept of float64 and of float32 results.
DIGITS_64, DIGITS_32 = 9, 6
#: Hex digits of a component's digest.
DIGEST_DIGITS = 12
#: Steps over which the schedules are sampled (a realistic run: the cpu profile's length).
SCHEDULE_STEPS = 3000
#: Training steps per recipe.
TRAIN_STEPS = 3
#: The probe's small networks and images: patch sides valid for depth 2 (valid: 60 -> 20).
SMALL = {"base_channels": 4, "depth": 2, "batch_size": 2, "patch_size": 32, "eval_tile": 32,
         "val_images": 1, "steps": 4, "eval_every": 0, "bf16": False, "channels_last": False,
         "device": "cpu", "tta": "none"}
VALID = {"padding": "valid", "patch_size": 60, "eval_tile": 60}


# -- rounding and hashing ------------------------------------------------------------------------
def _fixed_weights(n: int) -> np.ndarray:
    """``n`` pseudo-random weights in [-0.5, 0.5) from integer arithmetic (the same in every
    NumPy version, unlike a random generator's stream)."""
    i = np.arange(n, dtype=np.uint64)
    return ((i * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(2**32)) / 2.0**32 - 0.5


def _quantum(value: float, unit: float) -> int:
    return int(np.round(value / unit)) if unit > 0 else 0


def _float_summary(a: np.ndarray, digits: int) -> list[Any]:
    """Summaries of a float array, each rounded to ``digits`` significant digits of the array's
    size (sum of absolute values), so that a value that is noise next to it (a cancelling sum)
    is rounded away with the noise."""
    x = a.astype(np.float64).ravel()
    finite = np.isfinite(x)
    x = x[finite]
    if x.size == 0:
        return [int((~finite).sum())]
    w = _fixed_weights(finite.size)[finite]
    size, peak = float(np.abs(x).sum()), float(np.abs(x).max())
    unit, w_unit = size * 10.0**-digits, float(np.abs(w * x).sum()) * 10.0**-digits
    return [int((~finite).sum()), f"{size:.{digits - 1}e}", _quantum(x.sum(), unit),
            _quantum(float((w * x).sum()), w_unit), f"{float((x * x).sum()):.{digits - 1}e}",
            _quantum(float(x.min()), peak * 10.0**-digits),
            _quantum(float(x.max()), peak * 10.0**-digits)]


def _array(a: np.ndarray) -> dict[str, Any]:
    """Shape, kind and either the exact content (integers, booleans) or rounded summaries."""
    out: dict[str, Any] = {"shape": list(a.shape), "kind": a.dtype.kind}
    if a.dtype.kind in "biu":
        out["sha"] = hashlib.sha256(np.ascontiguousarray(a, dtype=np.int64).tobytes()
                                    ).hexdigest()[:16]
    elif a.dtype.kind == "f":
        out["sums"] = _float_summary(a, DIGITS_64 if a.dtype.itemsize >= 8 else DIGITS_32)
    else:
        raise TypeError(f"the probe cannot hash an array of dtype {a.dtype}")
    return out


def canonical(value: Any) -> Any:
    """``value`` as JSON-ready data with every float rounded (tensors and arrays summarised)."""
    if isinstance(value, torch.Tensor):
        return _array(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return _array(value)
    if isinstance(value, bool | int | str | None | np.bool_ | np.integer):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float | np.floating):
        digits = DIGITS_32 if isinstance(value, np.float32) else DIGITS_64
        return f"{float(value):.{digits - 1}e}"
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    raise TypeError(f"the probe cannot hash a {type(value).__name__}")


@dataclass(frozen=True)
class Unavailable:
    """A component that needs a module this Python does not have (albumentations, say): its
    digest says so, so the code fingerprint differs from that of a complete installation."""

    module: str | None


def available(compute: Callable[[], Any]) -> Any:
    """``compute()``, or :class:`Unavailable` when it needs a module that is not installed."""
    try:
        return compute()
    except ModuleNotFoundError as err:
        return Unavailable(err.name)


def digest(value: Any) -> str:
    """The short digest of :func:`canonical` of ``value`` (``unavailable: <module>`` for an
    :class:`Unavailable` component)."""
    if isinstance(value, Unavailable):
        return f"unavailable: {value.module}"
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_DIGITS]


# -- the probe's setting -------------------------------------------------------------------------
@contextlib.contextmanager
def controlled(threads: int) -> Iterator[None]:
    """``threads`` torch threads and deterministic algorithms for the block; the thread count,
    the deterministic setting and torch's and Python's random states are restored afterwards."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.get_rng_state(),
             random.getstate())
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        torch.set_rng_state(saved[3])
        random.setstate(saved[4])


def _seed(seed: int) -> None:
    """Seed torch and Python's ``random`` as training does (NumPy code takes Generators)."""
    torch.manual_seed(seed)
    random.seed(seed)


def small_config(**changes: Any) -> TrainConfig:
    """The cpu profile on the probe's small network and patches, with ``changes``."""
    return TrainConfig.from_profile("cpu", **{**SMALL, **changes})


class Float64(nn.Module):
    """A U-Net computing in float64: it casts its input (the library hands it float32) and
    otherwise behaves as the network (attributes such as ``padding`` or ``output_size`` are the
    network's). While ``tap`` is on, it keeps the float64 logits of the last forward pass for
    :class:`Float64Loss`."""

    def __init__(self, net: UNet) -> None:
        super().__init__()
        self.net = net.double()
        self.tap = False
        self.last: torch.Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.net, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.to(torch.float64))
        self.last = out if self.tap else None
        return out


class Float64Loss:
    """A loss that :func:`~unet_train.train.train_step` calls with ``logits.float()``: it
    computes the loss of the float64 logits that ``model`` just returned when the logits it is
    given are exactly their float32 copy (else of what it is given)."""

    def __init__(self, loss: Callable[..., torch.Tensor], model: Float64) -> None:
        self.loss, self.model = loss, model

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        full, self.model.last = self.model.last, None
        if full is None or full.shape != logits.shape or not torch.equal(
                full.detach().to(logits.dtype), logits.detach()):
            full = logits
        return self.loss(full, target, **kwargs)


def float64_model(cfg: TrainConfig, in_channels: int, seed: int) -> Float64:
    """The config's network, freshly initialised from ``seed``, in float64."""
    _seed(seed)
    return Float64(build_model(cfg, in_channels))


def _fixed_input(model: Float64, side: int, n: int = 2, seed: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, model.in_channels, side, side, generator=g, dtype=torch.float64)


@dataclass
class Inputs:
    """The probe's synthetic data sets (written into ``root``) and their prepared splits."""

    root: Path
    drive: DataBundle
    isbi: DataBundle

    @classmethod
    def write(cls, root: Path) -> Inputs:
        write_synthetic_drive(root / "DRIVE", n_train=3, n_test=2, size=(72, 68), seed=1)
        write_synthetic_isbi2012(root / "isbi2012", n_train=10, n_test=1, size=64, seed=1,
                                 scale=0.5)
        return cls(root, load_data(small_config(), root),
                   load_data(small_config(dataset="isbi2012"), root))

    def bundle(self, dataset: str) -> DataBundle:
        return self.drive if dataset == "drive" else self.isbi


# -- the components ------------------------------------------------------------------------------
def _examples(bundle: DataBundle) -> dict[str, Any]:
    return {split: [(e.name, e.image, e.target, e.fov, e.second_observer)
                    for e in getattr(bundle, split)] for split in ("train", "val", "test")}


def _fundus() -> np.ndarray:
    """A fundus photograph large enough for CLAHE's clip limit to act (its 8x8 tiles of a
    72x68 image hold too few pixels for any limit to clip)."""
    return synthetic_fundus(np.random.default_rng(14), (160, 152)).image


def probe_data(inputs: Inputs) -> dict[str, Any]:
    """Loading and preparation: every DRIVE input choice, ISBI 2012's splits, and every input
    choice of a larger colour and grey image."""
    out = {f"data.drive.{c}": _examples(load_data(small_config(channels=c), inputs.root))
           for c in CHANNELS}
    out["data.isbi2012"] = _examples(inputs.isbi)
    out["data.isbi2012.cv"] = [_examples(load_data(small_config(
        dataset="isbi2012", cv_folds=3, cv_fold=k, isbi_gap=1), inputs.root)) for k in range(3)]
    out["data.drive.train_start"] = _examples(load_data(small_config(
        train_images=1, train_start=1), inputs.root))
    fundus = _fundus()
    out["data.prepare"] = [prepare_image(image, c) for image in (fundus, fundus[:, :, 1])
                           for c in CHANNELS]
    return out


def probe_fov(inputs: Inputs) -> dict[str, Any]:
    """The field-of-view estimate of fundus photographs and of an EM slice (none found)."""
    images = [s.image for s in load_drive(inputs.root / "DRIVE", "test")] + [_fundus()]
    images.append(load_isbi2012(inputs.root / "isbi2012", "train")[0].image)
    return {"fov": [(e.mask, e.threshold, e.found) for e in map(estimate_fov, images)]}


def probe_weights(inputs: Inputs) -> dict[str, Any]:
    """The weight maps of Eq. 2 of the training images, as the recipe computes them."""
    out = {f"weights.{d}": loss_weight_maps(inputs.bundle(d).train,
                                            small_config(dataset=d, loss="weighted_ce"))
           for d in ("drive", "isbi2012")}
    out["weights.isbi2012.class_reweight"] = loss_weight_maps(
        inputs.isbi.train, small_config(dataset="isbi2012", loss="weighted_ce", w0=0.0,
                                        class_reweight_w0=10.0))
    return out


def probe_sampler(inputs: Inputs) -> dict[str, Any]:
    """Two batches of patches for every augmentation and padding, with weight maps."""
    out = {}
    for aug in AUGMENTATIONS:
        for padding in PADDINGS:
            cfg = small_config(augmentation=aug, loss="weighted_ce",
                               **(VALID if padding == "valid" else {}))
            out[f"sampler.{aug}.{padding}"] = available(lambda cfg=cfg: _patches(cfg, inputs))
    out["sampler.outside_fov_background"] = _patches(
        small_config(augmentation="none", outside_fov="background"), inputs)
    return out


def _patches(cfg: TrainConfig, inputs: Inputs) -> list[tuple[torch.Tensor | None, ...]]:
    _seed(1)
    sampler = build_sampler(cfg, build_model(cfg, inputs.drive.in_channels), inputs.drive.train)
    return [tuple(sampler.sample(2)) for _ in range(2)]


def probe_models() -> dict[str, Any]:
    """Forward passes (train and eval mode) with and without batch norm and drop-out."""
    out = {}
    for padding in PADDINGS:
        runs = []
        for batch_norm in (False, True):
            for dropout in (0.0, 0.5):
                cfg = small_config(batch_norm=batch_norm, dropout=dropout,
                                   **(VALID if padding == "valid" else {}))
                model = float64_model(cfg, 3, seed=2)
                x = _fixed_input(model, cfg.patch_size)
                with torch.no_grad():
                    runs.append((model.train()(x), model.eval()(x)))
        out[f"model.{padding}"] = runs
    return out


def _loss_inputs(channels: int, seed: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(2, channels, 12, 10, generator=g, dtype=torch.float64)
    target = torch.rand(2, 12, 10, generator=g) < 0.3
    mask = torch.rand(2, 12, 10, generator=g) < 0.8
    weight = 0.5 + 2 * torch.rand(2, 12, 10, generator=g, dtype=torch.float64)
    return logits, target, mask, weight


def probe_losses() -> dict[str, Any]:
    """Every loss, with one and two channels: value and gradient, with a mask and weights."""
    out = {}
    for name in LOSS_NAMES:
        results = []
        for channels in (1, 2):
            logits, target, mask, weight = _loss_inputs(channels)
            logits.requires_grad_(True)
            loss = make_loss(name, out_channels=channels)
            kwargs = {} if name == "dice" else {"weight_map": weight}
            value = loss(logits, target, mask=mask, **kwargs)
            value.backward()
            results.append((value, logits.grad, loss(logits.detach(), target)))
        out[f"loss.{name}"] = results
    return out


class _Quadratic(nn.Module):
    """A fixed float64 objective for the optimisers: ``sum(a * (p - b)**2)``."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.p = nn.Parameter(torch.randn(16, generator=g, dtype=torch.float64))
        self.a = torch.rand(16, generator=g, dtype=torch.float64) + 0.1
        self.b = torch.randn(16, generator=g, dtype=torch.float64)

    def forward(self) -> torch.Tensor:
        return (self.a * (self.p - self.b) ** 2).sum()


def probe_optimizers() -> dict[str, Any]:
    """Twenty steps of every optimiser (with momentum and weight decay) on a fixed objective."""
    out = {}
    for name in OPTIMIZERS:
        cfg = small_config(optimizer=name, lr=0.05, momentum=0.9, weight_decay=0.01)
        objective = _Quadratic()
        optimizer = build_optimizer(cfg, objective)
        path = []
        for _ in range(20):
            optimizer.zero_grad()
            objective().backward()
            optimizer.step()
            path.append(objective.p.detach().clone())
        out[f"optimizer.{name}"] = path
    return out


def probe_schedules() -> dict[str, Any]:
    """Every schedule's learning rate (and momentum, which one-cycle cycles for SGD) at each
    step of a :data:`SCHEDULE_STEPS`-step run, for SGD and Adam."""
    out = {}
    for name in SCHEDULERS:
        runs = []
        for optimizer_name in ("sgd", "adam"):
            cfg = small_config(scheduler=name, optimizer=optimizer_name, steps=SCHEDULE_STEPS)
            optimizer = build_optimizer(cfg, _Quadratic())
            scheduler = build_scheduler(cfg, optimizer)
            lrs, momenta = [], []
            for _ in range(SCHEDULE_STEPS):
                group = optimizer.param_groups[0]
                lrs.append(group["lr"])
                momenta.append(group.get("momentum", 0.0))
                optimizer.step()
                scheduler.step()
            runs.append((np.array(lrs), np.array(momenta)))
        out[f"schedule.{name}"] = runs
    return out


#: Training recipes: the cpu profile; the paper's (valid padding, drop-out, weighted CE with
#: the weight map, elastic deformation, SGD) with grad clipping; ISBI 2012 with Dice, AdamW,
#: cosine and the weight average.
RECIPES: dict[str, dict[str, Any]] = {
    "cpu": {},
    "paper": {**VALID, "batch_norm": False, "dropout": 0.5, "augmentation": "paper",
              "loss": "weighted_ce", "optimizer": "sgd", "lr": 0.01, "momentum": 0.99,
              "scheduler": "constant", "grad_clip": 0.05},
    "isbi2012": {"dataset": "isbi2012", "loss": "dice", "optimizer": "adamw",
                 "weight_decay": 0.01, "scheduler": "cosine", "augmentation": "none",
                 "ema_decay": 0.9, "grad_clip": 1.0},
}


def _train(cfg: TrainConfig, bundle: DataBundle) -> list[Any]:
    """:data:`TRAIN_STEPS` steps as :func:`unet_train.train.train` takes them (step, schedule,
    weight average), then the network's output on a fixed input."""
    model = float64_model(cfg, bundle.in_channels, seed=5)
    _seed(6)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    sampler = build_sampler(cfg, model, bundle.train)
    loss_fn = Float64Loss(make_loss(cfg.loss, out_channels=model.out_channels), model)
    ema = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    device = torch.device("cpu")
    precision = choose_precision(device, cfg.bf16)  # float64 computes in float64 whatever it is
    steps: list[Any] = []
    model.train()
    for _ in range(TRAIN_STEPS):
        model.tap = True
        result = train_step(model, sampler.sample(cfg.batch_size), loss_fn, optimizer, cfg,
                            device, precision=precision)
        model.tap = False
        scheduler.step()
        if ema is not None:
            ema.update(model)
        steps.append(tuple(result))
    x = _fixed_input(model, cfg.patch_size)
    with torch.no_grad():
        evaluated = [model.eval()(x)]
        if ema is not None:
            evaluated.append(ema.averaged(model)(x))
    return [steps, evaluated]


def probe_training(inputs: Inputs) -> dict[str, Any]:
    """A few real training steps of every recipe in :data:`RECIPES`."""
    out = {}
    for name, changes in RECIPES.items():
        cfg = small_config(**changes)
        out[f"train.{name}"] = available(lambda cfg=cfg: _train(cfg, inputs.bundle(cfg.dataset)))
    return out


def probe_inference(inputs: Inputs) -> dict[str, Any]:
    """Overlap-tile probabilities of a DRIVE test image, both paddings, every TTA mode."""
    out = {}
    image = inputs.drive.test[0].image
    for padding in PADDINGS:
        base = VALID if padding == "valid" else {}
        model = float64_model(small_config(**base), 3, seed=8).eval()
        for tta in TTA_MODES:
            out[f"inference.{padding}.{tta}"] = predict_probability(
                model, image, small_config(tta=tta, **base))
    return out


def probe_thresholds(inputs: Inputs) -> dict[str, Any]:
    """The threshold of a network by each rule, and the fixed one."""
    model = float64_model(small_config(), 3, seed=9).eval()
    out = {f"threshold.{rule}": choose_threshold(model, inputs.drive,
                                                 small_config(threshold_images=rule))
           for rule in THRESHOLD_IMAGES}
    out["threshold.fixed"] = choose_threshold(
        model, inputs.drive, small_config(tune_threshold=False, threshold=0.4))
    return out


def probe_evaluation(inputs: Inputs) -> dict[str, Any]:
    """:func:`~unet_train.evaluation.evaluate` on the test images (DRIVE inside the FOV, ISBI
    2012 with its errors) at the median probability, so both classes are predicted."""
    out = {}
    for dataset in ("drive", "isbi2012"):
        bundle = inputs.bundle(dataset)
        cfg = small_config(dataset=dataset)
        model = float64_model(cfg, bundle.in_channels, seed=10).eval()
        probs = [predict_probability(model, e.image, cfg) for e in bundle.test]
        threshold = float(np.median(probs[0]))
        out[f"evaluate.{dataset}"] = evaluate(model, bundle.test, cfg, threshold, probs)
    return out


def _noisy_probabilities(targets: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Probability maps that mostly agree with ``targets``, with smooth errors."""
    rng = np.random.default_rng(seed)
    return [np.clip(0.25 + 0.5 * t + 0.35 * rng.standard_normal(t.shape), 0.0, 1.0)
            for t in targets]


def probe_metrics(inputs: Inputs) -> dict[str, Any]:
    """The metric functions on fixed probability maps: pixel metrics, curves and thresholds
    (DRIVE, inside the FOV); pixel, Rand and VI errors in each variant, and the challenge's
    thinned scores and warping error (ISBI 2012)."""
    drive = inputs.drive.train + inputs.drive.test
    probs = _noisy_probabilities([e.target for e in drive], seed=11)
    targets, fovs = [e.target for e in drive], [e.fov for e in drive]
    evaluation = evaluate_set(probs, targets, fovs, threshold=0.45)
    pixel = {"pooled": evaluation.pooled, "mean": evaluation.mean,
             "per_image": list(evaluation.per_image),
             "roc": roc_curve(probs, targets, fovs), "pr": pr_curve(probs, targets, fovs),
             "best": [best_threshold(probs, targets, fovs, metric=m) for m in THRESHOLD_METRICS]}
    isbi = inputs.isbi.train + inputs.isbi.test
    membranes = [e.target for e in isbi]
    maps = _noisy_probabilities(membranes, seed=12)
    errors = {"pixel": pixel_error(maps, membranes, threshold=0.5),
              "rand": [rand_scores(maps, membranes, threshold=0.5, pred_boundary=b,
                                   self_pairs=s) for b in ("singletons", "segment")
                       for s in (True, False)],
              "vi": [variation_of_information(maps, membranes, threshold=0.5, pred_boundary=b)
                     for b in ("singletons", "segment")]}
    challenge = {"best": challenge_scores(maps, membranes),
                 "fixed": challenge_scores(maps, membranes, threshold=0.4),
                 "warping": [warping_error(m, t, threshold=0.5)
                             for m, t in zip(maps, membranes, strict=True)]}
    return {"metrics.pixel": _as_data(pixel), "metrics.isbi": _as_data(errors),
            "metrics.challenge": _as_data(challenge)}


def _as_data(value: Any) -> Any:
    """Dataclasses and named tuples as plain dicts and tuples, for :func:`canonical`."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "_asdict"):
        return dict(value._asdict())
    if isinstance(value, Mapping):
        return {k: _as_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_data(v) for v in value]
    return value


def probe_ema() -> dict[str, Any]:
    """The weight average after a fixed sequence of weights (batch-norm counters copied)."""
    _seed(13)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).double()
    average = WeightAverage(model, 0.8)
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model(torch.randn(6, 4, dtype=torch.float64))  # running statistics, counter
        average.update(model)
    return {"ema": dict(average.state)}


# -- the probe -----------------------------------------------------------------------------------
def outputs(threads: int = 1) -> dict[str, Any]:
    """Every component's raw outputs (see the module docstring), computed on ``threads``
    torch threads in :func:`controlled` conditions."""
    with controlled(threads), tempfile.TemporaryDirectory(prefix="unet-probe-") as tmp:
        inputs = Inputs.write(Path(tmp))
        found: dict[str, Any] = {}
        for part in (probe_data, probe_fov, probe_weights, probe_sampler, probe_training,
                     probe_inference, probe_thresholds, probe_evaluation, probe_metrics):
            found.update(part(inputs))
        for free in (probe_models, probe_losses, probe_optimizers, probe_schedules, probe_ema):
            found.update(free())
        return found


def run_probe(threads: int = 1) -> dict[str, str]:
    """``{component: digest}`` of what the package computes (module docstring)."""
    return {name: digest(value) for name, value in sorted(outputs(threads).items())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unet_train.probe",
        description="Run the behavioural probe and print its component digests (JSON).")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1; the digests must not depend on it)")
    parser.add_argument("--detail", action="store_true",
                        help="print each component's rounded summaries instead of digests")
    args = parser.parse_args(argv)
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    if args.detail:
        found: dict[str, Any] = {k: canonical(v) for k, v in outputs(args.threads).items()}
    else:
        found = run_probe(args.threads)
    print(json.dumps(found, indent=1, sort_keys=True))
    print(f"probe: {len(found)} components in {time.perf_counter() - t0:.1f} s "
          f"({args.threads} thread(s))", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
