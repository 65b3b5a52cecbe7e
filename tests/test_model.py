"""Shapes, sizes, parameter counts and errors of the U-Net (paper Sec. 2, Fig. 1)."""

from __future__ import annotations

import pytest
import torch

from unet_core import UNet, count_conv_layers, count_parameters, receptive_field
from unet_core.model import center_crop


def test_paper_network_facts():
    net = UNet(1, 2, 64, 4, "valid")
    assert count_parameters(net) == 31_030_658
    assert count_conv_layers(net) == 23
    assert net.output_size(572) == 388
    assert net.margin == 92
    assert receptive_field(net) == 204


def test_paper_forward_572_to_388():
    net = UNet(1, 2, 64, 4, "valid").eval()
    with torch.no_grad():
        y = net(torch.randn(1, 1, 572, 572))
    assert y.shape == (1, 2, 388, 388)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("base", [2, 4])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_shapes_match_output_size(depth, base, padding, batch_norm):
    net = UNet(3, 5, base, depth, padding, batch_norm=batch_norm).eval()
    h = net.valid_input_size(37)
    w = net.valid_input_size(h + 2**depth + 1)  # non-square
    with torch.no_grad():
        y = net(torch.randn(2, 3, h, w))
    assert y.shape == (2, 5, net.output_size(h), net.output_size(w))
    if padding == "same":
        assert (y.shape[2], y.shape[3]) == (h, w)
        assert h % 2**depth == 0
    else:
        assert net.output_size(h) == h - 2 * net.margin


@pytest.mark.parametrize("depth", [0, 1, 2, 3, 4, 5])
def test_valid_sizes_follow_the_closed_form(depth):
    """Valid inputs are 2**d * k + 4 * (2**d - 1) with a positive output."""
    net = UNet(1, 1, 2, depth, "valid")
    sizes = [n for n in range(1, 700) if net.is_valid_size(n)]
    period = 2**depth
    offset = 4 * (2**depth - 1) % period
    assert all((n - offset) % period == 0 for n in sizes)
    assert all(net.output_size(n) >= 1 for n in sizes)
    assert net.valid_input_size(sizes[0] - 1) == sizes[0]
    assert all(sizes[i + 1] - sizes[i] == period for i in range(len(sizes) - 1))
    if depth > 0:
        assert net.output_size(sizes[1]) - net.output_size(sizes[0]) == period


@pytest.mark.parametrize(
    "padding,bad,near",
    [("valid", 570, "556 or 572"), ("valid", 100, "188"), ("same", 500, "496 or 512")],
)
def test_bad_size_raises_value_error_naming_nearest(padding, bad, near):
    net = UNet(1, 2, 4, 4, padding)
    with pytest.raises(ValueError, match=near):
        net(torch.zeros(1, 1, bad, net.valid_input_size(bad)))
    with pytest.raises(ValueError, match=f"input height {bad}"):
        net(torch.zeros(1, 1, bad, net.valid_input_size(bad)))


def test_bad_width_is_named():
    net = UNet(1, 2, 4, 2, "same")
    with pytest.raises(ValueError, match="input width 30 .* 28 or 32"):
        net(torch.zeros(1, 1, 32, 30))


def test_wrong_channels_or_rank():
    net = UNet(3, 2, 4, 2, "same")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.zeros(3, 32, 32))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"padding": "reflect"}, "valid, same"),
        ({"depth": -1}, "depth"),
        ({"dropout": 1.0}, "dropout"),
        ({"base_channels": 0}, "base_channels"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(1, 2, **kwargs)


def test_output_size_of_invalid_input_raises():
    with pytest.raises(ValueError, match="556 or 572"):
        UNet(1, 2).output_size(570)


def test_he_normal_initialisation():
    """Weights ~ N(0, sqrt(2 / fan_in)) (paper Sec. 3); biases zero."""
    net = UNet(1, 2, 64, 4, "valid")
    conv = net.down[3][2]  # second 3x3 conv of level 3: 512 -> 512
    std_expected = (2 / (512 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(std_expected, rel=0.01)
    assert abs(conv.weight.mean().item()) < 0.01 * std_expected * 10
    assert torch.count_nonzero(conv.bias) == 0
    up = net.up[0]  # 1024 -> 512 up-convolution: fan-in of an output pixel is 1024
    assert up.weight.std().item() == pytest.approx((2 / 1024) ** 0.5, rel=0.01)


def test_dropout_sits_at_end_of_contracting_path():
    net = UNet(1, 2, 4, 2, "valid", dropout=0.5)
    assert isinstance(net.dropout, torch.nn.Dropout)
    x = torch.randn(1, 1, net.valid_input_size(60), net.valid_input_size(60))
    net.eval()
    with torch.no_grad():
        a, b = net(x), net(x)
    assert torch.equal(a, b)  # eval: deterministic
    net.train()
    with torch.no_grad():
        c, d = net(x), net(x)
    assert not torch.equal(c, d)  # train: dropout active


def test_dropout_is_element_wise_as_caffe() -> None:
    """The paper's Caffe ``Dropout`` zeroes single activations, not whole feature maps: in
    training, some channels are partly zeroed (``Dropout2d`` zeroes a channel all or nothing)."""
    net = UNet(1, 2, 4, 2, "same", dropout=0.5).train()
    torch.manual_seed(0)
    x = torch.rand(1, 16, 8, 8) + 0.5  # positive: no activation is zero before drop-out
    out = net.dropout(x)
    zero_share = (out == 0).float().mean(dim=(2, 3))  # per channel
    assert ((zero_share > 0) & (zero_share < 1)).all()  # every channel partly dropped
    assert 0.35 < float((out == 0).float().mean()) < 0.65
    kept = out != 0
    torch.testing.assert_close(out[kept], 2 * x[kept])  # scaled by 1 / (1 - p)


def test_batch_norm_layers_present_only_when_asked():
    plain = UNet(1, 2, 4, 2)
    bn = UNet(1, 2, 4, 2, batch_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules()) == 2 * (3 + 2)


def test_center_crop():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    y = center_crop(x, 4, 4)
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, 0, 0] == x[0, 0, 2, 2]
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(x, 10, 4)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_field_matches_autograd(depth):
    """Measured support of an output pixel's gradient equals receptive_field (max over phase)."""
    net = UNet(1, 1, 1, depth, "valid").double()
    with torch.no_grad():
        for p in net.parameters():  # all-positive weights keep every ReLU active
            p.copy_(p.abs() + 0.01)
    n = net.valid_input_size(6 * receptive_field(net) // 4 + 40)
    # A random 2-D input: max-pooling routes gradients to one pixel per window, and summing
    # the gradient over many rows recovers every column a window could pick.
    x = (torch.rand(1, 1, n, n, dtype=torch.double) + 0.1).requires_grad_(True)
    out = net(x)
    widths = set()
    for p in range(2**depth):
        (g,) = torch.autograd.grad(out[0, 0, 0, p], x, retain_graph=True)
        cols = (g[0, 0].abs().sum(0) > 0).nonzero().flatten()
        widths.add(int(cols.max() - cols.min() + 1))
    assert max(widths) == receptive_field(net)


def test_valid_output_is_translation_equivariant_by_2_pow_depth():
    """Shifting the input by 2**depth shifts the output; by one pixel it does not (pooling)."""
    net = UNet(1, 1, 4, 2, "valid").double().eval()
    n = net.valid_input_size(64)
    x = torch.randn(1, 1, n + 4, n, dtype=torch.double)
    with torch.no_grad():
        y0 = net(x[:, :, :n])
        y4 = net(x[:, :, 4 : n + 4])
        y1 = net(x[:, :, 1 : n + 1])
    assert torch.allclose(y0[:, :, 4:], y4[:, :, :-4], atol=1e-10)
    assert not torch.allclose(y0[:, :, 1:], y1[:, :, :-1], atol=1e-3)
