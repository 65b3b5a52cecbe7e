"""One typed training configuration, named profiles, and validation of every parameter.

A run is fully described by a :class:`TrainConfig`. Its fields come in groups (:data:`GROUPS`:
data, model, augmentation, loss, optimisation, evaluation, runtime) and its **defaults are the
paper's recipe** (Sec. 3): valid padding, overlap tiles, batch size 1 with large tiles, SGD
with momentum 0.99, pixel-wise softmax cross-entropy weighted by the weight map, the paper's
elastic deformation, drop-out at the end of the contracting path, no batch norm. The paper
does not state the learning rate, the number of iterations or the drop-out rate; the values
here are documented guesses. Profiles are named overrides of those defaults:

* ``paper``: none, the defaults;
* ``cpu``: the project's default for running, tuned to reach the DRIVE quality bar on a 2-core
  CPU as fast as possible (bf16 autocast, channels-last, a narrower net with batch norm, Adam,
  BCE + Dice, albumentations);
* ``smoke``: ``cpu`` made to run in seconds, for tests and CI; it checks that everything runs,
  not quality.

A run folder's ``config.json`` written before a field existed is read with the value that
reproduces what that run did (:func:`stored_config`).

Papermill parameters and command-line options map one-to-one onto the fields; an unknown name
or an unknown choice raises ``ValueError`` listing the valid ones. Explained in chapter 5.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from unet_core.augment import AUGMENTATIONS
from unet_core.data.prepare import CHANNELS
from unet_core.data.resolve import DATASETS
from unet_core.data.sampler import OUTSIDE_FOV
from unet_core.losses import LOSS_NAMES as LOSSES
from unet_core.model import PADDINGS
from unet_core.thresholds import THRESHOLD_IMAGES
from unet_core.tiling import TTA_MODES
from unet_core.validation import check_choice
from unet_train.devices import DEVICES
from unet_train.identity import ADDED_FIELDS, config_key
from unet_train.optim import OPTIMIZERS, SCHEDULERS
from unet_train.placement import MEMORY_FORMATS, PRECISIONS

# Every choice list is defined next to the code that implements it and imported from there:
__all__ = ["AUGMENTATIONS", "CHANNELS", "DATASETS", "DEVICES", "GROUPS", "LOSSES",
           "MEMORY_FORMATS",
           "OPTIMIZERS", "PADDINGS", "PRECISIONS", "PROFILES", "SCHEDULERS", "THRESHOLD_IMAGES",
           "TTA_MODES", "TrainConfig", "check_names"]


def stored_config(values: dict[str, Any]) -> dict[str, Any]:
    """A stored config (a run folder's ``config.json``, a checkpoint's, a study cell's) made
    complete, the migration of old files: a field it lacks takes its :data:`ADDED_FIELDS`
    value, or else the ``cpu`` profile's, which were the defaults when every config that can
    lack a field was written (the defaults became the paper's later). A complete dict comes
    back as it is."""
    missing = set(TrainConfig.field_names()) - set(values)
    if not missing:
        return dict(values)
    before = {**TrainConfig.from_profile("cpu").to_dict(), **ADDED_FIELDS}
    return {**{k: before[k] for k in missing}, **values}


#: The config's fields by what they set, in the order of :class:`TrainConfig` (the command
#: line's ``--help`` and :meth:`TrainConfig.grouped` use it; a test checks it lists every field
#: once).
GROUPS: dict[str, tuple[str, ...]] = {
    "data": ("dataset", "channels", "val_images", "train_images", "train_start", "isbi_gap",
             "cv_folds", "cv_fold", "seed"),
    "model": ("base_channels", "depth", "padding", "batch_norm", "dropout"),
    "patches and augmentation": ("patch_size", "batch_size", "augmentation", "elastic_sigma",
                                 "elastic_grid", "elastic_tile", "outside_fov"),
    "loss": ("loss", "w0", "wmap_sigma", "class_reweight_w0"),
    "optimisation": ("optimizer", "lr", "momentum", "weight_decay", "scheduler", "ema_decay",
                     "steps", "time_budget_min"),
    "evaluation": ("eval_every", "eval_tile", "threshold", "tune_threshold",
                   "threshold_images", "tta", "keep_snapshots"),
    "runtime": ("precision", "memory_format", "bf16", "channels_last", "device", "threads",
                "deterministic", "compile", "checkpoint_every", "grad_clip", "world_size",
                "profile"),
}


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the paper's recipe (``paper``)."""

    # --- what to train on ---------------------------------------------------------------------
    dataset: str = "drive"  # one of DATASETS
    channels: str = "rgb"  # DRIVE input channels: rgb, green (the usual vessel channel), gray
    val_images: int = 2  # training images held out for validation (threshold, curves)
    train_images: int = 0  # > 0: train on only the first this many of the remaining training
    # images (e.g. 1, to test learning from very few images); 0: all of them
    train_start: int = 0  # with train_images: the first image kept (so seeds of a few-image
    # study can each train on another image)
    isbi_gap: int = 2  # ISBI 2012: slices just before the held-out slices 25-29 that are
    # used neither to train nor to validate, so no training slice is adjacent to a held-out
    # one (serial sections 50 nm apart look alike); 0: train up to slice 24
    cv_folds: int = 0  # ISBI 2012, > 1: cross-validation, the 30 slices cut into this many
    # consecutive folds; fold cv_fold is held out, isbi_gap slices on each side of it are left
    # out, the last val_images of the rest validate; 0: the fixed hold-out of slices 25-29
    cv_fold: int = 0  # the held-out fold, 0 .. cv_folds - 1
    seed: int = 0  # seeds torch, NumPy and the data sampler

    # --- model (unet_core.model.UNet) ---------------------------------------------------------
    base_channels: int = 64  # channels of the first level (cpu: 16)
    depth: int = 4  # down-sampling steps
    padding: str = "valid"  # valid: the paper's, output smaller than input (cpu: same)
    batch_norm: bool = False  # the paper predates batch norm (cpu: True)
    dropout: float = 0.5  # drop-out at the end of the contracting path; the rate is not
    # stated (cpu: 0)

    # --- data and augmentation ----------------------------------------------------------------
    patch_size: int = 572  # input side of a training patch (valid padding: a valid size;
    # cpu: 128)
    batch_size: int = 1  # patches per step: the paper's one large tile (cpu: 8)
    augmentation: str = "paper"  # one of AUGMENTATIONS (cpu: albumentations)
    elastic_sigma: float = 10.0  # paper: displacements ~ N(0, 10 px) on a 3x3 grid
    elastic_grid: int = 3
    elastic_tile: int = 572  # the grid spans a tile this big and the patch is cut from it, so
    # a small patch is deformed at the paper's scale (0: the grid spans the patch itself; a
    # patch larger than the tile gets a tile of its own size)
    outside_fov: str = "ignore"  # DRIVE: "ignore" (the loss sees only the field of view) or
    # "background" (pixels outside it count as background, so the network learns to answer
    # background there too); patches are drawn inside the FOV either way

    # --- loss ---------------------------------------------------------------------------------
    loss: str = "weighted_ce"  # one of LOSSES: the paper's Eq. 1 (cpu: bce_dice)
    w0: float = 10.0  # weight map (paper Eq. 2): border weight
    wmap_sigma: float = 5.0  # weight map: sigma in pixels
    class_reweight_w0: float = 0.0  # > 0 (with w0=0): a control for the weight map, no border
    # term but a uniform weight on the class the border term lands on (ISBI: membranes),
    # scaled so that class gets the share of the total weight that the weight map with
    # w0=class_reweight_w0 gives it on the training labels (unet_train.recipe); 0: off

    # --- optimisation -------------------------------------------------------------------------
    optimizer: str = "sgd"  # one of OPTIMIZERS (cpu: adam)
    # Not stated by the paper. 1e-2 collapsed the 16-channel net to a constant output on ISBI
    # 2012 (seed 1 of the study isbi_recipe; seed 0, fold 0 of isbi_cv), while 5e-3, i.e.
    # 1e-2 over the mean weight of the weighted loss (about 1.7-1.9 there), trained the same
    # cell (validation AUC 0.88-0.91 over its first 250 steps, against 0.58 then 0.50).
    lr: float = 5e-3  # (cpu: 3e-3)
    momentum: float = 0.99  # SGD momentum, the paper's (cpu: 0.9)
    weight_decay: float = 0.0
    scheduler: str = "constant"  # one of SCHEDULERS (cpu: onecycle)
    ema_decay: float = 0.0  # > 0: evaluate and save an exponential moving average of the
    # weights with this decay (unet_train.ema); 0: the weights as trained
    steps: int = 3000  # optimisation steps (the schedule spans them); ~10 min here
    time_budget_min: float = 0.0  # > 0: also stop after this many minutes of training

    # --- evaluation ---------------------------------------------------------------------------
    eval_every: int = 300  # steps between validation passes (0: only at the end)
    eval_tile: int = 572  # tile side for overlap-tile inference (valid padding: valid size;
    # cpu: 288)
    threshold: float = 0.5  # fixed, or chosen on training-set images, never on the test set
    tune_threshold: bool = True  # choose the threshold that maximises pooled F1 on ...
    # ... "training_set": all official training images (the ones trained on + validation), or
    # "validation": only the held-out validation images. The F1-optimal threshold of single
    # DRIVE training images ranges 0.2-0.8, so two validation images give a noisy choice.
    threshold_images: str = "training_set"  # one of THRESHOLD_IMAGES
    tta: str = "flips"  # test-time augmentation: one of TTA_MODES (none, flips, d4)
    keep_snapshots: bool = False  # keep the weights of every validation step (for curves)

    # --- precision and device (unet_train.placement) -------------------------------------------
    precision: str = "auto"  # one of PRECISIONS: auto times fp32 against bf16 autocast (where
    # the CPU computes bf16 natively) and takes the faster, separately for training and
    # inference; fp32 or bf16 force it. GPUs: auto is bf16, or fp16 + gradient scaler
    memory_format: str = "auto"  # one of MEMORY_FORMATS: auto times NCHW (contiguous) against
    # NHWC (channels_last), chosen together with the precision
    bf16: bool = False  # False: fp32 whatever `precision` says (the older switch; the paper
    # trained in fp32; cpu: True)
    channels_last: bool = False  # False: contiguous whatever `memory_format` says (older
    # switch; cpu: True)
    device: str = "auto"  # one of DEVICES
    threads: int = 0  # torch threads (0: leave torch's default)
    deterministic: bool = False  # torch.use_deterministic_algorithms, cuDNN deterministic
    compile: bool = False  # torch.compile the training step's network (inductor; compiles
    # once per process, tens of seconds on a CPU); evaluation runs eagerly

    # --- faults and several processes ---------------------------------------------------------
    checkpoint_every: int = 200  # steps between checkpoints besides validation passes (0: none)
    grad_clip: float = 0.0  # clip the gradient norm to this (0: off; it is always checked)
    world_size: int = 1  # processes training one model (torchrun sets it; batch_size is global)

    profile: str = field(default="paper")  # the profile this config started from

    # ------------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError for an unknown choice or an out-of-range number."""
        for name, choices in (
            ("dataset", DATASETS),
            ("padding", PADDINGS),
            ("loss", LOSSES),
            ("augmentation", AUGMENTATIONS),
            ("optimizer", OPTIMIZERS),
            ("scheduler", SCHEDULERS),
            ("device", DEVICES),
            ("channels", CHANNELS),
            ("tta", TTA_MODES),
            ("precision", PRECISIONS),
            ("memory_format", MEMORY_FORMATS),
            ("threshold_images", THRESHOLD_IMAGES),
            ("outside_fov", OUTSIDE_FOV),
            ("profile", tuple(PROFILES)),
        ):
            check_choice(name, getattr(self, name), choices)
        for name in ("base_channels", "patch_size", "batch_size", "steps", "eval_tile"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("depth", "val_images", "eval_every", "threads", "elastic_sigma", "lr",
                     "elastic_tile", "train_images", "isbi_gap", "train_start", "cv_folds",
                     "cv_fold", "class_reweight_w0",
                     "weight_decay", "time_budget_min", "checkpoint_every", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size!r}")
        if self.batch_size % self.world_size:
            raise ValueError(
                f"batch_size={self.batch_size} is the global batch and must be divisible by "
                f"world_size={self.world_size} (each process draws batch_size / world_size)"
            )
        if self.elastic_grid < 2:
            raise ValueError(f"elastic_grid must be >= 2, got {self.elastic_grid!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: off), got {self.ema_decay!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.tune_threshold and self.threshold_images == "validation" and not self.val_images:
            raise ValueError(
                "threshold_images='validation' needs val_images >= 1; use "
                "threshold_images='training_set' or tune_threshold=False"
            )
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if self.precision == "bf16" and not self.bf16:
            raise ValueError("precision='bf16' contradicts bf16=False (which means fp32); drop "
                             "one of them")
        if self.memory_format == "channels_last" and not self.channels_last:
            raise ValueError("memory_format='channels_last' contradicts channels_last=False "
                             "(which means contiguous); drop one of them")
        if self.cv_folds == 1 or (self.cv_folds and self.cv_fold >= self.cv_folds):
            raise ValueError(f"cv_fold must be in 0 .. cv_folds - 1 and cv_folds 0 (off) or "
                             f">= 2, got cv_fold={self.cv_fold!r}, cv_folds={self.cv_folds!r}")
        if self.cv_folds and self.dataset != "isbi2012":
            raise ValueError(f"cv_folds is for ISBI 2012 (dataset='isbi2012'), got "
                             f"dataset={self.dataset!r}")
        if self.train_start and not self.train_images:
            raise ValueError("train_start needs train_images >= 1 (the images kept from it)")
        if self.class_reweight_w0 and (self.loss != "weighted_ce" or self.w0):
            raise ValueError("class_reweight_w0 > 0 replaces the weight map's border term: it "
                             f"needs loss='weighted_ce' and w0=0, got loss={self.loss!r}, "
                             f"w0={self.w0!r}")
        if self.w0 < 0 or self.wmap_sigma <= 0:
            raise ValueError(
                f"weight map needs w0 >= 0 and wmap_sigma > 0, got {self.w0!r}, {self.wmap_sigma!r}"
            )

    # ------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_profile(cls, profile: str = "cpu", **overrides: Any) -> TrainConfig:
        """The named profile with ``overrides`` applied (unknown names raise ValueError)."""
        if profile not in PROFILES:
            raise ValueError(
                f"profile={profile!r} is not valid; expected one of {', '.join(PROFILES)}"
            )
        check_names(overrides)
        values = {**PROFILES[profile], **overrides, "profile": profile}
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def grouped(self) -> dict[str, dict[str, Any]]:
        """The fields' values by :data:`GROUPS`: ``{"model": {"base_channels": 64, ...}, ...}``."""
        values = self.to_dict()
        return {group: {name: values[name] for name in names} for group, names in GROUPS.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a dict, e.g. a run's ``config.json`` (:func:`stored_config`: a field
        it lacks takes the value that reproduces what its run did)."""
        check_names(values)
        return cls(**stored_config(values))

    def key(self) -> str:
        """A short hash of everything that changes the result (:func:`unet_train.identity.
        config_key`): the config's part of its run folder's name."""
        return config_key(self.to_dict())


def check_names(values: dict[str, Any]) -> None:
    """Raise ValueError for parameter names that are not TrainConfig fields."""
    valid = TrainConfig.field_names()
    unknown = [k for k in values if k not in valid]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, valid, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown parameter(s) {', '.join(hints)}; valid parameters: {', '.join(valid)}"
        )


PROFILES: dict[str, dict[str, Any]] = {}
PROFILES["paper"] = {}  # the dataclass defaults
PROFILES["cpu"] = {
    "base_channels": 16,
    "padding": "same",
    "batch_norm": True,
    "dropout": 0.0,
    "patch_size": 128,
    "batch_size": 8,
    "augmentation": "albumentations",
    "loss": "bce_dice",
    "optimizer": "adam",
    "lr": 3e-3,
    "momentum": 0.9,
    "scheduler": "onecycle",
    "eval_tile": 288,
    "bf16": True,
    "channels_last": True,
}
PROFILES["smoke"] = {
    **PROFILES["cpu"],
    "base_channels": 4,
    "depth": 2,
    "patch_size": 48,
    "batch_size": 2,
    "steps": 6,
    "eval_every": 3,
    "eval_tile": 192,  # whole-image tiles: evaluation in seconds
    "tta": "none",
    "val_images": 1,
    "threshold_images": "validation",  # one image to predict instead of the whole training set
}
