"""The hook-based shape trace, its tables, the measured receptive windows and the drawings."""

from __future__ import annotations

import io
from collections import Counter

import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from torch import nn

from unet_book.architecture import (
    OP_CONCAT,
    OP_CONV1,
    OP_CONV3,
    OP_CONV3_BN,
    OP_CROP,
    OP_DROPOUT,
    OP_INPUT,
    OP_POOL,
    OP_UPCONV,
    compare_table,
    crop_table,
    crops,
    draw_receptive_windows,
    draw_unet,
    layer_table,
    level_costs,
    level_table,
    receptive_windows,
    trace_shapes,
    unet_layout,
)
from unet_book.tables import markdown_table
from unet_core.model import UNet, count_conv_layers, count_parameters, receptive_field


def meta_unet(*args, **kwargs) -> UNet:
    """A UNet on the meta device: shapes propagate, nothing is computed."""
    with torch.device("meta"):
        return UNet(*args, **kwargs)


@pytest.fixture(scope="module")
def paper_rows():
    return trace_shapes(meta_unet(1, 2, 64, 4, "valid"), 572)


def sides(rows, op):
    return [r.size[0] for r in rows if r.op == op]


def test_trace_reproduces_fig1(paper_rows):
    rows = paper_rows
    assert rows[0].op == OP_INPUT and rows[0].out_shape == (1, 572, 572)
    assert rows[-1].op == OP_CONV1 and rows[-1].out_shape == (2, 388, 388)
    contracting = [r.size[0] for r in rows if r.path in ("contracting", "bottom")]
    assert contracting == [570, 568, 284, 282, 280, 140, 138, 136, 68, 66, 64, 32, 30, 28]
    expanding = [r.size[0] for r in rows if r.path == "expanding" and r.op == OP_CONV3]
    assert expanding == [54, 52, 102, 100, 198, 196, 390, 388]
    assert sides(rows, OP_UPCONV) == [56, 104, 200, 392]
    assert [r.channels for r in rows if r.op == OP_POOL] == [64, 128, 256, 512]
    assert [r.channels for r in rows if r.op == OP_CONCAT] == [1024, 512, 256, 128]
    assert max(r.channels for r in rows) == 1024
    counts = {op: sum(r.op == op for r in rows) for op in {r.op for r in rows}}
    assert counts == {OP_INPUT: 1, OP_CONV3: 18, OP_POOL: 4, OP_UPCONV: 4, OP_CROP: 4,
                      OP_CONCAT: 4, OP_CONV1: 1}
    assert [r.level for r in rows if r.op == OP_POOL] == [1, 2, 3, 4]


def test_trace_counts_match_the_model(paper_rows):
    net = meta_unet(1, 2, 64, 4, "valid")
    assert sum(r.params for r in paper_rows) == count_parameters(net) == 31_030_658
    convs = sum(r.op in (OP_CONV3, OP_UPCONV, OP_CONV1) for r in paper_rows)
    assert convs == count_conv_layers(net) == 23


def test_crops_of_the_paper_net(paper_rows):
    got = [(c.level, c.source, c.target, c.per_side) for c in crops(paper_rows)]
    assert got == [
        (3, (64, 64), (56, 56), (4, 4)),
        (2, (136, 136), (104, 104), (16, 16)),
        (1, (280, 280), (200, 200), (40, 40)),
        (0, (568, 568), (392, 392), (88, 88)),
    ]
    table = crop_table(paper_rows)
    assert "| 0 | 64 | 568x568 | 392x392 | 88 |" in table


def test_same_padding_crops_nothing():
    rows = trace_shapes(meta_unet(1, 2, 8, 3, "same"), 64)
    assert all(c.per_side == (0, 0) for c in crops(rows))
    assert {r.size for r in rows if r.level == 0} == {(64, 64)}
    assert rows[-1].out_shape == (2, 64, 64)


def test_trace_on_cpu_equals_trace_on_meta_and_cleans_up():
    net = UNet(2, 3, 4, 2, "valid").train()
    rows = trace_shapes(net, 60)
    assert [(r.op, r.out_shape, r.params, r.macs) for r in rows] == [
        (r.op, r.out_shape, r.params, r.macs) for r in trace_shapes(meta_unet(2, 3, 4, 2), 60)
    ]
    assert net.training  # mode restored
    for m in net.modules():  # every hook removed
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_trace_non_square_input():
    net = meta_unet(1, 1, 4, 2, "valid")
    h, w = net.valid_input_size(40), net.valid_input_size(70)
    rows = trace_shapes(net, (h, w))
    assert rows[-1].size == (net.output_size(h), net.output_size(w))
    assert all(r.size[0] < r.size[1] for r in rows)
    # A crop removes the same border along both axes, whatever the input size.
    assert all(c.per_side[0] == c.per_side[1] for c in crops(rows))
    assert "| 0 | 4 | 40x68 | 8x36 | 16 |" in crop_table(rows)


def test_trace_invalid_size_raises_and_removes_hooks():
    net = meta_unet(1, 2, 4, 2, "valid")
    with pytest.raises(ValueError, match="not valid"):
        trace_shapes(net, 61)
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks


def test_batch_norm_params_join_their_convolution():
    net = meta_unet(1, 2, 4, 2, "valid", batch_norm=True)
    rows = trace_shapes(net, 60)
    assert sum(r.op == OP_CONV3_BN for r in rows) == 10
    assert sum(r.params for r in rows) == count_parameters(net)
    costs = level_costs(rows)
    assert sum(c.params for c in costs) == count_parameters(net)


def test_dropout_is_traced_at_the_bottom():
    rows = trace_shapes(meta_unet(1, 2, 4, 2, "valid", dropout=0.5), 60)
    (drop,) = [r for r in rows if r.op == OP_DROPOUT]
    assert drop.path == "bottom" and drop.in_shape == drop.out_shape


def test_level_costs_and_macs(paper_rows):
    costs = level_costs(paper_rows)
    assert [(c.path, c.level) for c in costs] == [
        ("contracting", 0), ("contracting", 1), ("contracting", 2), ("contracting", 3),
        ("bottom", 4), ("expanding", 3), ("expanding", 2), ("expanding", 1), ("expanding", 0),
        ("output", 0),
    ]
    assert sum(c.params for c in costs) == 31_030_658
    assert max(costs, key=lambda c: c.params).path == "bottom"
    # MACs of a 3x3 convolution: output pixels x weights; of the 2x2 up-conv: input pixels x
    # weights; of the 1x1 head: output pixels x weights.
    first = paper_rows[1]
    assert first.macs == 570 * 570 * 64 * 1 * 9
    up = next(r for r in paper_rows if r.op == OP_UPCONV)
    assert up.macs == 28 * 28 * 1024 * 512 * 4
    assert paper_rows[-1].macs == 388 * 388 * 2 * 64
    table = level_table(costs)
    assert "**total**" in table and "31,030,658" in table


def test_layer_and_compare_tables(paper_rows):
    table = layer_table(paper_rows)
    lines = table.splitlines()
    assert len(lines) == 2 + len(paper_rows)
    assert "| 64 × 568 × 568 | 64 × 284 × 284 | 0 |" in table
    small = trace_shapes(meta_unet(1, 2, 16, 4, "valid"), 572)
    both = compare_table({"paper": paper_rows, "base 16": small}, ops=(OP_POOL,))
    assert len(both.splitlines()) == 2 + 4
    assert "| 128 × 32 × 32 |" in both
    with pytest.raises(ValueError, match="other operations"):
        compare_table({"a": paper_rows, "b": trace_shapes(meta_unet(1, 2, 4, 2), 60)})


def test_markdown_table_alignment():
    t = markdown_table(("a", "b"), [("x", 1234)])
    assert t.splitlines()[1] == "|:---|---:|" and "1,234" in t
    with pytest.raises(ValueError, match="align"):
        markdown_table(("a", "b"), [("x", 1)], align="l")


@pytest.mark.parametrize("depth", [0, 1, 2, 3])  # depth 4: the next test
def test_receptive_windows_are_grid_aligned_valid_tiles(depth):
    net = UNet(1, 1, 2, depth, "valid")
    windows = receptive_windows(net)
    assert len(windows) == 2**depth
    widths = [last - first + 1 for first, last in windows]
    assert max(widths) == receptive_field(net)
    for p, (first, _) in enumerate(windows):
        assert (p + net.margin + first) % 2**depth == 0  # starts on the pooling grid
    assert all(net.is_valid_size(w) for w in widths)  # and is itself a valid tile
    # The margin is the context every output pixel has on its worst side.
    assert min(min(-first, last) for first, last in windows) == net.margin


def test_receptive_windows_of_the_paper_net():
    windows = receptive_windows(meta_unet(1, 2, 64, 4, "same"))  # only depth matters
    widths = [last - first + 1 for first, last in windows]
    assert widths == [188] * 4 + [204] * 12
    assert windows[0] == (-92, 95)
    assert all((p + 92 + first) % 16 == 0 for p, (first, _) in enumerate(windows))
    assert min(min(-first, last) for first, last in windows) == 92


def test_draw_unet(paper_rows):
    fig = draw_unet(paper_rows)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    # input + 18 convs + 4 pools + 4 concatenations (two boxes each) + the 1x1 output
    assert len(boxes) == 1 + 18 + 4 + 2 * 4 + 1
    # 18 conv + 1 conv 1x1 + 4 pools + 4 up-convs + 4 copy-and-crops
    assert len(arrows) == 31
    texts = {t.get_text() for t in ax.texts}
    assert {"572x572", "388x388", "32x32", "1024", "512+512", "copy & crop 568→392"} <= texts
    fig.savefig(io.BytesIO(), format="png", dpi=40)


def test_draw_unet_into_given_axes_and_options():
    rows = trace_shapes(meta_unet(1, 2, 4, 2, "same"), 64)
    fig = Figure()
    ax = fig.add_subplot()
    assert draw_unet(rows, ax=ax, channel_scale="log", size_scale="sqrt", legend=False) is fig
    assert "copy" in {t.get_text() for t in ax.texts}
    with pytest.raises(ValueError, match="scale"):
        draw_unet(rows, channel_scale="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trace"):
        draw_unet(rows[1:])


# -- the layout of Fig. 1, without drawing ---------------------------------------------------
LAYOUT_NETS = [
    pytest.param(padding, depth, {}, id=f"{padding}-depth{depth}")
    for padding in ("valid", "same")
    for depth in (1, 2, 4)
] + [pytest.param("valid", 2, {"batch_norm": True, "dropout": 0.5}, id="valid-depth2-bn-dropout")]
CONVS = (OP_CONV3, OP_CONV3_BN, OP_CONV1)


def layout_trace(padding, depth, extra):
    net = meta_unet(1, 2, 4, depth, padding, **extra)
    return trace_shapes(net, net.valid_input_size(100))


def assert_grows_strictly(pairs):
    """Equal keys have equal values, and values increase strictly with the key."""
    by_key: dict = {}
    for key, value in pairs:
        by_key.setdefault(key, set()).add(value)
    assert all(len(values) == 1 for values in by_key.values()), by_key
    ordered = [by_key[key].pop() for key in sorted(by_key)]
    assert all(a < b for a, b in zip(ordered, ordered[1:], strict=False)), ordered


def centre_y(box):
    return box.y + box.height / 2


@pytest.mark.parametrize(("padding", "depth", "extra"), LAYOUT_NETS)
def test_layout_has_one_box_per_feature_map(padding, depth, extra):
    rows = layout_trace(padding, depth, extra)
    layout = unet_layout(rows)
    # A concatenated map is two boxes, its cropped copy and the up-convolution's output: every
    # row but the concatenation (and the shapeless drop-out) is one box.
    maps = Counter((r.op, r.channels, r.size) for r in rows if r.op not in (OP_CONCAT, OP_DROPOUT))
    assert Counter((b.kind, b.channels, b.size) for b in layout.boxes) == maps
    assert [b.kind for b in layout.boxes].count(OP_CROP) == depth
    labels = [b.label for b in layout.boxes if b.kind == OP_CROP]
    assert labels == [f"{r.channels // 2}+{r.channels // 2}" for r in rows if r.op == OP_CONCAT]


@pytest.mark.parametrize(("padding", "depth", "extra"), LAYOUT_NETS)
def test_layout_box_sizes_grow_with_side_and_channels(padding, depth, extra):
    layout = unet_layout(layout_trace(padding, depth, extra))
    assert_grows_strictly((b.size[0], b.height) for b in layout.boxes)
    assert_grows_strictly((b.channels, b.width) for b in layout.boxes)


def test_layout_linear_scales_are_proportional(paper_rows):
    layout = unet_layout(paper_rows, channel_scale="linear", size_scale="linear")
    assert {b.height / b.size[0] for b in layout.boxes} == {1.0}
    narrowest = min(b.width for b in layout.boxes)  # thin maps are kept at a minimum width
    ratios = {round(b.width / b.channels, 9) for b in layout.boxes if b.width > narrowest}
    assert len(ratios) == 1 and max(b.channels for b in layout.boxes) == 1024


@pytest.mark.parametrize(("padding", "depth", "extra"), LAYOUT_NETS)
def test_layout_expanding_path_mirrors_the_contracting_path(padding, depth, extra):
    boxes = unet_layout(layout_trace(padding, depth, extra)).boxes
    centres = {}
    for b in boxes:  # every level is one row of the U, the deeper the lower
        centres.setdefault(b.level, set()).add(round(centre_y(b), 9))
    assert sorted(centres) == list(range(depth + 1))
    assert all(len(c) == 1 for c in centres.values())
    heights = [centres[level].pop() for level in range(depth + 1)]
    assert heights == sorted(heights, reverse=True)
    down = [b for b in boxes if b.path in ("input", "contracting") and b.kind != OP_POOL]
    up = [b for b in boxes if b.path in ("expanding", "output")]
    assert {b.level for b in up} == {b.level for b in down} == set(range(depth))
    for level in range(depth):
        left = [b for b in down if b.level == level]
        right = [b for b in up if b.level == level]
        assert sum(b.kind in CONVS for b in left) == sum(
            b.kind in CONVS and b.path == "expanding" for b in right) == 2
        deeper = [b for b in boxes if b.level > level]
        assert max(b.x for b in left) <= min(b.x for b in deeper)
        assert min(b.x for b in right) >= max(b.x for b in deeper)
        assert max(b.right for b in left) < min(b.x for b in right)


@pytest.mark.parametrize(("padding", "depth", "extra"), LAYOUT_NETS)
def test_layout_arrows_one_copy_and_crop_per_skip_connection(padding, depth, extra):
    rows = layout_trace(padding, depth, extra)
    layout = unet_layout(rows)
    kinds = Counter(a.kind for a in layout.arrows)
    n_conv3 = sum(r.op in (OP_CONV3, OP_CONV3_BN) for r in rows)
    assert kinds == Counter({OP_CONV3: n_conv3, OP_CONV1: 1, OP_POOL: depth,
                             OP_UPCONV: depth, OP_CROP: depth})
    grey = [a for a in layout.arrows if a.kind == OP_CROP]
    assert sorted(layout.boxes[a.target].level for a in grey) == list(range(depth))
    for a in grey:  # across the U, from the last contracting map of a level to its copy
        src, dst = layout.boxes[a.source], layout.boxes[a.target]
        assert src.path in ("contracting", "bottom") and src.kind in CONVS
        assert dst.kind == OP_CROP and src.level == dst.level
        level_down = [b for b in layout.boxes if b.level == src.level and b.path == src.path]
        assert src.right == max(b.right for b in level_down)  # the level's last map
        assert a.start == (src.right, pytest.approx(centre_y(src)))
        assert a.start[1] == a.end[1] and a.end[0] == dst.x
        assert (src.size > dst.size) if padding == "valid" else (src.size == dst.size)
    texts = [label.text for label in layout.crop_labels]
    assert len(texts) == depth
    if padding == "same":
        assert set(texts) == {"copy"}
    else:
        assert all(t.startswith("copy & crop ") and "→" in t for t in texts)
    (x0, x1), (y0, y1) = layout.xlim, layout.ylim
    assert all(x0 < b.x and b.right < x1 and y0 < b.y and b.top < y1 for b in layout.boxes)


def test_layout_rejects_what_is_not_a_trace(paper_rows):
    with pytest.raises(ValueError, match="trace"):
        unet_layout(paper_rows[1:])
    with pytest.raises(ValueError, match="scale"):
        unet_layout(paper_rows, size_scale="cubic")  # type: ignore[arg-type]


def test_draw_unet_paints_its_layout(paper_rows):
    layout = unet_layout(paper_rows)
    ax = draw_unet(paper_rows).axes[0]
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [(r.get_x(), r.get_y(), r.get_width(), r.get_height()) for r in rects] == [
        (b.x, b.y, b.width, b.height) for b in layout.boxes
    ]
    assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == len(layout.arrows)
    assert (ax.get_xlim(), ax.get_ylim()) == (layout.xlim, layout.ylim)


def test_draw_receptive_windows():
    windows = receptive_windows(UNet(1, 1, 2, 2))
    fig = draw_receptive_windows(windows, margin=20, periods=3)
    bars = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(bars) == 3 * 4
    fig.savefig(io.BytesIO(), format="png", dpi=40)
    with pytest.raises(ValueError, match="2\\*\\*depth"):
        draw_receptive_windows(windows[:3], margin=20)


def test_probe_does_not_touch_the_model():
    net = UNet(1, 1, 2, 2)
    before = [p.clone() for p in net.parameters()]
    receptive_windows(net)
    assert isinstance(net.pool, nn.MaxPool2d)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
