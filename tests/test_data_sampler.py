"""PatchSampler: shapes, exact content with mirrored context, determinism, masks, transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_core.data import PatchBatch, PatchSampler
from unet_core.model import UNet


def _coords(h: int, w: int) -> np.ndarray:
    """Integer class map whose value encodes the pixel: y * w + x."""
    return np.arange(h * w, dtype=np.int64).reshape(h, w)


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _window_origin(target: np.ndarray, valid: np.ndarray, w: int) -> tuple[int, int]:
    """Image coordinates of a target patch's top-left pixel, from a valid pixel's code."""
    r, c = np.argwhere(valid)[0]
    y, x = divmod(int(target[r, c]), w)
    return y - int(r), x - int(c)


@pytest.mark.parametrize(
    ("size", "in_size", "out_size", "border"),
    [
        ((30, 27), 12, 12, "inside"),  # same padding
        ((30, 27), 20, 6, "inside"),  # valid padding, context beyond the image
        ((30, 27), 9, 4, "inside"),  # odd difference: model.center_crop's rule
        ((30, 27), 20, 6, "overhang"),
        ((16, 13), 60, 8, "overhang"),  # context much larger than the image: repeated mirror
        ((30, 27), (16, 12), (8, 6), "inside"),  # rectangular
    ],
)
def test_patches_are_exact_mirrored_crops(size, in_size, out_size, border) -> None:  # noqa: ANN001
    h, w = size
    image = _rgb(h, w)
    fov = np.ones((h, w), bool)
    sampler = PatchSampler([image], [_coords(h, w)], [fov], input_size=in_size,
                           output_size=out_size, seed=1, border=border)
    (ih, iw), (oh, ow) = sampler.input_size, sampler.output_size
    my, mx = (ih - oh) // 2, (iw - ow) // 2
    big = max(ih, iw) + max(h, w)
    reference = np.pad(image, ((big, big), (big, big), (0, 0)), mode="reflect")
    batch = sampler.sample(40)
    assert isinstance(batch, PatchBatch)
    assert batch.image.shape == (40, 3, ih, iw) and batch.image.dtype == torch.float32
    assert batch.target.shape == (40, oh, ow) and batch.target.dtype == torch.int64
    assert batch.valid.shape == (40, oh, ow) and batch.valid.dtype == torch.bool
    for k in range(40):
        target, valid = batch.target[k].numpy(), batch.valid[k].numpy()
        y0, x0 = _window_origin(target, valid, w)
        # valid exactly where the target window is inside the image
        yy, xx = np.mgrid[y0 : y0 + oh, x0 : x0 + ow]
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        np.testing.assert_array_equal(valid, inside)
        np.testing.assert_array_equal(target[inside], (yy * w + xx)[inside])
        if border == "inside":
            assert inside.all()
        else:  # the window's centre pixel is always in the image
            assert inside[oh // 2, ow // 2]
        # the input is the mirrored image around the target window, scaled to [0, 1]
        crop = reference[big + y0 - my : big + y0 - my + ih, big + x0 - mx : big + x0 - mx + iw]
        np.testing.assert_allclose(
            batch.image[k].numpy(), np.moveaxis(crop, 2, 0) / 255.0, rtol=0, atol=1e-6
        )


def test_grey_images_valid_padding_sizes_and_unet_forward() -> None:
    """A paper-style batch (valid padding) feeds a valid U-Net and a masked loss."""
    model = UNet(1, 2, base_channels=4, depth=2)
    n_in = model.valid_input_size(40)
    n_out = model.output_size(n_in)
    images = [np.random.default_rng(i).integers(0, 256, (50, 45), dtype=np.uint8) for i in range(3)]
    masks = [im > 128 for im in images]
    sampler = PatchSampler(images, masks, input_size=n_in, output_size=n_out, seed=0)
    batch = sampler.sample(4)
    assert batch.image.shape == (4, 1, n_in, n_in)
    assert set(torch.unique(batch.target).tolist()) <= {0, 1}
    assert 0.0 <= float(batch.image.min()) and float(batch.image.max()) <= 1.0
    logits = model(batch.image)
    assert logits.shape[-2:] == batch.target.shape[-2:]
    loss = torch.nn.functional.cross_entropy(logits, batch.target, reduction="none")
    assert torch.isfinite(loss[batch.valid].mean())


def test_determinism_and_reset() -> None:
    images, targets = [_rgb(40, 40, i) for i in range(3)], [_coords(40, 40)] * 3
    a = PatchSampler(images, targets, input_size=16, output_size=8, seed=5)
    b = PatchSampler(images, targets, input_size=16, output_size=8, seed=5)
    c = PatchSampler(images, targets, input_size=16, output_size=8, seed=6)
    first = [a.sample(8) for _ in range(3)]
    for x in first:
        y = b.sample(8)
        for u, v in zip(x, y, strict=True):
            assert (u is None and v is None) or torch.equal(u, v)
    assert not torch.equal(first[0].target, c.sample(8).target)
    a.reset()
    assert torch.equal(a.sample(8).target, first[0].target)
    rng_batch = a.sample(8, rng=np.random.default_rng(5))
    assert torch.equal(rng_batch.target, first[0].target)  # same seed as an explicit rng
    assert len(list(a.batches(4, n_batches=3))) == 3


def test_fov_marks_invalid_and_min_valid_fraction() -> None:
    h = w = 40
    fov = np.zeros((h, w), bool)
    fov[:, :10] = True  # only the left quarter is inside the FOV
    sampler = PatchSampler([_rgb(h, w)], [_coords(h, w)], [fov], input_size=8, seed=0)
    batch = sampler.sample(200)
    for target, valid in zip(batch.target.numpy(), batch.valid.numpy(), strict=True):
        np.testing.assert_array_equal(valid, (target % w) < 10)
    assert (batch.valid.float().mean(dim=(1, 2)) == 0).any()  # without a minimum
    strict = PatchSampler([_rgb(h, w)], [_coords(h, w)], [fov], input_size=8, seed=0,
                          min_valid_fraction=0.75)
    fractions = strict.sample(200).valid.float().mean(dim=(1, 2))
    assert bool((fractions >= 0.75).all())
    with pytest.raises(ValueError, match="lower min_valid_fraction"):
        PatchSampler([_rgb(h, w)], [_coords(h, w)], [np.zeros((h, w), bool)], input_size=8,
                     min_valid_fraction=0.1)


def test_positions_cover_the_image_uniformly() -> None:
    h, w = 24, 20
    sampler = PatchSampler([_rgb(h, w)], [_coords(h, w)], input_size=8, output_size=4,
                           border="overhang", seed=0)
    batch = sampler.sample(4000)
    centres = batch.target[:, 2, 2].numpy()  # window centre (oh // 2), always in the image
    counts = np.bincount(centres, minlength=h * w)
    assert counts.min() > 0  # every pixel, corners included, is a window centre sometimes
    assert counts.std() / counts.mean() < 0.35  # roughly uniform (Poisson: ~0.31)
    # images are drawn in proportion to their number of positions
    two = PatchSampler([_rgb(10, 10), _rgb(30, 30)], [_coords(10, 10), _coords(30, 30)],
                       input_size=4, output_size=4, seed=0)
    big = (two.sample(2000).target.amax(dim=(1, 2)) >= 100).float().mean()
    assert float(big) == pytest.approx(27 * 27 / (27 * 27 + 7 * 7), abs=0.03)


def test_standardize_uses_per_image_fov_statistics() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(120, 30, (32, 32)), rng.normal(60, 10, (32, 32)),
                      rng.normal(200, 5, (32, 32))], axis=2).clip(0, 255).astype(np.uint8)
    fov = np.ones((32, 32), bool)
    fov[:, 16:] = False
    image[:, 16:] = 0  # outside the FOV: must not enter the statistics
    sampler = PatchSampler([image], [fov], [fov], input_size=32, standardize=True, seed=0)
    patch = sampler.sample(1).image[0].numpy()  # the whole image (one position)
    inside = patch[:, :, :16].reshape(3, -1)
    np.testing.assert_allclose(inside.mean(1), 0.0, atol=1e-4)
    np.testing.assert_allclose(inside.std(1), 1.0, atol=1e-3)
    plain = PatchSampler([image], [fov], [fov], input_size=32, seed=0).sample(1).image[0]
    np.testing.assert_allclose(plain.numpy(), np.moveaxis(image, 2, 0) / 255.0, atol=1e-6)


def test_float_and_uint16_images_are_scaled() -> None:
    f = np.random.default_rng(0).random((20, 20)).astype(np.float64)
    u16 = (f * 65535).astype(np.uint16)
    mask = f > 0.5
    a = PatchSampler([f], [mask], input_size=20, seed=0).sample(1).image
    b = PatchSampler([u16], [mask], input_size=20, seed=0).sample(1).image
    np.testing.assert_allclose(a[0, 0].numpy(), f, atol=1e-6)
    np.testing.assert_allclose(b[0, 0].numpy(), f, atol=1e-4)


def test_transform_is_applied_before_the_centre_crop() -> None:
    h = w = 30
    calls: list[tuple] = []

    def flip(image, target, valid, *, rng):  # noqa: ANN001, ANN202
        calls.append((image.shape, image.dtype, target.shape, target.dtype, valid.dtype, rng))
        return image[:, ::-1], target[:, ::-1], valid[:, ::-1]

    image = _rgb(h, w)
    sampler = PatchSampler([image], [_coords(h, w)], input_size=12, output_size=4,
                           transform=flip, seed=3)
    batch = sampler.sample(5)
    assert len(calls) == 5
    assert calls[0][:5] == ((12, 12, 3), np.float32, (12, 12), np.int64, np.bool_)
    assert calls[0][5] is sampler.rng
    for k in range(5):
        target = batch.target[k].numpy()
        # flipped labels: codes now decrease along x
        assert (np.diff(target % w, axis=1) == -1).all()
        y0, x_right = divmod(int(target[0, 0]), w)  # top-left now holds the window's right end
        x0 = x_right - 3
        ref = np.pad(image, ((12, 12), (12, 12), (0, 0)), mode="reflect")
        crop = ref[12 + y0 - 4 : 12 + y0 + 8, 12 + x0 - 4 : 12 + x0 + 8][:, ::-1]
        np.testing.assert_allclose(batch.image[k].numpy(), np.moveaxis(crop, 2, 0) / 255,
                                   atol=1e-6)
    grey = PatchSampler([image[..., 0]], [_coords(h, w)], input_size=12, transform=flip, seed=3)
    grey.sample(1)
    assert calls[-1][0] == (12, 12)  # grey images reach the transform as (h, w)

    def shrink(image, target, valid, *, rng):  # noqa: ANN001, ANN202
        return image[1:], target[1:], valid[1:]

    bad = PatchSampler([image], [_coords(h, w)], input_size=12, transform=shrink)
    with pytest.raises(ValueError, match="transform changed the patch shapes"):
        bad.sample(1)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"images": []}, "at least one image"),
        ({"targets": []}, "expected one of each per image"),
        ({"fovs": [np.ones((20, 20), bool)] * 2}, "expected one of each per image"),
        ({"targets": [np.zeros((20, 21), bool)]}, r"target 0 has shape \(20, 21\)"),
        ({"fovs": [np.ones((19, 20), bool)]}, r"FOV mask 0 has shape \(19, 20\)"),
        ({"targets": [np.zeros((20, 20), np.float32)]}, "dtype float32: expected bool or integer"),
        ({"images": [np.zeros((20, 20), bool)]}, "images must be uint8, uint16 or float"),
        ({"output_size": 12}, r"output_size \(12, 12\) exceeds input_size \(8, 8\)"),
        ({"input_size": 0}, "input_size must be a positive int"),
        ({"input_size": 30, "output_size": 24}, "smaller than the 24x24 target window.*overhang"),
        ({"border": "wrap"}, "border='wrap' is not valid; expected one of inside, overhang"),
        ({"min_valid_fraction": 1.5}, r"min_valid_fraction must be in \[0, 1\]"),
    ],
)
def test_invalid_arguments(kwargs: dict, pattern: str) -> None:
    args = {"images": [_rgb(20, 20)], "targets": [np.zeros((20, 20), bool)], "fovs": None,
            "input_size": 8}
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        PatchSampler(args.pop("images"), args.pop("targets"), args.pop("fovs"), **args)


def test_channel_mismatch_and_bad_n() -> None:
    with pytest.raises(ValueError, match="image 1 has 1 channels, image 0 has 3"):
        PatchSampler([_rgb(20, 20), np.zeros((20, 20), np.uint8)], [np.zeros((20, 20), bool)] * 2,
                     input_size=8)
    sampler = PatchSampler([_rgb(20, 20)], [np.zeros((20, 20), bool)], input_size=8)
    with pytest.raises(ValueError, match="n must be >= 1"):
        sampler.sample(0)
    assert "input_size=(8, 8)" in repr(sampler)


@pytest.mark.parametrize("with_transform", [False, True])
def test_weight_maps_travel_with_the_target(with_transform) -> None:  # noqa: ANN001
    """A weight map equal to the target's code must come out equal to the target patch."""
    from unet_core.augment import make_augmentation

    h, w = 40, 36
    codes = _coords(h, w)
    sampler = PatchSampler(
        [_rgb(h, w)], [codes], weights=[codes.astype(np.float32)], input_size=20,
        output_size=8, seed=3,
        transform=make_augmentation("paper", sigma=3.0) if with_transform else None,
    )
    batch = sampler.sample(16)
    assert batch.weight is not None and batch.weight.shape == (16, 8, 8)
    assert batch.weight.dtype == torch.float32
    assert torch.equal(batch.weight, batch.target.float())


def test_weight_maps_are_validated() -> None:
    image, target = _rgb(20, 20), np.zeros((20, 20), bool)
    with pytest.raises(ValueError, match="1 images and 2 weight maps"):
        PatchSampler([image], [target], weights=[target, target], input_size=8)
    with pytest.raises(ValueError, match="weight map 0 has shape"):
        PatchSampler([image], [target], weights=[np.ones((5, 5))], input_size=8)
    with pytest.raises(ValueError, match="finite and non-negative"):
        PatchSampler([image], [target], weights=[-np.ones((20, 20))], input_size=8)
    assert PatchSampler([image], [target], input_size=8).sample(2).weight is None


def _identity(image, *masks, rng=None):  # noqa: ANN001, ANN202
    return (image.copy(), *(m.copy() for m in masks))


@pytest.mark.parametrize(("in_size", "out_size", "context"), [(12, 12, 5), (20, 6, 9), (9, 4, 3)])
def test_context_gives_the_transform_real_image_around_the_window(in_size, out_size,
                                                                  context) -> None:  # noqa: ANN001
    """With ``context``, an identity transform yields exactly the patches of a sampler
    without it (same positions, same crops), and the window the transform sees is the input
    window with ``context`` pixels of the (mirrored) image on each side."""
    h, w = 30, 27
    image, fov = _rgb(h, w), np.ones((h, w), bool)
    fov[:3] = False
    seen: list[np.ndarray] = []

    def spy(img, *masks, rng=None):  # noqa: ANN001, ANN202
        seen.append(img.copy())
        return _identity(img, *masks)

    plain = PatchSampler([image], [_coords(h, w)], [fov], input_size=in_size,
                         output_size=out_size, seed=3, transform=_identity)
    wide = PatchSampler([image], [_coords(h, w)], [fov], input_size=in_size,
                        output_size=out_size, seed=3, transform=spy, context=context)
    a, b = plain.sample(12), wide.sample(12)
    for name in ("image", "target", "valid"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert seen[0].shape == (in_size + 2 * context, in_size + 2 * context, 3)
    centre = seen[0][context:context + in_size, context:context + in_size]
    np.testing.assert_array_equal(np.moveaxis(centre, 2, 0), a.image[0].numpy())


def test_context_needs_a_transform_and_a_count() -> None:
    image = _rgb(20, 20)
    with pytest.raises(ValueError, match="context is for a transform"):
        PatchSampler([image], [_coords(20, 20)], input_size=8, context=4)
    with pytest.raises(ValueError, match="context must be an integer >= 0"):
        PatchSampler([image], [_coords(20, 20)], input_size=8, transform=_identity, context=-1)
