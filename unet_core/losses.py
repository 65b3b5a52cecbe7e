"""Training losses: the paper's weighted cross-entropy (Sec. 3, Eq. 1) and modern alternatives.

Shapes. Every loss takes raw network outputs, ``logits`` of shape ``(N, C, H, W)``, and a
``target`` of shape ``(N, H, W)`` or ``(N, 1, H, W)``. The optional ``mask`` and ``weight_map``
are ``(N, H, W)`` (or ``(N, 1, H, W)``). All losses are differentiable in ``logits`` only.

Channel conventions. Two output conventions are supported and give the same probabilities:

* ``C == 2``, softmax (the paper): ``p_k(x) = exp(a_k(x)) / sum_k' exp(a_k'(x))``, class 1 is
  the foreground (vessel; membrane for ISBI 2012, the thin class of
  :mod:`unet_core.data.isbi2012`).
* ``C == 1``, sigmoid (common in modern code): ``p(x) = sigmoid(a(x))``.

For two classes the softmax is a sigmoid of the logit difference, ``p_1 = sigmoid(a_1 - a_0)``,
exactly; :func:`foreground_logit` uses this identity so that every loss below accepts either
convention, and :func:`foreground_probability` maps either one to the foreground probability.
:func:`weighted_cross_entropy` also accepts ``C > 2`` (multi-class softmax).

Excluded pixels. ``mask`` (bool, or numbers that are all 0 or 1) marks the pixels that count:
inside the field of view (DRIVE), or inside the valid region of a tile. Excluded pixels
contribute exactly zero loss and (for finite logits) exactly zero gradient: their per-pixel
loss is replaced by zero with :func:`torch.where` (not multiplied by zero, which would turn an
``inf`` into a ``nan``), and their target and weight values are never read, so they may hold
anything (e.g. an "ignore" label of 255). A batch without any included pixel gives a loss of 0
(no ``nan``).

Reduction (a deviation, chosen here). The paper's energy (Eq. 1) is a *sum* over the pixels of
the output map. Every loss here is a *mean* over the included pixels of the whole batch (one
pooled mean, not a mean of per-image means). With a fixed tile size and no mask, as in the
paper, the two differ by the constant factor ``N * H * W``, i.e. only the learning rate is
rescaled (exactly so for SGD with momentum, the paper's optimiser). When the number of included
pixels varies from batch to batch (a FOV mask), the mean gives each batch the same total weight;
the sum would give batches with more included pixels proportionally more. We do *not* divide by
the sum of the weights ``sum w(x)``: that sum depends on the image content (how many narrow
gaps between touching cells a tile contains), so dividing by it would undo part of the emphasis
that the weight map of Eq. 2 is meant to add, and would no longer be a constant rescaling of
the paper's objective.

Explained in chapter 4 (the loss and its weight map); chapter 6 measures the choice of loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

LOSS_NAMES: tuple[str, ...] = ("weighted_ce", "bce", "dice", "bce_dice")

# Keyword arguments accepted by make_loss for each name (besides ``out_channels``).
_LOSS_KWARGS: dict[str, tuple[str, ...]] = {
    "weighted_ce": (),
    "bce": ("pos_weight",),
    "dice": ("smooth", "per_image"),
    "bce_dice": ("pos_weight", "smooth", "per_image"),
}


# -- input checks ------------------------------------------------------------------------------
def _check_logits(logits: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim != 4 or logits.shape[1] < 1:
        raise ValueError(f"logits must have shape (N, C, H, W), got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be a floating-point tensor, got {logits.dtype}")


def _as_nhw(x: torch.Tensor, name: str, logits: torch.Tensor) -> torch.Tensor:
    """Return ``x`` as ``(N, H, W)`` after checking it against the logits' ``(N, _, H, W)``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    n, _, h, w = logits.shape
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if tuple(x.shape) != (n, h, w):
        raise ValueError(
            f"{name} must have shape (N, H, W) = {(n, h, w)} or (N, 1, H, W) to match logits "
            f"{tuple(logits.shape)}, got {tuple(x.shape)}"
        )
    return x.to(logits.device)


def _include(mask: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """Boolean ``(N, H, W)`` map of the pixels that count (all of them when ``mask`` is None)."""
    n, _, h, w = logits.shape
    if mask is None:
        return torch.ones((n, h, w), dtype=torch.bool, device=logits.device)
    mask = _as_nhw(mask, "mask", logits)
    if mask.dtype == torch.bool:
        return mask
    if not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must be boolean or contain only 0 and 1")
    return mask != 0


def _class_target(
    target: torch.Tensor, logits: torch.Tensor, include: torch.Tensor
) -> torch.Tensor:
    """Integer class indices ``(N, H, W)``; excluded pixels are set to class 0 (never read)."""
    target = _as_nhw(target, "target", logits)
    if target.dtype == torch.bool:
        target = target.long()
    n_classes = max(logits.shape[1], 2)
    inside = target[include]
    if target.is_floating_point() and not torch.equal(inside, inside.round()):
        raise ValueError("target must hold integer class indices (got non-integer values)")
    if inside.numel() and (inside.min() < 0 or inside.max() >= n_classes):
        raise ValueError(
            f"target class indices must be in [0, {n_classes - 1}] inside the mask, got values "
            f"in [{inside.min().item()}, {inside.max().item()}]"
        )
    return torch.where(include, target, torch.zeros_like(target)).long()


def _binary_target(
    target: torch.Tensor, logits: torch.Tensor, include: torch.Tensor
) -> torch.Tensor:
    """Float foreground target in [0, 1] ``(N, H, W)``; excluded pixels are set to 0."""
    target = _as_nhw(target, "target", logits)
    target = target.to(logits.dtype)
    inside = target[include]
    if inside.numel() and not bool(((inside >= 0) & (inside <= 1)).all()):
        raise ValueError("target must be in [0, 1] inside the mask (a binary or soft target)")
    return torch.where(include, target, torch.zeros_like(target))


def _weights(
    weight_map: torch.Tensor | None, logits: torch.Tensor, include: torch.Tensor
) -> torch.Tensor | None:
    """Checked per-pixel weights ``(N, H, W)``, 0 outside the mask (so a nan there is harmless)."""
    if weight_map is None:
        return None
    weight_map = _as_nhw(weight_map, "weight_map", logits).to(logits.dtype)
    inside = weight_map[include]
    if not bool(torch.isfinite(inside).all()) or (inside.numel() and inside.min() < 0):
        raise ValueError("weight_map must be finite and non-negative inside the mask")
    return torch.where(include, weight_map, torch.zeros_like(weight_map))


def _masked_mean(per_pixel: torch.Tensor, include: torch.Tensor) -> torch.Tensor:
    """Mean of ``per_pixel`` over the included pixels; 0 (differentiable) if there are none."""
    total = torch.where(include, per_pixel, torch.zeros_like(per_pixel)).sum()
    return total / include.sum().clamp_min(1).to(per_pixel.dtype)


# -- channel conventions -----------------------------------------------------------------------
def foreground_logit(logits: torch.Tensor) -> torch.Tensor:
    """The foreground logit ``(N, H, W)``: ``a`` for one channel, ``a_1 - a_0`` for two.

    ``sigmoid`` of it is the foreground probability in both conventions (for two channels,
    ``softmax(a)_1 = sigmoid(a_1 - a_0)`` exactly). More than two channels raise ValueError:
    there is no single foreground class then.
    """
    _check_logits(logits)
    c = logits.shape[1]
    if c == 1:
        return logits[:, 0]
    if c == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(
        f"a foreground probability needs 1 (sigmoid) or 2 (softmax) channels, got {c}"
    )


def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """Foreground (vessel / membrane) probability ``(N, H, W)`` from either channel convention.

    One channel: ``sigmoid(a)``. Two channels (the paper's softmax): ``softmax(a, dim=1)[:, 1]``,
    computed as ``sigmoid(a_1 - a_0)``, which is the same value and never overflows.
    """
    return torch.sigmoid(foreground_logit(logits))


def _binary_nll(
    z: torch.Tensor, y: torch.Tensor, pos_weight: float | None = None
) -> torch.Tensor:
    """Per-pixel ``-(pw * y * log sigmoid(z) + (1 - y) * log sigmoid(-z))``, stable for any z."""
    pos = F.logsigmoid(z)
    neg = F.logsigmoid(-z)
    if pos_weight is not None:
        pos = pos * pos_weight
    return -(y * pos + (1 - y) * neg)


def _check_pos_weight(pos_weight: float | torch.Tensor | None) -> float | None:
    if pos_weight is None:
        return None
    value = float(pos_weight)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"pos_weight must be a finite positive number, got {pos_weight!r}")
    return value


# -- the losses --------------------------------------------------------------------------------
def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight_map: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel-wise softmax + cross-entropy weighted by a weight map (paper Sec. 3, Eq. 1).

    ``loss = sum_{x in M} w(x) * (-log p_{l(x)}(x)) / |M|``, with ``M`` the included pixels
    (``mask``), ``l(x)`` the true class of pixel ``x``, ``p_k`` the softmax over the ``C``
    channels and ``w(x)`` the ``weight_map`` (1 everywhere when None; the paper's ``w`` of Eq. 2
    is computed from the labels elsewhere and passed in).

    Deviations from the paper, stated:

    * Reduction: a mean over the included pixels of the batch instead of the paper's sum (see
      the module docstring: a constant rescaling of the learning rate when, as in the paper,
      the tile size is fixed and nothing is masked).
    * Sign: Eq. 1 as printed, ``E = sum w(x) log p_{l(x)}(x)``, has no minus sign; it is read,
      as intended ("cross entropy"), as the negative log-likelihood to be minimised.
    * ``C == 1`` (sigmoid convention, not in the paper) is accepted and gives exactly the value
      of the two-channel softmax loss on logits ``(0, a)``: binary cross-entropy on
      ``sigmoid(a)``.

    Args:
        logits: ``(N, C, H, W)`` raw outputs (``C >= 2`` softmax, or ``C == 1`` sigmoid).
        target: ``(N, H, W)`` or ``(N, 1, H, W)`` class indices in ``[0, max(C, 2))``, as
            integers, bools or integral floats; values outside ``mask`` are ignored.
        weight_map: ``(N, H, W)`` non-negative per-pixel weights ``w(x)``, or None.
        mask: ``(N, H, W)`` pixels to include (bool or 0/1), or None for all.

    Returns:
        A scalar tensor.
    """
    _check_logits(logits)
    include = _include(mask, logits)
    labels = _class_target(target, logits, include)
    if logits.shape[1] == 1:
        per_pixel = _binary_nll(logits[:, 0], labels.to(logits.dtype))
    else:
        per_pixel = F.cross_entropy(logits, labels, reduction="none")
    weights = _weights(weight_map, logits, include)
    if weights is not None:
        per_pixel = per_pixel * weights
    return _masked_mean(per_pixel, include)


def bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    pos_weight: float | torch.Tensor | None = None,
    weight_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy on the foreground probability, mean over the included pixels.

    ``loss = mean_{x in M} w(x) * -(pw * y log p + (1 - y) log(1 - p))`` with
    ``p = sigmoid(foreground_logit(logits))``, computed from log-sigmoids (stable for any
    logit). Meant for one-channel (sigmoid) logits, as in
    ``F.binary_cross_entropy_with_logits``; two-channel logits are accepted through the exact
    identity ``softmax_1 = sigmoid(a_1 - a_0)``, and the result is then identical to
    :func:`weighted_cross_entropy` (for a binary target and ``pos_weight=None``).

    Args:
        logits: ``(N, 1, H, W)`` or ``(N, 2, H, W)``.
        target: ``(N, H, W)`` or ``(N, 1, H, W)`` foreground target in ``[0, 1]`` (binary or
            soft); values outside ``mask`` are ignored.
        mask: ``(N, H, W)`` pixels to include (bool or 0/1), or None for all.
        pos_weight: weight of the positive (foreground) term, e.g. ``n_neg / n_pos`` to balance
            thin vessels; None for 1.
        weight_map: optional ``(N, H, W)`` non-negative per-pixel weights (the paper's ``w``).
    """
    z = foreground_logit(logits)
    include = _include(mask, logits)
    y = _binary_target(target, logits, include)
    per_pixel = _binary_nll(z, y, _check_pos_weight(pos_weight))
    weights = _weights(weight_map, logits, include)
    if weights is not None:
        per_pixel = per_pixel * weights
    return _masked_mean(per_pixel, include)


def soft_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    smooth: float = 1.0,
    per_image: bool = False,
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 sum p y + s) / (sum p + sum y + s)`` on the foreground.

    Not in the paper (Milletari et al. 2016 popularised it). ``p`` is the foreground
    probability (:func:`foreground_probability`), ``y`` the target, ``s = smooth``; sums run
    over the included pixels only.

    Reduction (chosen): by default (``per_image=False``) the sums run over the whole batch,
    giving one Dice ratio. This is the soft version of the *pooled* F1 (the Dice of binary
    maps) that :mod:`unet_core.metrics` reports for a test set, and it stays well behaved for
    tiles that contain no foreground. ``per_image=True`` computes one ratio per image and
    averages them (every image counts equally, however little foreground it has, so a tile
    with a few foreground pixels weighs as much as one full of vessels).

    A perfect prediction gives a loss of 0 for any ``smooth``; with ``smooth > 0`` an empty
    target with an empty prediction also gives 0 (with ``smooth == 0`` that ratio is 0/0 and
    counts as a Dice of 0).
    """
    if not smooth >= 0:
        raise ValueError(f"smooth must be non-negative, got {smooth!r}")
    p = foreground_probability(logits)
    include = _include(mask, logits)
    y = _binary_target(target, logits, include)
    p = torch.where(include, p, torch.zeros_like(p))
    dims = (1, 2) if per_image else (0, 1, 2)
    intersection = (p * y).sum(dim=dims)
    total = p.sum(dim=dims) + y.sum(dim=dims)
    if smooth == 0:
        total = total.clamp_min(torch.finfo(p.dtype).tiny)
    dice = (2 * intersection + smooth) / (total + smooth)
    return (1 - dice).mean()


def bce_dice(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    pos_weight: float | torch.Tensor | None = None,
    smooth: float = 1.0,
    per_image: bool = False,
    weight_map: torch.Tensor | None = None,
) -> torch.Tensor:
    """``bce + soft_dice``: the common modern combination (not in the paper), equal weights.

    The weight map, if given, weights the BCE term only (Dice has no per-pixel weights).
    """
    return bce(logits, target, mask, pos_weight, weight_map) + soft_dice(
        logits, target, mask, smooth, per_image
    )


# -- factory -----------------------------------------------------------------------------------
class SegmentationLoss(nn.Module):
    """A configured loss: ``loss(logits, target, mask=None, weight_map=None) -> scalar``.

    Built by :func:`make_loss`. If ``out_channels`` was given, the logits must have that many
    channels (catches a network whose output convention does not match the loss).
    """

    def __init__(self, name: str, out_channels: int | None, **kwargs: Any) -> None:
        super().__init__()
        self.name = name
        self.out_channels = out_channels
        self.kwargs = dict(kwargs)

    def forward(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None = None,
        weight_map: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _check_logits(logits)
        if self.out_channels is not None and logits.shape[1] != self.out_channels:
            raise ValueError(
                f"loss {self.name!r} was configured for out_channels={self.out_channels}, "
                f"got logits with {logits.shape[1]} channels"
            )
        if self.name == "weighted_ce":
            return weighted_cross_entropy(logits, target, weight_map, mask)
        if self.name == "bce":
            return bce(logits, target, mask, weight_map=weight_map, **self.kwargs)
        if self.name == "dice":
            if weight_map is not None:
                raise ValueError("the 'dice' loss takes no weight_map (use mask to exclude)")
            return soft_dice(logits, target, mask, **self.kwargs)
        return bce_dice(logits, target, mask, weight_map=weight_map, **self.kwargs)

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """The foreground probability for these logits (:func:`foreground_probability`)."""
        return foreground_probability(logits)

    def extra_repr(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"name={self.name!r}, out_channels={self.out_channels}{args}"


def make_loss(name: str, **kwargs: Any) -> SegmentationLoss:
    """Build a loss by name: ``"weighted_ce"`` (paper), ``"bce"``, ``"dice"``, ``"bce_dice"``.

    Keyword arguments: ``out_channels`` (any name; ``1`` sigmoid or ``2`` softmax, checked at
    every call; ``weighted_ce`` also accepts more classes), ``pos_weight`` (bce, bce_dice),
    ``smooth`` and ``per_image`` (dice, bce_dice). Unknown names or keywords raise ValueError
    listing the choices. At call time a ``weight_map`` weights weighted_ce, bce and the BCE term
    of bce_dice; "dice" rejects one. Every loss accepts both channel conventions (see the module
    docstring); for the paper's setting use ``make_loss("weighted_ce", out_channels=2)``.
    """
    if name not in _LOSS_KWARGS:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSS_NAMES)}")
    out_channels = kwargs.pop("out_channels", None)
    allowed = _LOSS_KWARGS[name]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        accepted = ", ".join(("out_channels", *allowed))
        raise ValueError(
            f"loss {name!r} got unexpected keyword(s) {', '.join(unknown)}; accepted: {accepted}"
        )
    if out_channels is not None:
        if not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"out_channels must be a positive integer, got {out_channels!r}")
        if name != "weighted_ce" and out_channels > 2:
            raise ValueError(
                f"loss {name!r} needs out_channels 1 (sigmoid) or 2 (softmax), got {out_channels}"
            )
    if "pos_weight" in kwargs:
        kwargs["pos_weight"] = _check_pos_weight(kwargs["pos_weight"])
    if "smooth" in kwargs and not kwargs["smooth"] >= 0:
        raise ValueError(f"smooth must be non-negative, got {kwargs['smooth']!r}")
    return SegmentationLoss(name, out_channels, **kwargs)
