"""From a :class:`~unet_train.config.TrainConfig` to the objects a run trains with.

The model (:class:`~unet_core.model.UNet`), the optimiser and schedule
(:mod:`unet_train.optim`), the patch sampler with its augmentation (:mod:`unet_core.augment`)
and, for the paper's loss, the weight maps of Eq. 2 (:mod:`unet_core.weights`).

:func:`build` is the one assembly step: config, data and device in, :class:`Parts` out (the
network and what trains it, with the precision and memory format chosen once, by
:mod:`unet_train.placement`). The training loop (:mod:`unet_train.train`), its step-time
calibration and the benchmarks all assemble through it, and loading a model
(:mod:`unet_train.runs`) through :func:`build_model`, so a run and its reload cannot
disagree. Chapter 5 explains the recipe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from unet_core.augment import PAPER_ELASTIC, make_augmentation, rotation_context
from unet_core.data.sampler import PatchSampler
from unet_core.data.splits import DataBundle, Example
from unet_core.losses import SegmentationLoss, make_loss
from unet_core.model import UNet
from unet_core.weights import (
    balanced_class_weights,
    class_and_weight_maps,
    instances_from_membranes,
    weight_map,
)
from unet_train.config import TrainConfig
from unet_train.devices import Precision
from unet_train.distributed import Distributed
from unet_train.ema import WeightAverage
from unet_train.optim import make_optimizer, make_scheduler
from unet_train.placement import Placement, choose


def out_channels_for(loss: str) -> int:
    """The paper's two-channel softmax for weighted CE, one sigmoid channel otherwise."""
    return 2 if loss == "weighted_ce" else 1


def input_channels(cfg: TrainConfig) -> int:
    """The input channels of ``cfg``'s data without loading it: DRIVE's colour photographs keep
    three with ``channels="rgb"`` and one otherwise; ISBI 2012's slices are greyscale."""
    return 3 if cfg.dataset == "drive" and cfg.channels == "rgb" else 1


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


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    return make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    return make_scheduler(cfg.scheduler, optimizer, lr=cfg.lr, steps=cfg.steps,
                          cycle_momentum=cfg.optimizer == "sgd")


def instance_labels(example: Example, cfg: TrainConfig) -> np.ndarray:
    """Instances for the weight map: connected components of the cell interiors for ISBI
    (the non-target class, separated by the membranes we segment), of the vessels for DRIVE."""
    objects = ~example.target if cfg.dataset == "isbi2012" else example.target
    return instances_from_membranes(objects.astype(np.uint8))


def loss_weight_maps(examples: Sequence[Example], cfg: TrainConfig) -> list[np.ndarray]:
    """The paper's weight maps (Eq. 2), precomputed per image as in the paper (Sec. 3).

    ``w_c`` balances the class frequencies of the whole training set (the paper: "the weight
    map to balance the class frequencies"), not of each image, counted over the pixels the
    loss sees: inside the field of view where the data set has one (DRIVE), every pixel
    otherwise (ISBI 2012).
    """
    labels = [instance_labels(e, cfg) for e in examples]
    fovs = [e.fov for e in examples]
    class_weights = balanced_class_weights(labels, fovs)
    if cfg.class_reweight_w0:
        factor = class_reweighting(labels, fovs, cfg, class_weights)["factor"]
        class_weights = (class_weights[0] * factor, class_weights[1])
    return [weight_map(lab, w0=cfg.w0, sigma=cfg.wmap_sigma, class_weights=class_weights)
            for lab in labels]


def _border_class_share(maps: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                        fovs: Sequence[np.ndarray | None]) -> float:
    """Share of the total weight on the pixels between instances (label 0), inside the FOVs."""
    on = total = 0.0
    for w, lab, fov in zip(maps, labels, fovs, strict=True):
        inside = np.ones(lab.shape, bool) if fov is None else fov
        on += float(w[(lab == 0) & inside].sum())
        total += float(w[inside].sum())
    return on / total


def class_reweighting(labels: Sequence[np.ndarray], fovs: Sequence[np.ndarray | None],
                      cfg: TrainConfig, class_weights: tuple[float, float] | None = None,
                      ) -> dict[str, float]:
    """The control for the weight map: the factor on the class-balance weight of the pixels
    between instances (ISBI: the membranes) that gives them the share of the total weight the
    weight map with ``w0 = cfg.class_reweight_w0`` gives them on these labels.

    With ``w_c`` alone that class holds share ``s0 = W0 / (W0 + W1)`` (``W`` the summed
    weights of the two classes); a factor ``f`` on it gives ``f W0 / (f W0 + W1)``, equal to
    the target share ``s`` for ``f = s / (1 - s) * W1 / W0``. Returns the factor and both
    shares, for the run's record. ``class_weights``: :func:`balanced_class_weights` of these
    labels where the caller has them. Each label's ``w_c`` map and separation term are
    computed once for both maps (:func:`unet_core.weights.class_and_weight_maps`)."""
    if class_weights is None:
        class_weights = balanced_class_weights(labels, fovs)
    pairs = [class_and_weight_maps(lab, w0=cfg.class_reweight_w0, sigma=cfg.wmap_sigma,
                                   class_weights=class_weights) for lab in labels]
    balanced, mapped = [b for b, _ in pairs], [m for _, m in pairs]
    s0 = _border_class_share(balanced, labels, fovs)
    target = _border_class_share(mapped, labels, fovs)
    factor = target / (1.0 - target) * (1.0 - s0) / s0
    return {"factor": factor, "share_balanced": s0, "share_target": target}


def elastic_context(sigma: float) -> int:
    """Image around a patch that the paper-scale deformation may pull in: 4 sigma (a coarse
    displacement beyond it has probability ~6e-5; beyond the context the image is mirrored)."""
    return math.ceil(4 * sigma)


def augmentation_options(cfg: TrainConfig) -> dict[str, Any]:
    """The options of ``cfg``'s augmentation: the paper's field on a tile of ``elastic_tile``
    (at least the patch) with the context it pulls in; ``paper_full`` adds the rotation's."""
    if cfg.augmentation not in PAPER_ELASTIC:
        return {}
    options: dict[str, Any] = {"sigma": cfg.elastic_sigma, "grid": cfg.elastic_grid}
    tile = max(cfg.elastic_tile, cfg.patch_size)
    if cfg.augmentation == "paper_full":  # needs a tile: 0 means the patch's own size
        return options | {"tile": tile, "context": elastic_context(cfg.elastic_sigma)
                          + rotation_context(cfg.patch_size)}
    if cfg.elastic_tile:  # the paper's scale: the patch is a window of a deformed tile
        options |= {"tile": tile, "context": elastic_context(cfg.elastic_sigma)}
    elif cfg.augmentation == "albumentations_paper_elastic":
        raise ValueError("augmentation='albumentations_paper_elastic' needs elastic_tile > 0 "
                         "(the paper's deformation of a window)")
    return options


def build_sampler(cfg: TrainConfig, model: UNet, examples: Sequence[Example],
                  rank: int = 0) -> PatchSampler:
    """The patch stream of one process: seeded by ``cfg.seed`` alone for a single process,
    by ``(seed, rank)`` when several processes train together (each draws its own patches)."""
    model.check_size("patch_size", cfg.patch_size)
    transform = make_augmentation(cfg.augmentation, **augmentation_options(cfg))
    weights = loss_weight_maps(examples, cfg) if cfg.loss == "weighted_ce" else None
    return PatchSampler(
        [e.image for e in examples],
        [e.target for e in examples],
        None if examples[0].fov is None else [e.fov for e in examples],
        input_size=cfg.patch_size,
        output_size=model.output_size(cfg.patch_size),
        seed=cfg.seed if cfg.world_size == 1 else [cfg.seed, rank],
        transform=None if cfg.augmentation == "none" else transform,
        weights=weights,
        min_valid_fraction=0.1 if examples[0].fov is not None else 0.0,
        context=int(getattr(transform, "context", 0)) if cfg.augmentation != "none" else 0,
        outside_fov=cfg.outside_fov,  # type: ignore[arg-type]
    )


# -- the one assembly step -----------------------------------------------------------------------
@dataclass
class Parts:
    """What a config assembles into on a device: everything a training step uses."""

    device: torch.device
    placement: Placement  # training's precision and memory format, chosen once
    inference: Placement  # evaluation's, chosen separately
    model: UNet  # the network itself: what is saved and evaluated
    net: torch.nn.Module  # what is trained: ``model``, or its DDP and/or compiled wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: PatchSampler
    loss_fn: SegmentationLoss
    scaler: torch.amp.GradScaler | None  # fp16 only
    ema: WeightAverage | None  # the weight average (``cfg.ema_decay > 0``)

    @property
    def precision(self) -> Precision:
        return self.placement.precision


def build(cfg: TrainConfig, data: DataBundle, device: torch.device,
          group: Distributed | None = None) -> Parts:
    """Assemble ``cfg`` on ``device`` for ``data``'s training images (one of ``group``'s
    processes, if given): the model (initialised from the global torch seed, so seed first),
    its training and inference placements (:func:`unet_train.placement.choose`: cached or
    timed on a copy, the random state kept), the model in that memory format, the DDP wrapper
    (SyncBatchNorm on GPUs, then a dropout stream per process) and ``torch.compile`` when
    asked, the optimiser, the schedule, the patch sampler (its own random stream per process),
    the loss, a gradient scaler where the precision needs one, and the weight average."""
    model = build_model(cfg, data.in_channels).to(device)
    placement = choose(cfg, model, device, "train")
    inference = choose(cfg, model, device, "infer")
    if placement.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net: torch.nn.Module = model
    rank = 0
    if group is not None and group.active:
        if device.type == "cuda" and cfg.batch_norm:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.index is not None
                                      else None)
        torch.manual_seed(cfg.seed + 1_000_003 * group.rank)  # dropout: a stream per process
        rank = group.rank
    if cfg.compile:  # the same weights, trained through inductor's kernels
        net = torch.compile(net)
    optimizer = build_optimizer(cfg, model)
    return Parts(
        device=device, placement=placement, inference=inference, model=model, net=net,
        optimizer=optimizer,
        scheduler=build_scheduler(cfg, optimizer),
        sampler=build_sampler(cfg, model, data.train, rank=rank),
        loss_fn=make_loss(cfg.loss, out_channels=model.out_channels),
        scaler=torch.amp.GradScaler(device.type) if placement.precision.grad_scaler else None,
        ema=WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None,
    )
