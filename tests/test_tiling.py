"""Overlap-tile inference (paper Sec. 2, Fig. 2): invariance, mirroring, seams, memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_core import UNet
from unet_core.tiling import hann_window, mirror_indices, plan_axis, predict_tiled


def test_mirror_indices_reflect_without_repeating_the_edge():
    assert mirror_indices(-3, 10, 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2]
    # Far beyond the image the reflection repeats periodically (period 2 * (n - 1)).
    far = mirror_indices(-100, 300, 4)
    assert far.min() == 0 and far.max() == 3
    assert np.array_equal(far[:6], far[6:12])
    assert mirror_indices(-5, 7, 1).tolist() == [0] * 7


def test_mirror_indices_match_numpy_reflect():
    a = np.arange(13)
    padded = np.pad(a, 40, mode="reflect")
    assert np.array_equal(a[mirror_indices(-40, 13 + 80, 13)], padded)


@pytest.mark.parametrize("size", [9, 150, 387, 388, 389])
def test_plan_covers_image_on_pooling_grid(size):
    net = UNet(1, 2, 64, 4, "valid")
    plan = plan_axis(net, size, 572)
    assert plan.out == 388 and plan.crop == 92
    assert plan.stride % 16 == 0 and plan.stride <= plan.out
    assert all((s + 92) % 16 == 0 for s in plan.starts)  # one pooling grid for all tiles
    covered = set()
    for s in plan.starts:
        covered.update(range(s + plan.crop, s + plan.crop + plan.out))
    assert set(range(size)) <= covered


def _one_pass(net: UNet, image: torch.Tensor) -> torch.Tensor:
    """One forward pass over the whole image, mirrored by the net's margin on every side (and
    on to a valid input size), cropped to the image: the same pooling grid as the tiles."""
    _, h, w = image.shape
    m = net.margin
    rows = mirror_indices(-m, net.valid_input_size(h + 2 * m), h)
    cols = mirror_indices(-m, net.valid_input_size(w + 2 * m), w)
    with torch.no_grad():
        return net(image[:, rows][:, :, cols][None])[0, :, :h, :w]


@pytest.mark.parametrize(
    "shape, tile_sizes, grid",
    [
        ((70, 70), (100,), (9, 9)),  # square
        ((150, 97), (100, 108, 140, 260), (19, 12)),  # non-square; down to one tile per axis
        ((9, 13), (108,), (1, 1)),  # smaller than the margin: the mirroring repeats the image
    ],
    ids=["square", "tile-sizes", "tiny"],
)
def test_tiled_equals_one_pass_over_the_mirrored_image(valid_net, shape, tile_sizes, grid):
    """Valid padding: tiled logits equal one pass over the whole mirrored image, whatever the
    tile size (so they do not depend on it). Same padding is not exact (its tiles see zero
    padding): see test_same_mode_blending_removes_seams."""
    image = torch.rand(3, *shape)
    whole = _one_pass(valid_net, image)
    assert whole.shape == (2, *shape)
    # The first tile size cuts the image into this grid of tiles.
    assert tuple(len(plan_axis(valid_net, n, tile_sizes[0]).starts) for n in shape) == grid
    for tile in tile_sizes:
        tiled = predict_tiled(valid_net, image, tile, batch_size=3)
        assert tiled.shape == (2, *shape)
        assert (tiled - whole).abs().max() < 1e-4, (tile, (tiled - whole).abs().max())


def test_unaligned_tiles_differ(valid_net):
    """Advancing by the output size breaks the pooling grid: the result then depends on it."""
    image = torch.rand(3, 150, 97)
    ref = predict_tiled(valid_net, image, 260)
    naive = predict_tiled(valid_net, image, 100, aligned=False)
    assert (naive - ref).abs().max() > 1e-2


@pytest.mark.parametrize("shape", [(9, 13), (1, 1), (2, 40), (33, 17)])
def test_tiny_and_non_square_images(valid_net, same_net, shape):
    image = torch.rand(3, *shape)
    for net, tile in ((valid_net, 108), (same_net, 32)):
        out = predict_tiled(net, image, tile)
        assert out.shape == (2, *shape)
        assert torch.isfinite(out).all()


def test_same_mode_blending_removes_seams(same_net):
    """Compare with one pass over the whole (mirrored) image: hard tile borders carry large
    zero-padding errors (seams); blended overlapping tiles do not."""
    image = torch.rand(3, 96, 96)
    idx = mirror_indices(-16, 128, 96)
    with torch.no_grad():
        ref = same_net(image[:, idx][:, :, idx][None])[0, :, 16:112, 16:112]
    hard = (predict_tiled(same_net, image, 32, overlap=0) - ref).abs().mean(dim=(0, 1))
    blended = (predict_tiled(same_net, image, 32, overlap=16) - ref).abs().mean(dim=(0, 1))
    seams = [31, 32, 63, 64]  # columns beside the borders of the non-overlapping tiles
    assert hard[seams].mean() > 1.8 * hard.median()  # the seams are there without blending
    assert blended[seams].max() < 0.6 * hard[seams].mean()  # and gone with it
    assert blended.mean() < hard.mean()


def test_hann_window_positive_and_peaked():
    w = hann_window(32)
    assert w.min() > 0 and w.argmax() in (15, 16)
    assert torch.allclose(w, w.flip(0))


@pytest.mark.parametrize("tta", ["flips", "d4"])
def test_tta_is_equivariant(valid_net, tta):
    """With TTA the prediction of a flipped image is the flipped prediction."""
    image = torch.rand(3, 40, 52)
    out = predict_tiled(valid_net, image, 108, tta=tta)
    out_flipped = predict_tiled(valid_net, image.flip(-1), 108, tta=tta)
    assert torch.allclose(out_flipped.flip(-1), out, atol=1e-4)
    plain = predict_tiled(valid_net, image, 108)
    assert not torch.allclose(plain, out, atol=1e-4)


def test_memory_bounded_by_tile(valid_net):
    """The model only ever sees tile-sized batches, whatever the image size."""
    seen: list[tuple[int, ...]] = []
    hook = valid_net.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
    try:
        predict_tiled(valid_net, torch.rand(3, 700, 500), 260, batch_size=2)
    finally:
        hook.remove()
    assert seen and all(s[0] <= 2 and s[2:] == (260, 260) for s in seen)
    plan_y, plan_x = plan_axis(valid_net, 700, 260), plan_axis(valid_net, 500, 260)
    assert sum(s[0] for s in seen) == len(plan_y.starts) * len(plan_x.starts)


def test_4000_pixel_plan_is_tile_bounded():
    net = UNet(3, 2, 64, 4, "valid")
    plan = plan_axis(net, 4000, 572)
    assert plan.stride == 384 and len(plan.starts) == 11


def test_restores_training_mode(valid_net):
    valid_net.train()
    predict_tiled(valid_net, torch.rand(3, 20, 20), 108)
    assert valid_net.training
    valid_net.eval()


def test_accepts_numpy(valid_net):
    image = np.random.default_rng(0).random((3, 20, 24), dtype=np.float32)
    out = predict_tiled(valid_net, image, 108)
    assert out.shape == (2, 20, 24)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tile_size": 101}, "tile_size 101 is not valid.*100 or 108"),
        ({"tile_size": 92}, "use tile_size >= 100"),
        ({"tta": "rot"}, "none, flips, d4"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments(valid_net, kwargs, match):
    args = {"tile_size": 108} | kwargs
    with pytest.raises(ValueError, match=match):
        predict_tiled(valid_net, torch.rand(3, 20, 20), **args)


def test_bad_image(valid_net, same_net):
    with pytest.raises(ValueError, match="channels"):
        predict_tiled(valid_net, torch.rand(1, 20, 20), 108)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        predict_tiled(valid_net, torch.rand(20, 20), 108)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 8"):
        predict_tiled(same_net, torch.rand(3, 20, 20), 30)


def test_bfloat16_autocast_close_to_fp32(valid_net):
    image = torch.rand(3, 30, 30)
    a = predict_tiled(valid_net, image, 108)
    b = predict_tiled(valid_net, image, 108, autocast_dtype=torch.bfloat16)
    assert b.dtype == torch.float32
    assert (a - b).abs().max() < 0.05 * a.abs().max() + 1e-3
