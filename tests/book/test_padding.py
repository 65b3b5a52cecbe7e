"""Valid versus same padding, measured (unet_book.padding; chapter 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet_book.padding import (
    activation_bytes,
    border_effect,
    mirror_pad,
    per_tile_max,
    predict_whole,
    same_context,
    skip_connections,
    train_briefly,
)
from unet_core.model import UNet, center_crop
from unet_core.tiling import plan_axis, predict_tiled


# -- mirror_pad ----------------------------------------------------------------------------------
def test_mirror_pad_matches_numpy_reflect_for_arrays_and_tensors():
    a = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7)
    expected = np.pad(a, ((0, 0), (3, 3), (3, 3)), mode="reflect")
    assert np.array_equal(mirror_pad(a, 3), expected)
    assert torch.equal(mirror_pad(torch.from_numpy(a), 3), torch.from_numpy(expected))


def test_mirror_pad_per_axis_and_channels_last():
    pic = np.arange(4 * 6 * 3).reshape(4, 6, 3)
    out = mirror_pad(pic, (1, 2), (3, 0), axes=(0, 1))
    assert out.shape == (4 + 1 + 3, 6 + 2, 3)
    assert np.array_equal(out, np.pad(pic, ((1, 3), (2, 0), (0, 0)), mode="reflect"))


def test_mirror_pad_beyond_the_image_is_periodic_and_negative_padding_fails():
    a = np.arange(3.0)[None, None, :].repeat(2, axis=1)
    out = mirror_pad(a, 0, (0, 6))
    assert out[0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0]
    with pytest.raises(ValueError, match="non-negative"):
        mirror_pad(a, -1)


# -- predict_whole -------------------------------------------------------------------------------
def test_predict_whole_same_does_not_depend_on_extra_context(same_net):
    image = torch.randn(3, 40, 56)
    ctx = same_context(same_net)
    assert ctx % 2**same_net.depth == 0
    a = predict_whole(same_net, image)
    b = predict_whole(same_net, image, context=ctx + 2 * 2**same_net.depth)
    assert a.shape == (2, 40, 56)
    assert (a - b).abs().max() < 1e-4
    # Too little context lets the zero padding reach the image.
    c = predict_whole(same_net, image, context=0)
    assert (a - c).abs().max() > 1e-3
    with pytest.raises(ValueError, match="multiple of 2\\*\\*depth"):
        predict_whole(same_net, image, context=3)


def test_predict_whole_rejects_wrong_channels(valid_net):
    with pytest.raises(ValueError, match="\\(3, H, W\\)"):
        predict_whole(valid_net, torch.zeros(1, 20, 20))


# -- border_effect -------------------------------------------------------------------------------
def test_border_effect_is_zero_for_valid_padding(valid_net):
    image = torch.randn(3, valid_net.valid_input_size(130), valid_net.valid_input_size(130))
    tile = valid_net.valid_input_size(70)
    effect = border_effect(valid_net, image, tile)
    out = valid_net.output_size(tile)
    assert effect.n_tiles >= 4
    assert effect.count.sum() == effect.n_tiles * out * out
    assert len(effect.distance) == (out + 1) // 2
    assert effect.relative_max.max() < 1e-5
    assert effect.reach(1e-4) == 0


def test_border_effect_of_same_padding_is_largest_at_the_border_and_bounded(same_net):
    image = torch.randn(3, 192, 192)
    effect = border_effect(same_net, image, 64, max_tiles=4)
    assert effect.relative_max[0] > 1e-2
    assert effect.relative_mean[0] > effect.relative_mean[-1]
    # Beyond half the receptive field the border cannot be seen: the discrepancy vanishes.
    assert 0 < effect.reach(1e-4) <= same_context(same_net)
    assert effect.scale > 0


def test_border_effect_checks_sizes(same_net, valid_net):
    with pytest.raises(ValueError, match="multiples of 2\\*\\*depth"):
        border_effect(same_net, torch.randn(3, 160, 160), 60)
    with pytest.raises(ValueError, match="too small"):
        border_effect(same_net, torch.randn(3, 64, 64), 64)
    with pytest.raises(ValueError, match="not a valid input size"):
        border_effect(valid_net, torch.randn(3, 101, 101), valid_net.valid_input_size(70))


# -- per_tile_max / misaligned tiles --------------------------------------------------------------
def test_misaligned_tiles_differ_except_where_the_phase_wraps_around(valid_net):
    # depth 3: tiles of 100 give 12-pixel outputs; 12 mod 8 = 4, so naive tiles alternate
    # between the right pooling phase (even tile index) and the wrong one (odd index).
    image = torch.randn(3, 50, 50)
    aligned = predict_tiled(valid_net, image, 100)
    naive = predict_tiled(valid_net, image, 100, aligned=False)
    plan = plan_axis(valid_net, 50, 100, aligned=False)
    assert plan.stride == 12
    table = per_tile_max(naive - aligned, plan, plan)
    assert table.shape == (len(plan.starts), len(plan.starts))
    even = np.arange(len(plan.starts)) % 2 == 0
    assert table[np.ix_(even, even)].max() < 1e-4
    assert table[np.ix_(~even, ~even)].min() > 1e-3


def test_per_tile_max_clips_windows_to_the_image(valid_net):
    plan = plan_axis(valid_net, 30, 100)
    diff = np.zeros((2, 30, 30))
    diff[1, 29, 29] = -5.0
    table = per_tile_max(diff, plan, plan)
    assert table[-1, -1] == 5.0 and table[0, 0] == 0.0


# -- skip_connections ----------------------------------------------------------------------------
def test_skip_connections_record_the_crop_and_copy(valid_net):
    x = torch.randn(3, valid_net.valid_input_size(100), valid_net.valid_input_size(100))
    valid_net.train()
    skips = skip_connections(valid_net, x)
    assert valid_net.training  # mode restored
    valid_net.eval()
    assert [s.level for s in skips] == list(range(valid_net.depth))
    for s in skips:
        assert s.encoder.shape[0] == s.upsampled.shape[0] == 4 * 2**s.level
        _, hd, wd = s.upsampled.shape
        expected = center_crop(s.encoder[None], hd, wd)[0]
        assert torch.equal(s.cropped, expected)
        assert s.top == (s.encoder.shape[1] - hd) // 2 > 0
    # The crop shrinks towards the bottom of the U (paper Fig. 1: 88, 40, 16, 4 for depth 4).
    assert [s.top for s in skips] == sorted((s.top for s in skips), reverse=True)


def test_skip_connections_same_padding_crops_nothing(same_net):
    skips = skip_connections(same_net, torch.randn(3, 32, 32))
    assert all(s.top == s.left == 0 for s in skips)
    with pytest.raises(ValueError, match="one \\(C, H, W\\)"):
        skip_connections(same_net, torch.randn(1, 3, 32, 32))


def test_paper_crops_are_88_40_16_4():
    torch.manual_seed(0)
    net = UNet(1, 2, 2, 4)
    assert [s.top for s in skip_connections(net, torch.randn(1, 572, 572))] == [88, 40, 16, 4]


# -- activation_bytes ----------------------------------------------------------------------------
def test_activation_bytes_of_the_paper_net():
    net = UNet(3, 2, 64, 4)
    sizes = activation_bytes(net, 572)
    assert sizes["input"] == 3 * 572 * 572 * 4
    assert sizes["largest_map"] == 64 * 570 * 570 * 4  # first 3x3 convolution
    assert sizes["all_layer_outputs"] > 5 * sizes["largest_map"]
    assert next(net.parameters()).device.type == "cpu"  # the model itself is untouched
    # On a wider tile the top concatenation (128 channels, 584 x 904) is the largest map.
    bigger = activation_bytes(net, 764, 1084)
    assert bigger["largest_map"] == max(64 * 762 * 1082, 128 * 584 * 904) * 4


# -- train_briefly -------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_train_briefly_learns_a_trivial_task(padding):
    torch.manual_seed(3)
    net = UNet(1, 2, 4, 2, padding)
    coarse = torch.randn(1, 1, 10, 10)
    image = torch.nn.functional.interpolate(coarse, size=(80, 80), mode="bilinear")[0]
    target = (image[0] > 0).long()
    crop = net.valid_input_size(40) if padding == "valid" else 40
    losses = train_briefly(net, image, target, steps=30, crop=crop, lr=1e-2, seed=0)
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert not net.training


def test_train_briefly_checks_its_arguments(valid_net, same_net):
    image, target = torch.randn(3, 64, 64), torch.zeros(64, 64, dtype=torch.long)
    with pytest.raises(ValueError, match="target must be"):
        train_briefly(same_net, image, target[:10], steps=1, crop=32)
    with pytest.raises(ValueError, match="crop"):
        train_briefly(same_net, image, target, steps=1, crop=30)
    with pytest.raises(ValueError, match="crop"):
        train_briefly(valid_net, image, target, steps=1, crop=45)
    with pytest.raises(ValueError, match="larger than the image"):
        train_briefly(same_net, image, target, steps=1, crop=80)
