"""Valid versus same padding, measured (chapter 2; Ronneberger et al. 2015, Sec. 2 and Fig. 2).

The paper's U-Net uses unpadded ("valid") 3x3 convolutions, so every output pixel was computed
from its full context and the output of a tile is independent of where the tile was cut. A
zero-padded ("same") U-Net keeps every map at full size, but near the border of a tile its
units see zeros instead of image, and the prediction there depends on the tile. This module
provides the measurements that chapter 2 shows:

* :func:`mirror_pad`: the paper's mirrored extrapolation of an image (Fig. 2), for display.
* :func:`predict_whole`: one forward pass over the whole (mirror-extended) image, the
  reference that tiled inference must reproduce.
* :func:`border_effect`: predictions of the same pixels from tiles cut at different places,
  compared with the reference, as a function of the pixel's distance to the tile border.
* :func:`per_tile_max`: the largest difference inside each tile's output window.
* :func:`skip_connections`: the real feature maps that crop-and-copy concatenates.
* :func:`activation_bytes`: activation memory of one forward pass, without running it.
* :func:`train_briefly`: a few seconds of training, so that the border effect can be measured
  on a network that is not just randomly initialised (a toy, not the paper's training).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from unet_core.model import UNet, receptive_field
from unet_core.tiling import TilePlan, mirror_indices


def mirror_pad(
    image,
    before: int | tuple[int, int],
    after: int | tuple[int, int] | None = None,
    axes: tuple[int, int] = (-2, -1),
):
    """Extend an image by mirroring, ``before`` pixels before and ``after`` after each axis.

    Works on numpy arrays and torch tensors; ``axes`` are the two spatial axes (``(-2, -1)``
    for ``(C, H, W)``, ``(0, 1)`` for an ``(H, W, 3)`` picture). ``before`` and ``after`` are
    one number for both axes or a pair ``(rows, columns)``; ``after`` defaults to ``before``.
    Mirroring is the periodic reflection of :func:`unet_core.tiling.mirror_indices`, the one
    tiled inference uses, so it is defined even when the padding exceeds the image.
    """
    after = before if after is None else after
    pairs = [(b, a) for b, a in zip(
        before if isinstance(before, tuple) else (before, before),
        after if isinstance(after, tuple) else (after, after),
        strict=True,
    )]
    if any(b < 0 or a < 0 for b, a in pairs):
        raise ValueError(f"padding must be non-negative, got before={before}, after={after}")
    out = image
    for axis, (b, a) in zip(axes, pairs, strict=True):
        n = image.shape[axis]
        idx = mirror_indices(-b, n + b + a, n)
        if isinstance(out, torch.Tensor):
            out = out.index_select(axis % out.ndim, torch.from_numpy(idx))
        else:
            out = np.take(out, idx, axis=axis)
    return out


def _as_chw(image: torch.Tensor | np.ndarray, model: UNet) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if image.ndim != 3 or image.shape[0] != model.in_channels:
        raise ValueError(
            f"image must be a ({model.in_channels}, H, W) tensor, got shape {tuple(image.shape)}"
        )
    return image.float()


def same_context(model: UNet) -> int:
    """Mirrored context that makes a same-padding pass free of zero-padding effects.

    Half the receptive field, rounded up to a multiple of ``2**depth`` (so that the pooling
    grid stays anchored where :func:`unet_core.tiling.predict_tiled` anchors it).
    """
    align = 2**model.depth
    return math.ceil((receptive_field(model) // 2 + 1) / align) * align


@torch.no_grad()
def predict_whole(
    model: UNet, image: torch.Tensor | np.ndarray, context: int | None = None
) -> torch.Tensor:
    """Logits of a ``(C, H, W)`` image from a single forward pass over the mirrored image.

    Valid padding: the input is the image mirror-extended by ``model.margin`` on every side
    (plus a few pixels at the bottom and right to reach a valid size); the output then covers
    the image exactly. This is what :func:`~unet_core.tiling.predict_tiled` reproduces tile by
    tile, for any valid tile size.

    Same padding: the image is mirror-extended by ``context`` pixels (default
    :func:`same_context`, enough that zero padding does not reach the image), padded to a
    multiple of ``2**depth``, and the centre is returned. ``context`` must be a multiple of
    ``2**depth``.

    Memory grows with the image: this is a reference for moderate sizes, not a substitute for
    tiling.
    """
    image = _as_chw(image, model)
    _, h, w = image.shape
    if model.padding == "valid":
        before = model.margin
    else:
        before = same_context(model) if context is None else int(context)
        if before < 0 or before % 2**model.depth:
            raise ValueError(f"context must be a multiple of 2**depth, got {before}")
    sizes = [model.valid_input_size(n + 2 * before) for n in (h, w)]
    idx_y = torch.from_numpy(mirror_indices(-before, sizes[0], h))
    idx_x = torch.from_numpy(mirror_indices(-before, sizes[1], w))
    x = image[:, idx_y][:, :, idx_x]
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = model(x[None].to(device))[0].float().cpu()
    finally:
        model.train(was_training)
    crop = 0 if model.padding == "valid" else before
    return out[:, crop : crop + h, crop : crop + w]


@dataclass(frozen=True)
class BorderEffect:
    """Tile-versus-reference discrepancy of the logits as a function of border distance.

    ``distance[d]`` is ``d``, the number of pixels between a pixel and the nearest edge of the
    output window of the tile that computed it (for same padding the output window is the
    tile; for valid padding it is the tile's centre, ``margin`` pixels in). ``mean_abs`` and
    ``max_abs`` are over all pixels at that distance, all tiles and all output channels;
    ``scale`` is the standard deviation of the reference logits, to express them relatively.
    """

    distance: np.ndarray
    mean_abs: np.ndarray
    max_abs: np.ndarray
    count: np.ndarray
    scale: float
    tile_size: int
    n_tiles: int

    @property
    def relative_mean(self) -> np.ndarray:
        return self.mean_abs / self.scale

    @property
    def relative_max(self) -> np.ndarray:
        return self.max_abs / self.scale

    def reach(self, tol: float = 1e-4) -> int:
        """Smallest ``d`` from which on the relative max discrepancy stays below ``tol``."""
        above = np.flatnonzero(self.relative_max > tol)
        return 0 if above.size == 0 else int(above[-1]) + 1


def _spread(candidates: Sequence[int], k: int) -> list[int]:
    if len(candidates) <= k:
        return list(candidates)
    picks = np.linspace(0, len(candidates) - 1, k).round().astype(int)
    return [candidates[i] for i in sorted(set(picks.tolist()))]


@dataclass(frozen=True)
class _TileGeometry:
    """Where a tile's output window lies, for :func:`border_effect`."""

    out: int  # side of a tile's output window
    crop: int  # offset of the output window inside the tile
    ref_offset: int  # image pixel of the reference's output pixel 0
    guard: int  # pixels at the image border that no compared output pixel may come closer to


def _tile_geometry(
    model: UNet, tile_size: int, h: int, w: int, guard: int | None
) -> _TileGeometry:
    """Output window and guard band of ``tile_size`` tiles of an ``h x w`` image; checks sizes.

    Valid padding needs no guard: its reference is exact up to the image border.
    """
    align = 2**model.depth
    if model.padding == "valid":
        out = model.output_size(tile_size)
        if not model.is_valid_size(h) or not model.is_valid_size(w):
            raise ValueError(f"image size {h}x{w} is not a valid input size for this network")
        return _TileGeometry(out, (tile_size - out) // 2, model.margin, 0)
    if tile_size % align or h % align or w % align:
        raise ValueError(
            f"same padding: tile_size ({tile_size}) and image size ({h}x{w}) must be "
            f"multiples of 2**depth = {align}"
        )
    return _TileGeometry(tile_size, 0, 0, same_context(model) if guard is None else int(guard))


def _tile_positions(
    h: int, w: int, tile_size: int, geo: _TileGeometry, align: int, max_tiles: int
) -> list[tuple[int, int]]:
    """Up to ``max_tiles`` tile origins on the ``align`` grid, spread over the image.

    Only origins whose output window stays ``geo.guard`` pixels inside the image qualify.
    """
    def origins(n: int) -> list[int]:
        lo = max(0, geo.guard - geo.crop)
        hi = min(n - tile_size, n - geo.guard - geo.crop - geo.out)
        return [o for o in range(0, n - tile_size + 1, align) if lo <= o <= hi]

    ys, xs = origins(h), origins(w)
    if not ys or not xs:
        raise ValueError(
            f"image {h}x{w} is too small for {tile_size}-pixel tiles with a {geo.guard}-pixel "
            "guard band"
        )
    per_axis = max(1, int(math.isqrt(max_tiles)))
    return [(y, x) for y in _spread(ys, per_axis) for x in _spread(xs, per_axis)]


class _BorderStats:
    """Absolute tile-versus-reference differences, binned by distance to the window's edge."""

    def __init__(self, out: int) -> None:
        r = np.arange(out)
        edge = np.minimum(r, out - 1 - r)
        self.dist = np.minimum(edge[:, None], edge[None, :]).ravel()
        self.n_bins = int(self.dist.max()) + 1
        self.sums = np.zeros(self.n_bins)
        self.maxs = np.zeros(self.n_bins)
        self.counts = np.zeros(self.n_bins)
        self.ref_vals: list[torch.Tensor] = []

    def add(self, tile_out: torch.Tensor, target: torch.Tensor) -> None:
        """One tile's output window against the reference's prediction of the same pixels."""
        err = (tile_out - target).abs().amax(dim=0).double().numpy().ravel()
        mean_err = (tile_out - target).abs().mean(dim=0).double().numpy().ravel()
        self.sums += np.bincount(self.dist, weights=mean_err, minlength=self.n_bins)
        self.counts += np.bincount(self.dist, minlength=self.n_bins)
        np.maximum.at(self.maxs, self.dist, err)
        self.ref_vals.append(target)

    def result(self, tile_size: int, n_tiles: int) -> BorderEffect:
        scale = float(torch.cat([t.flatten() for t in self.ref_vals]).std())
        return BorderEffect(
            distance=np.arange(self.n_bins),
            mean_abs=self.sums / self.counts,
            max_abs=self.maxs,
            count=self.counts.astype(int),
            scale=scale if scale > 0 else 1.0,
            tile_size=tile_size,
            n_tiles=n_tiles,
        )


def _compare_tiles(
    model: UNet, image: torch.Tensor, positions: Sequence[tuple[int, int]], tile_size: int,
    geo: _TileGeometry, batch_size: int, stats: _BorderStats,
) -> None:
    """Reference pass over the whole image, then the tiles in batches, compared in ``stats``."""
    device = next(model.parameters()).device
    ref = model(image[None].to(device))[0].float().cpu()  # pixel (i, j) -> image + offset
    out_t = geo.out
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        batch = torch.stack([image[:, y : y + tile_size, x : x + tile_size] for y, x in chunk])
        logits = model(batch.to(device)).float().cpu()
        for (y, x), tile_out in zip(chunk, logits, strict=True):
            oy, ox = y + geo.crop - geo.ref_offset, x + geo.crop - geo.ref_offset
            stats.add(tile_out, ref[:, oy : oy + out_t, ox : ox + out_t])


@torch.no_grad()
def border_effect(
    model: UNet,
    image: torch.Tensor | np.ndarray,
    tile_size: int,
    *,
    guard: int | None = None,
    max_tiles: int = 9,
    batch_size: int = 4,
) -> BorderEffect:
    """Measure how a tile's border changes the prediction of the pixels near it.

    The reference is one forward pass over the whole ``(C, H, W)`` image (no mirroring).
    Tiles of ``tile_size`` are then cut from the same image at up to ``max_tiles`` positions
    and pushed through the network on their own; every output pixel of every tile is compared
    with the reference's prediction for the same image pixel, and the absolute differences are
    binned by the pixel's distance to the nearest edge of the tile's output window.

    Two precautions isolate the border effect from everything else:

    * Tile origins are multiples of ``2**depth``, so tiles share the reference's pooling grid
      (otherwise the shift-variance of max-pooling would add its own discrepancy).
    * For same padding the reference itself is affected by zero padding near the image border,
      so only pixels at least ``guard`` pixels inside the image are used (default
      :func:`same_context`, i.e. about half the receptive field). Valid padding needs no guard.

    For a valid network the result is zero up to float error at every distance; for a same
    network it shows how far into the tile the zero padding reaches.
    """
    image = _as_chw(image, model)
    _, h, w = image.shape
    geo = _tile_geometry(model, tile_size, h, w, guard)
    positions = _tile_positions(h, w, tile_size, geo, 2**model.depth, max_tiles)
    stats = _BorderStats(geo.out)
    was_training = model.training
    model.eval()
    try:
        _compare_tiles(model, image, positions, tile_size, geo, batch_size, stats)
    finally:
        model.train(was_training)
    return stats.result(tile_size, len(positions))


def per_tile_max(diff: torch.Tensor | np.ndarray, plan_y: TilePlan, plan_x: TilePlan) -> np.ndarray:
    """Largest ``|diff|`` inside each tile's output window (clipped to the image).

    ``diff`` is ``(H, W)`` or ``(C, H, W)``; the plans are those of
    :func:`~unet_core.tiling.plan_axis` for its two axes. Returns an ``(n_rows, n_columns)``
    array, one entry per tile, e.g. to see which tiles of a misaligned tiling differ.
    """
    d = np.abs(diff.detach().cpu().numpy() if isinstance(diff, torch.Tensor) else np.asarray(diff))
    if d.ndim == 3:
        d = d.max(axis=0)
    h, w = d.shape
    result = np.zeros((len(plan_y.starts), len(plan_x.starts)))
    for i, ys in enumerate(plan_y.starts):
        for j, xs in enumerate(plan_x.starts):
            y0, x0 = max(ys + plan_y.crop, 0), max(xs + plan_x.crop, 0)
            y1, x1 = min(ys + plan_y.crop + plan_y.out, h), min(xs + plan_x.crop + plan_x.out, w)
            if y0 < y1 and x0 < x1:
                result[i, j] = d[y0:y1, x0:x1].max()
    return result


@dataclass(frozen=True)
class SkipConnection:
    """One crop-and-copy of a forward pass (paper Fig. 1, grey arrows).

    ``encoder`` is the output of the contracting path's double convolution at ``level``
    (before max-pooling), ``upsampled`` the output of the up-convolution it is concatenated
    with; the centre ``upsampled``-sized window of ``encoder``, starting at ``(top, left)``,
    is what is copied.
    """

    level: int
    encoder: torch.Tensor  # (C, He, We)
    upsampled: torch.Tensor  # (C, Hd, Wd)
    top: int
    left: int

    @property
    def cropped(self) -> torch.Tensor:
        _, hd, wd = self.upsampled.shape
        return self.encoder[:, self.top : self.top + hd, self.left : self.left + wd]


@torch.no_grad()
def skip_connections(model: UNet, x: torch.Tensor) -> list[SkipConnection]:
    """Run ``model`` on one ``(C, H, W)`` input and record every crop-and-copy, top level first."""
    if x.ndim != 3:
        raise ValueError(f"x must be one (C, H, W) input, got shape {tuple(x.shape)}")
    enc: dict[int, torch.Tensor] = {}
    dec: dict[int, torch.Tensor] = {}
    hooks = []
    for level in range(model.depth):
        hooks.append(model.down[level].register_forward_hook(
            lambda _m, _i, out, level=level: enc.__setitem__(level, out[0].detach().clone())
        ))
        hooks.append(model.up[model.depth - 1 - level].register_forward_hook(
            lambda _m, _i, out, level=level: dec.__setitem__(level, out[0].detach().clone())
        ))
    was_training = model.training
    model.eval()
    try:
        model(x[None].float())
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    result = []
    for level in range(model.depth):
        e, d = enc[level], dec[level]
        top, left = (e.shape[1] - d.shape[1]) // 2, (e.shape[2] - d.shape[2]) // 2
        result.append(SkipConnection(level, e, d, top, left))
    return result


def activation_bytes(model: UNet, height: int, width: int | None = None) -> dict[str, int]:
    """Activation memory of one forward pass on a ``height x width`` input, in bytes (float32).

    Computed on PyTorch's ``meta`` device (shapes only, no arithmetic), so it is instant even
    for the paper network on a 4000 x 4000 image. Returns the input size, the largest single
    feature map, and the sum of the outputs of all convolutions, poolings and concatenations
    (roughly what autograd keeps for a backward pass; inference frees most of them as it goes,
    so this bounds its peak from above).
    """
    width = height if width is None else width
    with torch.device("meta"):  # same architecture, no storage, no arithmetic
        meta = UNet(model.in_channels, model.out_channels, model.base_channels, model.depth,
                    model.padding, model.batch_norm, model.dropout_p)
    sizes: list[int] = []
    allocating = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.BatchNorm2d)
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() * 4))
        for m in meta.modules()
        if isinstance(m, allocating)
    ]
    # The concatenation of crop-and-copy allocates too: count the decoder blocks' inputs.
    hooks += [
        block.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].numel() * 4))
        for block in meta.up_conv
    ]
    try:
        meta(torch.empty(1, model.in_channels, height, width, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "input": model.in_channels * height * width * 4,
        "largest_map": max(sizes),
        "all_layer_outputs": sum(sizes),
    }


def train_briefly(
    model: UNet,
    image: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    *,
    steps: int = 60,
    crop: int = 128,
    batch_size: int = 4,
    lr: float = 1e-3,
    seed: int = 0,
) -> list[float]:
    """A few seconds of training on random crops of one image (a toy for chapter 2).

    Adam with cross-entropy on ``batch_size`` random ``crop x crop`` windows of a ``(C, H, W)``
    image and its ``(H, W)`` integer label map (for valid padding the labels are the centre of
    the window, matching the smaller output). This is *not* the paper's training procedure
    (SGD with momentum 0.99, weight maps, elastic deformations; see the training chapter); it
    only turns a random network into one whose outputs mean something. Returns the losses.
    """
    image = _as_chw(image, model)
    target = torch.as_tensor(np.asarray(target)).long()
    _, h, w = image.shape
    if target.shape != (h, w):
        raise ValueError(f"target must be ({h}, {w}), got {tuple(target.shape)}")
    model.check_size("crop", crop)
    if crop > min(h, w):
        raise ValueError(f"crop {crop} is larger than the image ({h}x{w})")
    out = model.output_size(crop) if model.padding == "valid" else crop
    off = (crop - out) // 2
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses: list[float] = []
    for _ in range(steps):
        ys = torch.randint(0, h - crop + 1, (batch_size,), generator=gen).tolist()
        xs = torch.randint(0, w - crop + 1, (batch_size,), generator=gen).tolist()
        corners = list(zip(ys, xs, strict=True))
        x = torch.stack([image[:, y : y + crop, x_ : x_ + crop] for y, x_ in corners])
        t = torch.stack([target[y + off : y + off + out, x_ + off : x_ + off + out]
                         for y, x_ in corners])
        loss = F.cross_entropy(model(x), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    return losses


__all__ = [
    "BorderEffect",
    "SkipConnection",
    "activation_bytes",
    "border_effect",
    "mirror_pad",
    "per_tile_max",
    "predict_whole",
    "same_context",
    "skip_connections",
    "train_briefly",
]
