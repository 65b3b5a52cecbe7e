"""Losses (paper Sec. 3, Eq. 1, and modern alternatives): values, masks, gradients, factory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unet_core.losses import (
    LOSS_NAMES,
    bce,
    bce_dice,
    foreground_logit,
    foreground_probability,
    make_loss,
    soft_dice,
    weighted_cross_entropy,
)

SHAPES = [(1, 5, 7), (3, 4, 4), (2, 9, 6)]  # (N, H, W)


def _batch(shape, channels, *, target_channel_dim=False):
    n, h, w = shape
    logits = torch.randn(n, channels, h, w, dtype=torch.float64)
    target = torch.randint(0, max(channels, 2), (n, h, w))
    if target_channel_dim:
        target = target[:, None]
    return logits, target


def _mask(shape, p=0.6):
    mask = torch.rand(shape) < p
    mask.view(-1)[0] = True  # at least one included pixel
    return mask


# -- weighted cross-entropy --------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("channels", [2, 3, 5])
@pytest.mark.parametrize("target_channel_dim", [False, True])
def test_weighted_ce_with_unit_weights_is_cross_entropy(shape, channels, target_channel_dim):
    logits, target = _batch(shape, channels, target_channel_dim=target_channel_dim)
    flat_target = target[:, 0] if target_channel_dim else target
    expected = F.cross_entropy(logits, flat_target)
    assert torch.allclose(weighted_cross_entropy(logits, target), expected)
    ones = torch.ones(shape, dtype=torch.float64)
    assert torch.allclose(weighted_cross_entropy(logits, target, weight_map=ones), expected)
    assert torch.allclose(weighted_cross_entropy(logits, target, mask=torch.ones(shape)), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_mask_is_the_mean_over_included_pixels_of_the_batch(shape):
    logits, target = _batch(shape, 2)
    mask = _mask(shape)
    garbage = torch.where(mask, target, torch.full_like(target, 255))  # "ignore" label outside
    expected = F.cross_entropy(logits, garbage, ignore_index=255)  # pooled mean over the batch
    assert torch.allclose(weighted_cross_entropy(logits, garbage, mask=mask), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_weights_scale_the_loss(shape):
    logits, target = _batch(shape, 2)
    base = weighted_cross_entropy(logits, target)
    for c in (0.5, 3.0, 10.0):
        w = torch.full(shape, c, dtype=torch.float64)
        assert torch.allclose(weighted_cross_entropy(logits, target, weight_map=w), c * base)
    w = torch.rand(shape, dtype=torch.float64) * 10
    mask = _mask(shape)
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    expected = (w * per_pixel)[mask].sum() / mask.sum()  # Eq. 1 over M, divided by |M|
    got = weighted_cross_entropy(logits, target, weight_map=w, mask=mask)
    assert torch.allclose(got, expected)


def test_mean_is_the_papers_sum_rescaled():
    """Without a mask the mean differs from the paper's sum by the constant N * H * W."""
    logits, target = _batch((2, 6, 5), 2)
    w = torch.rand(2, 6, 5, dtype=torch.float64) + 0.5
    summed = (w * F.cross_entropy(logits, target, reduction="none")).sum()
    assert torch.allclose(weighted_cross_entropy(logits, target, w) * 60, summed)


def test_one_channel_sigmoid_equals_two_channel_softmax():
    z = torch.randn(2, 1, 6, 5, dtype=torch.float64)
    two = torch.cat([torch.zeros_like(z), z], dim=1)
    target = torch.randint(0, 2, (2, 6, 5))
    w = torch.rand(2, 6, 5, dtype=torch.float64)
    mask = _mask((2, 6, 5))
    for kwargs in ({}, {"weight_map": w}, {"weight_map": w, "mask": mask}):
        one_ch = weighted_cross_entropy(z, target, **kwargs)
        two_ch = weighted_cross_entropy(two, target, **kwargs)
        assert torch.allclose(one_ch, two_ch)
        # bce on two-channel logits is the same loss (binary target, no pos_weight)
        assert torch.allclose(bce(two, target, kwargs.get("mask"), weight_map=kwargs.get(
            "weight_map")), two_ch)


def test_targets_may_be_bool_float_or_channel_dim():
    logits, target = _batch((2, 4, 4), 2)
    ref = weighted_cross_entropy(logits, target)
    assert torch.allclose(weighted_cross_entropy(logits, target.bool()), ref)
    assert torch.allclose(weighted_cross_entropy(logits, target.float()[:, None]), ref)


# -- channel conventions -----------------------------------------------------------------------
def test_foreground_probability_both_conventions():
    a = torch.randn(3, 2, 5, 4, dtype=torch.float64) * 5
    assert torch.allclose(foreground_probability(a), torch.softmax(a, dim=1)[:, 1])
    z = torch.randn(3, 1, 5, 4, dtype=torch.float64)
    assert torch.allclose(foreground_probability(z), torch.sigmoid(z[:, 0]))
    assert foreground_probability(z).shape == (3, 5, 4)
    huge = torch.tensor([[[[1e4]], [[-1e4]]]])  # no overflow
    assert torch.isfinite(foreground_probability(huge)).all()
    with pytest.raises(ValueError, match="1 \\(sigmoid\\) or 2 \\(softmax\\)"):
        foreground_logit(torch.randn(1, 3, 2, 2))


# -- bce, dice ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pos_weight", [None, 4.0])
def test_bce_matches_torch(pos_weight):
    z = torch.randn(2, 1, 7, 5, dtype=torch.float64) * 4
    y = (torch.rand(2, 7, 5) < 0.3).double()
    pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(z[:, 0], y, pos_weight=pw)
    assert torch.allclose(bce(z, y, pos_weight=pos_weight), expected)
    soft = torch.rand(2, 7, 5, dtype=torch.float64)  # soft targets are allowed
    expected = F.binary_cross_entropy_with_logits(z[:, 0], soft, pos_weight=pw)
    assert torch.allclose(bce(z, soft, pos_weight=pos_weight), expected)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_of_a_perfect_prediction_is_zero(channels, per_image, smooth):
    y = torch.rand(3, 8, 8) < 0.4
    z = (y.double() * 2 - 1) * 40  # sigmoid(+-40) is 1 or 0 to 1e-17
    logits = z[:, None] if channels == 1 else torch.stack([-z / 2, z / 2], dim=1)
    loss = soft_dice(logits, y, smooth=smooth, per_image=per_image)
    assert 0 <= loss.item() < 1e-9
    assert soft_dice(-logits, y, smooth=0.0).item() > 0.99  # and the inverse is the worst


@pytest.mark.parametrize("per_image", [False, True])
def test_dice_matches_its_formula(per_image):
    logits = torch.randn(2, 1, 5, 6, dtype=torch.float64)
    y = (torch.rand(2, 5, 6) < 0.5).double()
    mask = _mask((2, 5, 6))
    p = torch.sigmoid(logits[:, 0]) * mask
    yy = y * mask
    dims = (1, 2) if per_image else (0, 1, 2)
    dice = (2 * (p * yy).sum(dims) + 1) / (p.sum(dims) + yy.sum(dims) + 1)
    expected = (1 - dice).mean()
    assert torch.allclose(soft_dice(logits, y, mask, per_image=per_image), expected)


def test_bce_dice_is_the_sum():
    logits = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    y = torch.rand(2, 6, 6) < 0.3
    mask = _mask((2, 6, 6))
    expected = bce(logits, y, mask, pos_weight=2.0) + soft_dice(logits, y, mask, smooth=0.5)
    assert torch.allclose(bce_dice(logits, y, mask, pos_weight=2.0, smooth=0.5), expected)


# -- masks and gradients, every loss and convention --------------------------------------------
CASES = [(name, c) for name in LOSS_NAMES for c in (1, 2)] + [("weighted_ce", 4)]


@pytest.mark.parametrize(("name", "channels"), CASES)
@pytest.mark.parametrize("shape", SHAPES)
def test_masked_pixels_have_zero_loss_and_zero_gradient(name, channels, shape):
    loss_fn = make_loss(name, out_channels=channels)
    logits, target = _batch(shape, channels)
    mask = _mask(shape)
    target = torch.where(mask, target, torch.full_like(target, 255))  # garbage outside
    weight = torch.rand(shape, dtype=torch.float64) + 0.5
    weight = torch.where(mask, weight, torch.full_like(weight, float("nan")))
    kwargs = {} if name == "dice" else {"weight_map": weight}
    logits.requires_grad_(True)
    loss = loss_fn(logits, target, mask, **kwargs)
    loss.backward()
    grad = logits.grad
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    outside = ~mask[:, None].expand_as(grad)
    assert (grad[outside] == 0).all()
    assert (grad[~outside] != 0).any()
    # Changing the logits outside the mask changes nothing.
    with torch.no_grad():
        other = torch.where(outside, torch.randn_like(logits) * 100, logits)
        assert torch.equal(loss_fn(other, target, mask, **kwargs), loss.detach())


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_everything_masked_gives_zero_not_nan(name):
    logits = torch.randn(2, 2, 3, 3, requires_grad=True)
    target = torch.randint(0, 2, (2, 3, 3))
    loss = make_loss(name)(logits, target, torch.zeros(2, 3, 3, dtype=torch.bool))
    loss.backward()
    if name in ("dice", "bce_dice"):  # 1 - (0 + s) / (0 + s) = 0 as well
        assert loss.item() == pytest.approx(0.0)
    else:
        assert loss.item() == 0.0
    assert (logits.grad == 0).all()


@pytest.mark.parametrize(("name", "channels"), CASES)
def test_gradients_finite_for_extreme_logits(name, channels):
    logits, target = _batch((2, 5, 5), channels)
    logits = (logits.sign() * 1e4).float().requires_grad_(True)
    loss = make_loss(name)(logits, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()


# -- factory and validation --------------------------------------------------------------------
def test_make_loss_names_and_errors():
    logits, target = _batch((2, 4, 4), 2)
    assert torch.allclose(make_loss("weighted_ce")(logits, target),
                          weighted_cross_entropy(logits, target))
    assert torch.allclose(make_loss("bce", pos_weight=3)(logits, target),
                          bce(logits, target, pos_weight=3.0))
    assert torch.allclose(make_loss("dice", smooth=0.1, per_image=True)(logits, target),
                          soft_dice(logits, target, smooth=0.1, per_image=True))
    with pytest.raises(ValueError, match="weighted_ce, bce, dice, bce_dice"):
        make_loss("focal")
    with pytest.raises(ValueError, match="smooth"):
        make_loss("bce", smooth=1.0)
    with pytest.raises(ValueError, match="out_channels"):
        make_loss("dice", out_channels=3)
    with pytest.raises(ValueError, match="configured for out_channels=1"):
        make_loss("bce", out_channels=1)(logits, target)
    with pytest.raises(ValueError, match="weight_map"):
        make_loss("dice")(logits, target, weight_map=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="pos_weight"):
        make_loss("bce", pos_weight=0)
    assert make_loss("bce_dice").probability(logits).shape == (2, 4, 4)


def test_input_validation_names_the_argument():
    logits, target = _batch((2, 4, 4), 2)
    with pytest.raises(ValueError, match="target"):
        weighted_cross_entropy(logits, target[:, :3])
    with pytest.raises(ValueError, match="mask"):
        weighted_cross_entropy(logits, target, mask=torch.ones(2, 4, 5))
    with pytest.raises(ValueError, match="weight_map"):
        weighted_cross_entropy(logits, target, weight_map=-torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="class indices"):
        weighted_cross_entropy(logits, target + 2)
    with pytest.raises(ValueError, match="mask"):
        weighted_cross_entropy(logits, target, mask=torch.full((2, 4, 4), 0.5))
    with pytest.raises(ValueError, match="target"):
        bce(logits, target.float() * 2)
    with pytest.raises(ValueError, match="logits"):
        weighted_cross_entropy(logits[0], target)
    with pytest.raises(TypeError, match="target"):
        weighted_cross_entropy(logits, target.numpy())
