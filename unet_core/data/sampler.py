"""Random training patches with mirrored context, for valid- and same-padding U-Nets.

The paper trains on large input tiles whose labels cover only the centre, the network's
valid-padding output: "To predict the pixels in the border region of the image, the missing
context is extrapolated by mirroring the input image" (Sec. 2, Fig. 2). :class:`PatchSampler`
draws such pairs at random: an input window of ``input_size`` and, centred in it, a target
window of ``output_size`` (equal to ``input_size`` for a same-padding net). Every image, target
and mask is padded once, at construction, by mirroring (``numpy.pad(mode="reflect")``), so a
patch is a plain slice, wherever it lies; nothing is done per pixel in Python.

Target windows lie inside the image (``border="inside"``, the default), or may hang over its
edge by up to half their size (``border="overhang"``), so that border pixels are drawn as often
as possible; target pixels beyond the image are then marked invalid. ``valid`` is also False
outside the optional FOV masks, so a loss can ignore those pixels.

An optional ``transform(image, target, valid[, weight], rng=rng) -> (image, target, valid[,
weight])`` (the weight map is passed only when the sampler has ``weights``; e.g. an
elastic deformation from :mod:`unet_core.augment` bound with :func:`functools.partial`) is
applied to each *input-sized* patch before the target and valid windows are cropped from its
centre, so that deformations move image and labels together and may pull mirrored context in.
It receives the image patch as float32 in [0, 1], shaped like the source images (``(h, w)`` or
``(h, w, C)``), the target patch with the targets' dtype (uint8 for boolean masks) and the
valid patch as bool, and must return arrays of the same shapes. With ``context`` (the paper's
deformation at the paper's scale, :class:`unet_core.augment.ElasticDeformation` with a tile),
the transform gets the input window with ``context`` more pixels of the (mirror-padded) image
on every side, so that what it pulls in from beyond the patch is image, not a mirror of the
patch, and the input patch is cut from the centre of what it returns.

Example (DRIVE, the paper's valid-padding net)::

    samples = load_drive(resolve_dataset("drive").root, "training")
    sampler = PatchSampler([s.image for s in samples], [s.vessels for s in samples],
                           [s.fov for s in samples], input_size=188, output_size=4, seed=0)
    batch = sampler.sample(16)  # image (16, 3, 188, 188), target and valid (16, 4, 4)
    loss = (F.cross_entropy(model(batch.image), batch.target, reduction="none")
            [batch.valid].mean())

Explained in chapter 5 (training); chapter 2 explains the mirrored context.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch

from unet_core.validation import check_choice as _check_choice

Transform = Callable[..., tuple[np.ndarray, ...]]
BORDERS: tuple[str, ...] = ("inside", "overhang")
OUTSIDE_FOV: tuple[str, ...] = ("ignore", "background")


class PatchBatch(NamedTuple):
    """A batch of patches.

    Attributes:
        image: ``(N, C, input_h, input_w) float32`` in [0, 1] (standardised if asked).
        target: ``(N, output_h, output_w) int64`` class indices (0/1 for boolean masks), as
            :class:`torch.nn.CrossEntropyLoss` expects.
        valid: ``(N, output_h, output_w) bool``, True where the target is real: inside the
            image and inside the FOV mask.
        weight: ``(N, output_h, output_w) float32`` per-pixel loss weights (e.g. the paper's
            weight map, Eq. 2) cut from the same windows, or None when none were given.
    """

    image: torch.Tensor
    target: torch.Tensor
    valid: torch.Tensor
    weight: torch.Tensor | None = None


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int | np.integer) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | np.integer) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _scale_of(image: np.ndarray) -> float:
    if image.dtype == np.uint8:
        return 1.0 / 255.0
    if image.dtype == np.uint16:
        return 1.0 / 65535.0
    if np.issubdtype(image.dtype, np.floating):
        return 1.0
    raise ValueError(f"images must be uint8, uint16 or float (in [0, 1]), got {image.dtype}")


def _check_arguments(
    images: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    fovs: Sequence[np.ndarray] | None,
    weights: Sequence[np.ndarray] | None,
    border: str,
    min_valid_fraction: float,
) -> None:
    """Check the border rule, that there is one target (FOV, weight map) per image, and the
    minimum valid fraction."""
    _check_choice("border", border, BORDERS)
    if len(images) == 0:
        raise ValueError("PatchSampler needs at least one image")
    if len(targets) != len(images) or (fovs is not None and len(fovs) != len(images)):
        raise ValueError(
            f"got {len(images)} images, {len(targets)} targets and "
            f"{'no' if fovs is None else len(fovs)} FOV masks: expected one of each per image"
        )
    if weights is not None and len(weights) != len(images):
        raise ValueError(
            f"got {len(images)} images and {len(weights)} weight maps: expected one per image"
        )
    if not 0.0 <= min_valid_fraction <= 1.0:
        raise ValueError(f"min_valid_fraction must be in [0, 1], got {min_valid_fraction!r}")


def _as_hwc(i: int, image: np.ndarray, channels: int | None) -> np.ndarray:
    """Image ``i`` as ``(H, W, C)``; it must have ``channels`` channels (any if None)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3:
        raise ValueError(f"image {i} has shape {image.shape}: expected (H, W) or (H, W, C)")
    channels = image.shape[2] if channels is None else channels
    if image.shape[2] != channels:
        raise ValueError(f"image {i} has {image.shape[2]} channels, image 0 has {channels}")
    return image


def _as_target(i: int, target: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Target ``i`` as an integer class map (boolean masks become uint8 0/1)."""
    target = np.asarray(target)
    if target.shape != shape:
        raise ValueError(f"target {i} has shape {target.shape}, expected {shape}")
    if target.dtype == bool:
        target = target.astype(np.uint8)
    elif not np.issubdtype(target.dtype, np.integer):
        raise ValueError(f"target {i} has dtype {target.dtype}: expected bool or integer")
    return target


def _as_valid(i: int, fov: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Valid-pixel mask of image ``i``: its FOV mask, or everything without one."""
    valid = np.ones(shape, bool)
    if fov is not None:
        fov = np.asarray(fov)
        if fov.shape != shape:
            raise ValueError(f"FOV mask {i} has shape {fov.shape}, expected {shape}")
        valid = fov.astype(bool)
    return valid


def _as_weight_map(i: int, weight: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Weight map ``i`` as float32, checked to be finite and non-negative."""
    wmap = np.asarray(weight, dtype=np.float32)
    if wmap.shape != shape:
        raise ValueError(f"weight map {i} has shape {wmap.shape}, expected {shape}")
    if not np.isfinite(wmap).all() or wmap.min() < 0:
        raise ValueError(f"weight map {i} must be finite and non-negative")
    return wmap


def _channel_stats(
    image: np.ndarray, valid: np.ndarray, channels: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (>= 1e-6) over the valid pixels (all if none)."""
    pixels = image[valid] if valid.any() else image.reshape(-1, channels)
    pixels = pixels.astype(np.float64) * scale
    return (pixels.mean(0).astype(np.float32),
            np.maximum(pixels.std(0), 1e-6).astype(np.float32))


class PatchSampler:
    """Draw random (input patch, centred target patch, valid mask) triples from images.

    Args:
        images: ``(H, W)`` or ``(H, W, C)`` arrays, uint8 (scaled by 1/255), uint16 (1/65535)
            or float (taken as already in [0, 1]); all with the same number of channels.
        targets: ``(H, W)`` bool masks or integer class maps, one per image.
        fovs: optional ``(H, W)`` bool masks; target pixels outside are invalid.
        weights: optional ``(H, W)`` float per-pixel loss weights, one per image (the paper
            pre-computes its weight map per image, Sec. 3); they are cut from the target window
            and go through the transform with the masks (nearest neighbour), so they move
            with the labels.
        input_size: side (or ``(h, w)``) of the input patch, e.g. 572 or 188 for the paper net.
        output_size: side of the target patch, centred in the input (``model.output_size(n)``
            for a valid-padding net); defaults to ``input_size`` (same padding).
        seed: seeds the sampler's own ``numpy.random.Generator`` (an int, or a sequence such
            as ``(seed, rank)``); equal seeds give equal batch sequences.
        standardize: if True, subtract each image's per-channel mean and divide by its standard
            deviation, both measured once over its FOV (whole image without FOV), after any
            transform. Off by default (the paper does not say it normalises).
        transform: optional per-patch augmentation, see the module docstring.
        min_valid_fraction: only draw target windows with at least this share of valid pixels
            (e.g. 0.25 skips DRIVE's black corners); 0 draws every position.
        border: ``"inside"`` or ``"overhang"`` (module docstring).
        context: pixels of image around the input window that the transform also gets (module
            docstring); 0 without a transform.
        outside_fov: ``"ignore"`` (default): target pixels outside the FOV are invalid, the loss
            never sees them; ``"background"``: they are valid background (target 0), so the
            network learns to answer background there too. Either way the FOV decides which
            positions are drawn (``min_valid_fraction``).

    Positions are drawn uniformly over all eligible (image, position) pairs, so larger images
    are drawn more often.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        targets: Sequence[np.ndarray],
        fovs: Sequence[np.ndarray] | None = None,
        *,
        weights: Sequence[np.ndarray] | None = None,
        input_size: int | tuple[int, int],
        output_size: int | tuple[int, int] | None = None,
        seed: int | Sequence[int] = 0,
        standardize: bool = False,
        transform: Transform | None = None,
        min_valid_fraction: float = 0.0,
        border: Literal["inside", "overhang"] = "inside",
        context: int = 0,
        outside_fov: Literal["ignore", "background"] = "ignore",
    ) -> None:
        _check_arguments(images, targets, fovs, weights, border, min_valid_fraction)
        _check_choice("outside_fov", outside_fov, OUTSIDE_FOV)
        self.outside_fov = outside_fov
        if isinstance(context, bool) or not isinstance(context, int | np.integer) or context < 0:
            raise ValueError(f"context must be an integer >= 0 (pixels), got {context!r}")
        if context and transform is None:
            raise ValueError("context is for a transform: without one it would be unused")
        self.context = int(context)
        self.input_size = _pair(input_size, "input_size")
        self.output_size = _pair(
            input_size if output_size is None else output_size, "output_size"
        )
        (ih, iw), (oh, ow) = self.input_size, self.output_size
        if oh > ih or ow > iw:
            raise ValueError(f"output_size {self.output_size} exceeds input_size {self.input_size}")
        self.margin = ((ih - oh) // 2, (iw - ow) // 2)  # same rule as model.center_crop
        self.border = border
        self.standardize = standardize
        self.transform = transform
        self.min_valid_fraction = float(min_valid_fraction)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

        hang = self._overhang()
        # Padding = context margin + overhang (+ the transform's context); the input window's
        # top-left then runs over 0 .. H - oh + hang_top + hang_bottom, offset by the context.
        c = self.context
        self._pad = (
            (c + self.margin[0] + hang[0][0], c + ih - oh - self.margin[0] + hang[0][1]),
            (c + self.margin[1] + hang[1][0], c + iw - ow - self.margin[1] + hang[1][1]),
        )
        self._images: list[np.ndarray] = []  # (C, Hp, Wp), source dtype
        self._targets: list[np.ndarray] = []  # (Hp, Wp)
        self._valid: list[np.ndarray] = []  # (Hp, Wp) bool: the FOV, which positions are drawn
        self._loss_valid: list[np.ndarray] = []  # (Hp, Wp) bool: where the loss counts
        self._wmaps: list[np.ndarray] | None = None if weights is None else []  # (Hp, Wp) f32
        self._scale: list[float] = []
        self._stats: list[tuple[np.ndarray, np.ndarray]] = []  # per-channel mean, std
        self._npos: list[tuple[int, int]] = []
        self._eligible: list[np.ndarray | None] = []
        channels = None
        for i, image in enumerate(images):
            channels = self._add_image(
                i, image, targets[i], None if fovs is None else fovs[i],
                None if weights is None else weights[i], hang, channels,
            )
        self.channels = int(channels or 1)
        self._set_draw_weights()

    # -- construction -----------------------------------------------------------------------
    def _overhang(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """How far a target window may hang over the image edge: (top, bottom), (left, right)."""
        oh, ow = self.output_size
        if self.border != "overhang":
            return ((0, 0),) * 2
        return ((oh // 2, oh - 1 - oh // 2), (ow // 2, ow - 1 - ow // 2))

    def _add_image(
        self,
        i: int,
        image: np.ndarray,
        target: np.ndarray,
        fov: np.ndarray | None,
        weight: np.ndarray | None,
        hang: tuple[tuple[int, int], tuple[int, int]],
        channels: int | None,
    ) -> int:
        """Check image ``i`` and its masks, pad them once, record its statistics and positions.

        Returns the number of channels (that of image 0, which every image must share).
        """
        image = _as_hwc(i, image, channels)
        channels = image.shape[2]
        h, w = image.shape[:2]
        target = _as_target(i, target, (h, w))
        valid = _as_valid(i, fov, (h, w))
        if self.outside_fov == "background":
            target = np.where(valid, target, 0).astype(target.dtype)  # outside: background
        oh, ow = self.output_size
        npos = (h - oh + sum(hang[0]) + 1, w - ow + sum(hang[1]) + 1)
        if npos[0] < 1 or npos[1] < 1:
            raise ValueError(
                f"image {i} is {h}x{w}, smaller than the {oh}x{ow} target window: use "
                "border='overhang' or a smaller output_size"
            )
        scale = _scale_of(image)
        chw = np.ascontiguousarray(np.moveaxis(image, 2, 0))
        if np.issubdtype(chw.dtype, np.floating):
            chw = chw.astype(np.float32, copy=False)
        self._images.append(np.pad(chw, ((0, 0), *self._pad), mode="reflect"))
        self._targets.append(np.pad(target, self._pad, mode="reflect"))
        # Outside the image nothing is valid, but the transform's context mirrors what is
        # there: a deformation that pulls in mirrored image pulls in its mirrored labels.
        c = self.context
        inner = tuple((before - c, after - c) for before, after in self._pad)
        for masks, mask in ((self._valid, valid), (self._loss_valid, (
                valid if self.outside_fov == "ignore" else np.ones((h, w), bool)))):
            masks.append(np.pad(np.pad(mask, inner, mode="constant", constant_values=False),
                                c, mode="reflect"))
        if self._wmaps is not None:
            assert weight is not None
            self._wmaps.append(np.pad(_as_weight_map(i, weight, (h, w)), self._pad, mode="reflect"))
        self._scale.append(scale)
        self._stats.append(_channel_stats(image, valid, channels, scale))
        self._npos.append(npos)
        self._eligible.append(self._eligible_positions(len(self._valid) - 1, npos))
        return channels

    def _set_draw_weights(self) -> None:
        """Per-image share of the eligible positions, so positions are drawn uniformly."""
        counts = np.array(
            [npos[0] * npos[1] if el is None else el.size for npos, el in
             zip(self._npos, self._eligible, strict=True)], dtype=np.float64,
        )
        if counts.sum() == 0:
            raise ValueError(
                f"no target window has a valid fraction >= {self.min_valid_fraction}: lower "
                "min_valid_fraction"
            )
        self._counts = counts
        self._weights = counts / counts.sum()

    # -- positions --------------------------------------------------------------------------
    def _eligible_positions(self, i: int, npos: tuple[int, int]) -> np.ndarray | None:
        """Flat indices of positions whose target window is valid enough (None: all)."""
        if self.min_valid_fraction <= 0.0:
            return None
        (oh, ow), c = self.output_size, self.context
        my, mx = self.margin[0] + c, self.margin[1] + c
        valid = self._valid[i][my : my + npos[0] + oh - 1, mx : mx + npos[1] + ow - 1]
        sat = np.zeros((valid.shape[0] + 1, valid.shape[1] + 1), np.int64)
        sat[1:, 1:] = valid.cumsum(0).cumsum(1)
        window = sat[oh:, ow:] - sat[:-oh, ow:] - sat[oh:, :-ow] + sat[:-oh, :-ow]
        return np.flatnonzero(window >= self.min_valid_fraction * oh * ow - 1e-9)

    def _positions(self, n: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
        which = rng.choice(len(self._images), size=n, p=self._weights)
        u = rng.random(n)
        out = []
        for k, i in enumerate(which):
            j = min(int(u[k] * self._counts[i]), int(self._counts[i]) - 1)
            eligible = self._eligible[i]
            flat = j if eligible is None else int(eligible[j])
            py, px = divmod(flat, self._npos[i][1])
            out.append((int(i), py, px))
        return out

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator | None = None) -> PatchBatch:
        """Draw ``n`` patches (with the sampler's generator unless ``rng`` is given)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        rng = self.rng if rng is None else rng
        (ih, iw), (oh, ow), (my, mx) = self.input_size, self.output_size, self.margin
        c = self.context
        images = np.empty((n, self.channels, ih, iw), np.float32)
        targets = np.empty((n, oh, ow), np.int64)
        valid = np.empty((n, oh, ow), bool)
        wmaps = None if self._wmaps is None else np.empty((n, oh, ow), np.float32)
        for k, (i, py, px) in enumerate(self._positions(n, rng)):
            if self.transform is None:
                src = self._images[i][:, c + py : c + py + ih, c + px : c + px + iw]
                np.multiply(src, np.float32(self._scale[i]), out=images[k], casting="unsafe")
                out = (slice(py + my, py + my + oh), slice(px + mx, px + mx + ow))
                targets[k] = self._targets[i][out]
                valid[k] = self._loss_valid[i][out]
                if wmaps is not None:
                    assert self._wmaps is not None
                    wmaps[k] = self._wmaps[i][out]
            else:  # the input window and its context
                window = (slice(py, py + ih + 2 * c), slice(px, px + iw + 2 * c))
                src = self._images[i][(slice(None), *window)]
                image_in = np.multiply(src, np.float32(self._scale[i]), dtype=np.float32)
                t_in = self._targets[i][window]
                v_in = self._loss_valid[i][window]
                w_in = None if self._wmaps is None else self._wmaps[i][window]
                self._apply_transform(image_in, t_in, v_in, rng, images[k], targets[k],
                                      valid[k], w_in, None if wmaps is None else wmaps[k])
            if self.standardize:
                mean, std = self._stats[i]
                images[k] -= mean[:, None, None]
                images[k] /= std[:, None, None]
        return PatchBatch(torch.from_numpy(images), torch.from_numpy(targets),
                          torch.from_numpy(valid),
                          None if wmaps is None else torch.from_numpy(wmaps))

    def _apply_transform(
        self,
        image_chw: np.ndarray,
        target: np.ndarray,
        valid: np.ndarray,
        rng: np.random.Generator,
        image_out: np.ndarray,
        target_out: np.ndarray,
        valid_out: np.ndarray,
        wmap: np.ndarray | None = None,
        wmap_out: np.ndarray | None = None,
    ) -> None:
        assert self.transform is not None
        c = self.context
        (ih, iw), (oh, ow) = self.input_size, self.output_size
        (my, mx) = self.margin[0] + c, self.margin[1] + c
        image = image_chw[0] if self.channels == 1 else np.moveaxis(image_chw, 0, 2)
        masks = [target.copy(), valid.copy()] + ([] if wmap is None else [wmap.copy()])
        result = self.transform(image.copy(), *masks, rng=rng)
        if not isinstance(result, tuple | list) or len(result) != 1 + len(masks):
            names = "(image, target, valid" + (", weight)" if wmap is not None else ")")
            raise ValueError(f"transform must return {names}")
        new_image, new_target, new_valid = (np.asarray(a) for a in result[:3])
        if wmap_out is not None:
            new_wmap = np.asarray(result[3])
            if new_wmap.shape != target.shape:
                raise ValueError(
                    f"transform changed the weight map's shape to {new_wmap.shape}, "
                    f"expected {target.shape}"
                )
            wmap_out[...] = new_wmap[my : my + oh, mx : mx + ow]
        shapes = (new_image.shape, new_target.shape, new_valid.shape)
        if shapes != (image.shape, target.shape, target.shape):
            raise ValueError(
                f"transform changed the patch shapes: got {new_image.shape}, {new_target.shape}, "
                f"{new_valid.shape}; expected {image.shape}, {target.shape}, {target.shape}"
            )
        new_image = new_image[c : c + ih, c : c + iw]
        image_out[...] = new_image[None] if self.channels == 1 else np.moveaxis(new_image, 2, 0)
        target_out[...] = new_target[my : my + oh, mx : mx + ow]
        valid_out[...] = new_valid[my : my + oh, mx : mx + ow].astype(bool)

    def batches(self, batch_size: int, n_batches: int | None = None) -> Iterator[PatchBatch]:
        """Yield ``n_batches`` batches (forever if None) from the sampler's generator."""
        count = 0
        while n_batches is None or count < n_batches:
            yield self.sample(batch_size)
            count += 1

    def reset(self, seed: int | None = None) -> None:
        """Restart the random sequence (from ``seed``, or the constructor's seed)."""
        self.seed = self.seed if seed is None else seed
        self.rng = np.random.default_rng(self.seed)

    def __repr__(self) -> str:
        return (
            f"PatchSampler({len(self._images)} images, input_size={self.input_size}, "
            f"output_size={self.output_size}, border={self.border!r}, "
            f"standardize={self.standardize}, seed={self.seed})"
        )
