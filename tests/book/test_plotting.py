"""Figure helpers draw what the library computes (smoke tests on the Agg backend)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from unet_book.padding import BorderEffect, skip_connections
from unet_book.plotting import (
    pick_channel,
    plot_border_effect,
    plot_crop_and_copy,
    plot_tile_grid,
    show,
)
from unet_core.model import UNet
from unet_core.tiling import plan_axis


def test_plot_tile_grid_uses_the_tiling_plan():
    net = UNet(3, 2, 4, 4)
    picture = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    fig, ax = plt.subplots()
    plan_y, plan_x = plot_tile_grid(ax, picture, net, 252, highlight=[(0, 0), (1, 1)])
    assert plan_y == plan_axis(net, 120, 252)
    assert plan_x == plan_axis(net, 90, 252)
    dashed = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_linestyle() == "--"]
    assert len(dashed) == 2  # the two highlighted input windows
    assert all(p.get_width() == 252 for p in dashed)
    # The view shows the whole mirrored extent, which starts margin pixels before the image.
    assert ax.get_xlim()[0] == pytest.approx(-net.margin - 0.5)


def test_plot_tile_grid_grayscale_and_same_padding():
    net = UNet(1, 2, 4, 2, "same")
    fig, ax = plt.subplots()
    plan_y, _ = plot_tile_grid(ax, np.zeros((50, 70)), net, 32, overlap=8)
    assert plan_y.stride == 24


def test_plot_crop_and_copy_one_column_per_level():
    torch.manual_seed(0)
    net = UNet(1, 2, 2, 3)
    skips = skip_connections(net, torch.randn(1, net.valid_input_size(100), 108))
    fig = plot_crop_and_copy(skips)
    assert len(fig.axes) == 2 * 3
    assert "copied centre" in fig.axes[0].get_title()


def test_plot_border_effect_handles_exact_zeros():
    zero = BorderEffect(np.arange(4), np.zeros(4), np.zeros(4), np.ones(4, int), 1.0, 8, 1)
    some = BorderEffect(np.arange(4), np.array([1.0, 0.1, 0, 0]), np.array([2.0, 0.2, 0, 0]),
                        np.ones(4, int), 2.0, 8, 1)
    fig, ax = plt.subplots()
    plot_border_effect(ax, {"valid": zero, "same": some}, floor=1e-8)
    lines = ax.get_lines()
    assert np.allclose(lines[0].get_ydata(), 1e-8)
    assert lines[1].get_ydata()[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="stat"):
        plot_border_effect(ax, {"x": zero}, stat="median")


def test_show_log_scale_and_colorbar():
    fig, ax = plt.subplots()
    im = show(ax, np.array([[0.0, 1e-3], [1.0, 10.0]]), "diff", log=True, colorbar=True)
    assert im.norm.vmax == 10.0 and im.norm.vmin == pytest.approx(1e-5)
    assert len(fig.axes) == 2


def test_pick_channel_prefers_structure_over_dead_and_checkerboard_channels():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    dead = torch.zeros(32, 32)
    sparse = torch.zeros(32, 32)
    sparse[5, 5] = 1.0
    smooth = torch.sin(xx / 5) + torch.cos(yy / 7)
    edges = (xx > 16).float() + (yy > 10).float()
    checker = ((xx + yy) % 2).float()
    maps = torch.stack([dead, sparse, smooth, edges, checker, smooth.T])
    assert pick_channel(maps) in (2, 3, 5)
    assert pick_channel(torch.zeros(3, 8, 8)) == 0
