"""Overlap-tile inference for images of any size (Ronneberger et al. 2015, Sec. 2 and Fig. 2).

Valid padding (the paper). A valid U-Net maps a ``T x T`` tile to an ``O x O`` output that is
the centre of the tile, ``margin = (T - O) / 2`` pixels in from every side (92 for the paper
net). The segmentation of a large image is assembled from such outputs; the context that is
missing at the image border is extrapolated by mirroring the image (Fig. 2).

*Tile-size invariance.* A 2x2 max-pool with stride 2 is only equivariant to shifts by an even
number of pixels, and ``depth`` of them to shifts by multiples of ``2**depth``. Two tiles whose
origins differ by a multiple of ``2**depth`` therefore compute exactly the same function on the
pixels they share, but tiles that advance by the output size ``O`` do not (``O`` is 388 for the
paper net, and 388 mod 16 = 4): the pooling grid would be shifted from tile to tile and the
result would depend on where the tiles happen to fall. Here tiles advance by
``stride = floor(O / 2**depth) * 2**depth`` and all tiles share one pooling grid anchored at
image pixel ``-margin``. The assembled logits are then the same, up to floating-point error,
for every valid tile size: they equal what a single pass over the whole mirrored image would
give. (The paper does not discuss this; its Caffe tiling used a fixed tile size.)

Same padding (a deviation). Every output pixel then has a full-size prediction, but pixels near
a tile border were computed from zero-padded context and are less reliable. Tiles overlap by
``overlap`` pixels and are blended with a separable Hann window, normalised by the summed
weights, so that no seam is visible; the image is first mirrored by ``overlap // 2`` pixels so
that its own border pixels are also covered by the interior of a tile.

Memory is bounded by the tile: tiles are gathered one batch at a time from the (mirror-indexed)
image, so a 4000 x 4000 image never needs whole-image activations; only the ``(C, H, W)``
output (and, for same padding, one weight map) is held for the whole image.

Explained in chapter 2 (padding and the overlap-tile strategy).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from unet_core.model import UNet

TTA_MODES: tuple[str, ...] = ("none", "flips", "d4")


def mirror_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start + length - 1`` into an axis of ``size`` pixels, mirrored.

    Mirroring reflects about the first and last pixel without repeating them
    (``... 2 1 0 1 2 ... n-2 n-1 n-2 ...``), periodically, so it is defined for any
    ``start`` and ``length`` even when the context needed exceeds the image (e.g. a 9x13
    image with a 92-pixel margin). A one-pixel axis repeats its pixel.
    """
    idx = np.arange(start, start + length)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx < size, idx, period - idx)


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one axis go (the same plan is built independently for each axis).

    ``starts`` are the tiles' first input pixels in image coordinates (negative = mirrored
    context); each tile's logits cover output pixels ``start + crop .. start + crop + out - 1``.
    """

    tile: int  # input side of a tile
    out: int  # output side of a tile (== tile for same padding)
    crop: int  # offset of the output inside the tile (margin for valid padding, else 0)
    stride: int  # distance between neighbouring tiles, a multiple of 2**depth
    starts: tuple[int, ...]


def plan_axis(
    model: UNet, size: int, tile_size: int, overlap: int | None = None, aligned: bool = True
) -> TilePlan:
    """Tile positions along one image axis of ``size`` pixels (see module docstring).

    ``aligned=False`` (valid padding only) advances tiles by the whole output size, as a naive
    implementation would; it exists to demonstrate why alignment matters.
    """
    align = 2**model.depth
    if model.padding == "valid":
        model.check_size("tile_size", tile_size)
        out = model.output_size(tile_size)
        crop = (tile_size - out) // 2
        stride = (out // align) * align if aligned else out
        if stride == 0:
            smallest = model.valid_input_size(tile_size + 1)
            while model.output_size(smallest) < align:
                smallest = model.valid_input_size(smallest + 1)
            raise ValueError(
                f"tile_size {tile_size} gives a {out}-pixel output, smaller than 2**depth = "
                f"{align}, so tiles cannot advance on the pooling grid; use tile_size >= "
                f"{smallest}"
            )
        n = 1 if size <= out else math.ceil((size - out) / stride) + 1
        starts = tuple(k * stride - crop for k in range(n))
        return TilePlan(tile_size, out, crop, stride, starts)

    model.check_size("tile_size", tile_size)  # same padding: a multiple of 2**depth
    if overlap is None:
        overlap = tile_size // 4
    overlap = (overlap // align) * align  # keep tiles on the pooling grid
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile_size={tile_size}), got {overlap}")
    context = overlap // 2
    stride = tile_size - overlap
    extended = size + 2 * context
    n = 1 if extended <= tile_size else math.ceil((extended - tile_size) / stride) + 1
    starts = tuple(k * stride - context for k in range(n))
    return TilePlan(tile_size, tile_size, 0, stride, starts)


def hann_window(n: int, floor: float = 1e-3) -> torch.Tensor:
    """A 1-D Hann window, largest in the middle, never below ``floor`` (for blending)."""
    i = torch.arange(n, dtype=torch.float64)
    return torch.sin(math.pi * (i + 0.5) / n).pow(2).clamp_min(floor).float()


def _tiles(plan_y: TilePlan, plan_x: TilePlan) -> Iterator[tuple[int, int]]:
    for y in plan_y.starts:
        for x in plan_x.starts:
            yield y, x


@torch.inference_mode()
def _predict_once(
    model: UNet,
    image: torch.Tensor,
    tile_size: int,
    overlap: int | None,
    batch_size: int,
    autocast_dtype: torch.dtype | None,
    progress: bool,
    aligned: bool,
) -> torch.Tensor:
    c, h, w = image.shape
    plan_y = plan_axis(model, h, tile_size, overlap, aligned)
    plan_x = plan_axis(model, w, tile_size, overlap, aligned)
    device = next(model.parameters()).device
    out = torch.zeros(model.out_channels, h, w, dtype=torch.float32)
    blend = model.padding == "same"
    if blend:
        weight_sum = torch.zeros(1, h, w, dtype=torch.float32)
        window = hann_window(plan_y.tile)[:, None] * hann_window(plan_x.tile)[None, :]

    positions = list(_tiles(plan_y, plan_x))
    bar = tqdm(total=len(positions), desc="tiles", disable=not progress, leave=False)
    for first in range(0, len(positions), batch_size):
        chunk = positions[first : first + batch_size]
        batch = torch.stack(
            [
                image[:, mirror_indices(y, tile_size, h)][:, :, mirror_indices(x, tile_size, w)]
                for y, x in chunk
            ]
        ).to(device)  # (B, C, T, T)
        with torch.autocast(
            device_type=device.type,
            dtype=autocast_dtype or torch.bfloat16,
            enabled=autocast_dtype is not None,
        ):
            logits = model(batch)  # (B, K, O, O)
        logits = logits.float().cpu()
        for (y, x), tile_logits in zip(chunk, logits, strict=True):
            # Output pixels of this tile, clipped to the image.
            oy, ox = y + plan_y.crop, x + plan_x.crop
            y0, y1 = max(oy, 0), min(oy + plan_y.out, h)
            x0, x1 = max(ox, 0), min(ox + plan_x.out, w)
            if y0 >= y1 or x0 >= x1:
                continue
            piece = tile_logits[:, y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            if blend:
                wpiece = window[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
                out[:, y0:y1, x0:x1] += piece * wpiece
                weight_sum[:, y0:y1, x0:x1] += wpiece
            else:
                # Valid padding: overlapping outputs of aligned tiles agree; keep the latest.
                out[:, y0:y1, x0:x1] = piece
        bar.update(len(chunk))
    bar.close()
    if blend:
        out /= weight_sum
    return out


def _d4(tta: str) -> list[tuple[int, bool]]:
    """(quarter turns, flip left-right) pairs of the test-time augmentation group."""
    if tta == "none":
        return [(0, False)]
    if tta == "flips":
        return [(0, False), (0, True), (2, False), (2, True)]  # id, lr, rot180 (= lr+ud), ud
    return [(k, f) for k in range(4) for f in (False, True)]


def predict_tiled(
    model: UNet,
    image: torch.Tensor | np.ndarray,
    tile_size: int,
    *,
    overlap: int | None = None,
    batch_size: int = 4,
    tta: str = "none",
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
    aligned: bool = True,
) -> torch.Tensor:
    """Segment a ``(C, H, W)`` image of any size with the overlap-tile strategy.

    Args:
        model: a :class:`~unet_core.model.UNet` (its train/eval mode is restored afterwards;
            prediction runs in eval mode).
        image: ``(C, H, W)`` float tensor (or array) with ``C == model.in_channels``.
        tile_size: input side of a tile: a valid input size for valid padding (e.g. 572 for
            the paper net), a multiple of ``2**depth`` for same padding.
        overlap: same padding only: pixels shared by neighbouring tiles (default
            ``tile_size // 4``, rounded down to a multiple of ``2**depth``).
        batch_size: tiles per forward pass.
        tta: test-time augmentation: ``"none"``, ``"flips"`` (identity, left-right,
            up-down, both) or ``"d4"`` (all 8 flips and quarter turns). Logits of the
            transformed predictions are mapped back and averaged.
        autocast_dtype: e.g. ``torch.bfloat16`` to run the model under autocast.
        progress: show a tqdm bar over the tiles.
        aligned: valid padding: advance tiles on the ``2**depth`` pooling grid (default), which
            makes the result independent of ``tile_size``. ``False`` advances by the full output
            size instead; only for demonstrating the seams that this causes.

    Returns:
        ``(out_channels, H, W)`` float32 logits on the CPU.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta={tta!r} is not valid; expected one of {', '.join(TTA_MODES)}")
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor) or image.ndim != 3:
        shape = tuple(getattr(image, "shape", ()))
        raise ValueError(f"image must be a (C, H, W) tensor, got shape {shape}")
    if image.shape[0] != model.in_channels:
        raise ValueError(
            f"image has {image.shape[0]} channels but the model expects {model.in_channels} "
            f"(image shape {tuple(image.shape)}; expected (C, H, W))"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    image = image.float().cpu()

    was_training = model.training
    model.eval()
    try:
        group = _d4(tta)
        total: torch.Tensor | None = None  # one whole-image buffer, accumulated in place
        for turns, flip in group:
            x = image.flip(-1) if flip else image
            x = torch.rot90(x, turns, dims=(-2, -1))
            y = _predict_once(
                model, x, tile_size, overlap, batch_size, autocast_dtype, progress, aligned
            )
            y = torch.rot90(y, -turns, dims=(-2, -1))
            y = y.flip(-1) if flip else y
            total = y.contiguous() if total is None else total.add_(y)
        assert total is not None
        return total.div_(len(group))
    finally:
        model.train(was_training)
