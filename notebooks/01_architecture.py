# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# (chap-architecture)=
# # The architecture
#
# Section 2 of {cite:t}`ronneberger2015unet` describes the network in a single paragraph and one
# figure (their Fig. 1). This chapter rebuilds that figure from the running code. We construct
# the paper's network with `unet_core`, push one 572x572 tile through it while recording every
# feature map, and read off what the paper states or implies: the shapes of Fig. 1, the crops of
# the skip connections, the 23 convolutional layers, the number of parameters, the receptive
# field, and which tile sizes the network accepts. Then we draw the U from the recorded shapes.
#
# Every number quoted in the text is computed in a code cell and checked there by an `assert`,
# so the book fails to build if the implementation drifts from the paper.

# %%
# %config InlineBackend.figure_formats = ["svg"]
import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown

from unet_book.architecture import (
    OP_CONV1,
    OP_CROP,
    OP_INPUT,
    OP_POOL,
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
)
from unet_book.source import show_source
from unet_core.model import (
    DoubleConv,
    UNet,
    center_crop,
    count_conv_layers,
    count_parameters,
    receptive_field,
)

_ = torch.manual_seed(0)  # the weights are random; nothing below depends on their values

# %% [markdown]
# ## The paper's network
#
# `UNet(in_channels, out_channels, base_channels, depth, padding)` with the paper's values: one
# input channel (grey-value electron-microscopy images), two output channels (the scores of the
# two classes, turned into probabilities by a soft-max during training), 64 feature channels at
# the first level, four 2x2 max-pooling steps and unpadded ("valid") convolutions.
# Printing the module shows its parts; their names (`down`, `pool`, `up`, `up_conv`, `head`)
# reappear in the tables below.

# %% tags=["hide-output"]
net = UNet(1, 2, 64, 4, "valid")
print(net)

# %% [markdown]
# ### The code
#
# The network is a few dozen lines of `unet_core/model.py`, shown here from the source that
# runs: the book includes it with `inspect.getsource`, so the page and the library cannot
# drift apart. A level of the U is a `DoubleConv`, two 3x3 convolutions each followed by a
# ReLU; the paper's convolutions are unpadded, and the batch normalisation that the option
# inserts is not in the paper (it appeared a year later).

# %%
show_source(DoubleConv)

# %% [markdown]
# `forward` is the whole of Fig. 1: down the contracting path, keeping each level's output
# for its skip connection; drop-out at the bottom ("at the end of the contracting path",
# Sec. 3.1); then up, one up-convolution, crop-and-copy, concatenation and double
# convolution per level; and the final 1x1 convolution. The comments give the shapes.

# %%
show_source(UNet.forward)

# %% [markdown]
# ## Following a tile through the network
#
# > The contracting path follows the typical architecture of a convolutional network. It
# > consists of the repeated application of two 3x3 convolutions (unpadded convolutions), each
# > followed by a rectified linear unit (ReLU) and a 2x2 max pooling operation with stride 2 for
# > downsampling. At each downsampling step we double the number of feature channels.
# > {cite:p}`ronneberger2015unet`, Sec. 2
#
# Rather than re-deriving the sizes on paper, `trace_shapes` registers a PyTorch *forward hook*
# on every convolution, max-pool and up-convolution of `net`, runs one real forward pass on a
# 572x572 image, and writes down the shape that each operation received and produced. It also
# reads the concatenated map at the entrance of every expanding block, which reveals the crop of
# the skip connection. The table lists the shapes as channels x height x width; "level" counts
# the max-pools between a map and the input (0 is full resolution, 4 the bottom of the U).

# %%
rows = trace_shapes(net, 572)  # one forward pass of the real network (a few seconds on a CPU)

# %% mystnb={"markdown_format": "gfm"}
Markdown(layer_table(rows))

# %% [markdown]
# These are the numbers of Fig. 1. Down the contracting path, every unpadded 3x3 convolution trims
# one pixel on each side (572 → 570 → 568), every max-pool halves the side (568 → 284), and the
# first convolution after each pool doubles the channels (64, 128, 256, 512). At the bottom of the
# U, two convolutions with 1024 channels shrink the 32x32 map to 28x28. The expanding path then
# doubles the side with each 2x2 up-convolution while halving the channels (28 → 56, 1024 → 512),
# and a final 1x1 convolution turns the 64 channels of every pixel into 2 class scores on a 388x388
# map. (The paper also places drop-out "at the end of the contracting path" in Sec. 3.1; it changes
# no shape and is off by default, `UNet(..., dropout=0.5)` adds it after row 14.)

# %%
contracting = [r.size[0] for r in rows if r.path in ("input", "contracting", "bottom")]
expanding = [r.size[0] for r in rows if r.path == "expanding"]
assert contracting == [572, 570, 568, 284, 282, 280, 140, 138, 136, 68, 66, 64, 32, 30, 28]
assert expanding == [56, 56, 56, 54, 52, 104, 104, 104, 102, 100,
                     200, 200, 200, 198, 196, 392, 392, 392, 390, 388]
assert [r.channels for r in rows if r.op == OP_POOL] == [64, 128, 256, 512]
assert max(r.channels for r in rows) == 1024
assert rows[-1].op == OP_CONV1 and rows[-1].out_shape == (2, 388, 388)

# %% [markdown]
# ## Copy and crop
#
# > Every step in the expansive path consists of an upsampling of the feature map followed by a
# > 2x2 convolution ("up-convolution") that halves the number of feature channels, a
# > concatenation with the correspondingly cropped feature map from the contracting path, and
# > two 3x3 convolutions, each followed by a ReLU. The cropping is necessary due to the loss of
# > border pixels in every convolution. {cite:p}`ronneberger2015unet`, Sec. 2
#
# `unet_core` implements the up-convolution as a transposed convolution with a 2x2 kernel and stride
# 2: every input pixel is spread over its own 2x2 block of output pixels and the blocks do not
# overlap, so the checkerboard artefacts that transposed convolutions produce when their kernel size
# is not a multiple of the stride {cite:p}`odena2016deconvolution` cannot arise. The
# up-convolution's output is smaller than the map waiting on the contracting side of the same level,
# because everything below that level has lost border pixels in the meantime. The copy is cut to the
# centre:

# %% mystnb={"markdown_format": "gfm"}
Markdown(crop_table(rows))

# %% [markdown]
# The crop itself is `center_crop`, called in `forward` on every skip connection (with same
# padding the two maps already agree and it cuts nothing):

# %%
show_source(center_crop)

# %% [markdown]
# The crops grow quickly towards the top of the U. At level 3, the two convolutions at the
# bottom removed 2 pixels on each side of a 32-pixel map, which is 4 pixels at level 3. One
# level up, the crop of the level below is doubled, and the two convolutions on each side of
# level 3 (contracting and expanding) add 2 + 2 pixels before the doubling: the border lost per
# side at level $\ell$ obeys
#
# $$ c_3 = 4, \qquad c_\ell = 2\,(c_{\ell+1} + 4), $$
#
# giving 4, 16, 40 and 88: a border pixel lost deep in the network costs 2, 4, 8, ... pixels at
# the levels above it.

# %%
cut = {c.level: c.per_side[0] for c in crops(rows)}
assert cut == {3: 4, 2: 16, 1: 40, 0: 88}
assert all(cut[level] == 2 * (cut[level + 1] + 4) for level in (0, 1, 2))

# %% [markdown]
# ## The U, drawn from the trace
#
# `draw_unet` turns the recorded shapes into the picture of the paper's Fig. 1: one box per
# feature map, the number of channels on top, the side at the lower left, white boxes for the
# copied (cropped) maps, and arrows for the operations. Box heights are proportional to the
# side of the map; widths grow with the square root of the number of channels (strictly
# proportional widths make the 64-channel maps hairlines next to the 1024-channel ones; pass
# `channel_scale="linear"` to see them).

# %% mystnb={"figure": {"caption": "The paper's U-Net, drawn from a trace.", "name": "fig-unet"}}
fig, ax = plt.subplots(figsize=(12, 7))
draw_unet(rows, ax=ax)
plt.show()

# %% [markdown]
# {numref}`fig-unet` makes visible what the table only lists. The tall, thin boxes at the top
# are maps with full resolution but few channels: roughly, they know *where* things are. The
# short, wide boxes at the bottom have lost resolution but gained channels and context: they
# know *what* things are. The grey arrows carry the first kind of information across the U to
# the right side, where the up-convolutions bring back the second: the concatenation lets the
# last layers combine precise localisation with large context, which is the point of the
# architecture.
#
# ## 23 convolutional layers and 31 million parameters
#
# > At the final layer a 1x1 convolution is used to map each 64-component feature vector to the
# > desired number of classes. In total the network has 23 convolutional layers.
# > {cite:p}`ronneberger2015unet`, Sec. 2
#
# Eighteen 3x3 convolutions (two per block, nine blocks), four up-convolutions and the 1x1
# convolution make 23. The paper does not give the number of parameters; it follows from the
# layer sizes. A 3x3 convolution from $C_\text{in}$ to $C_\text{out}$ channels has
# $9\,C_\text{in} C_\text{out}$ weights and $C_\text{out}$ biases, e.g. 4,719,616 for the first
# convolution at the bottom (512 → 1024 channels).

# %%
print(f"{count_conv_layers(net)} convolutional layers, {count_parameters(net):,} parameters")
assert count_conv_layers(net) == 23
assert count_parameters(net) == 31_030_658
assert sum(r.params for r in rows) == count_parameters(net)  # the trace saw every weight
assert rows[13].params == 9 * 512 * 1024 + 1024 == 4_719_616

# %% [markdown]
# Where do the parameters sit, and where is the work done? `level_costs` adds up, per stage of
# the U, the parameters and the multiply-accumulate operations (MACs) of the traced 572x572
# forward pass (an expanding stage includes its up-convolution).

# %% mystnb={"markdown_format": "gfm"}
costs = level_costs(rows)
Markdown(level_table(costs))

# %% [markdown]
# Three quarters of the parameters live in the bottom block and the first expanding stage
# (level 3), where the maps are smallest. The arithmetic, in contrast, is spread
# almost evenly over the levels: halving the side divides the number of pixels by 4, doubling
# the channels multiplies the cost of each pixel by 4. One 572x572 tile costs about 150 billion
# MACs, close to one million per output pixel.

# %%
total_macs = sum(c.macs for c in costs)
by_stage = {(c.path, c.level): c for c in costs}
assert by_stage["bottom", 4].params / count_parameters(net) > 0.45
lowest_two = by_stage["bottom", 4].params + by_stage["expanding", 3].params
assert lowest_two / count_parameters(net) > 0.75
assert all(0.07 < c.macs / total_macs < 0.15 for c in costs if c.path != "output")
assert round(total_macs / 1e9) == 150 and round(total_macs / 388**2 / 1e5) == 10

# %% [markdown]
# ## The receptive field
#
# How much of the input can one output pixel see? `receptive_field` computes the answer
# analytically, by following index intervals backwards through every path of the network
# (the bottom and each skip connection): **204 pixels**. `receptive_windows` measures it
# instead: a probe network with the same architecture, all weights positive (so that every
# ReLU passes) and average instead of max pooling (a max-pool may pick any of its four inputs),
# is differentiated with respect to its input; the pixels with a non-zero gradient are those
# that can influence the output pixel. It returns, for an output pixel $p$ that sits above
# input pixel $p + 92$, the first and last input offset of its window.

# %%
rf = receptive_field(net)
windows = receptive_windows(net)  # one window per position modulo 16
widths = [last - first + 1 for first, last in windows]
print(f"receptive_field: {rf}; measured widths for p mod 16 = 0..15: {widths}")
assert rf == max(widths) == 204
assert min(widths) == 188 and widths == [188] * 4 + [204] * 12

# %% mystnb={"figure": {"caption": "Measured receptive windows.", "name": "fig-receptive"}}
fig, ax = plt.subplots(figsize=(9, 4.5))
draw_receptive_windows(windows, net.margin, periods=2, ax=ax)
plt.show()

# %% [markdown]
# Why does the window depend on the position of the pixel modulo 16? Each 2x2 max-pool with
# stride 2 merges the pixel pairs (0, 1), (2, 3), ... of its input; after four of them, the
# pixels at the bottom of the U step through the input in strides of 16, on a grid anchored at
# the first input pixel, and a shift of the input by fewer than 16 pixels changes which pixels
# are grouped together. {numref}`fig-receptive` shows the
# consequence: the windows do not slide with the output pixel but jump in steps of 16, and the
# window of every pixel is exactly the smallest tile on the pooling grid whose output contains
# it. Pixels 0 to 3 are the whole output of the 188-pixel tile that starts at input column 0;
# pixels 4 to 15 lie outside it and need the next valid tile size, 204. In two dimensions a
# pixel sees between 188x188 and 204x204 input pixels.
#
# The *margin* is the other half of the story. The output is the centre of the input,
# $(572 - 388)/2 = 92$ pixels in from every side, and those 92 pixels are the smallest context
# any output pixel has on its shortest side (up to 107 on the other). This is the context the
# overlap-tile strategy of chapter 2 has to provide at the image border, by mirroring.

# %%
assert net.margin == (572 - net.output_size(572)) // 2 == 92
for p, (first, _last) in enumerate(windows):
    assert (p + net.margin + first) % 16 == 0  # every window starts on the pooling grid
assert all(net.is_valid_size(w) for w in widths)  # and is itself a valid tile
assert min(min(-first, last) for first, last in windows) == net.margin
assert max(max(-first, last) for first, last in windows) == 107

# %% [markdown]
# ## Which tile sizes are valid
#
# > To allow a seamless tiling of the output segmentation map, it is important to select the
# > input tile size such that all 2x2 max-pooling operations are applied to a layer with an
# > even x- and y-size. {cite:p}`ronneberger2015unet`, Sec. 2
#
# Follow an input side $n$ down the U. Each level subtracts 4 (two convolutions) and then
# halves, so the side entering the bottom block is $b = ((((n-4)/2-4)/2-4)/2-4)/2$, that is
# $n = 16\,b + 60$, and every halving is exact only if $n$ has this form with an integer $b$.
# Going up, each level doubles and subtracts 4 again, which gives an output side of
# $16\,b - 124 = n - 184$. The output must have at least one pixel (on every level), so
# $b \ge 8$: the valid sides are $n = 16k + 12$ from 188 upwards, and the output is always the
# input minus twice the margin. For the paper's tile, $b = 32$ and $572 = 16 \cdot 35 + 12$.

# %%
valid = [n for n in range(1, 1200) if net.is_valid_size(n)]
print("valid sides:", valid[:5], "...", valid[-2:])
print("output sides:", [net.output_size(n) for n in valid[:5]], "...")
assert valid[0] == 188 and net.output_size(188) == 4
assert valid == list(range(188, 1200, 16)) and all(n % 16 == 12 for n in valid)
assert all(net.output_size(n) == n - 184 for n in valid)

# %% [markdown]
# An invalid size is refused with a message that names the nearest valid ones:

# %%
try:
    net.output_size(570)
except ValueError as error:
    print(error)
assert net.valid_input_size(570) == 572

# %% [markdown]
# A small tile wastes most of its work on context: the 188-pixel tile spends 381 million MACs
# on each of its 16 output pixels. Because shapes are all that `trace_shapes` needs, we can
# trace a copy of the network built on PyTorch's `meta` device (no memory, no arithmetic) for
# every valid size, and see why the paper "favor[s] large input tiles over a large batch size"
# (Sec. 3): the cost per output pixel falls steeply and then levels off towards about three
# quarters of a million MACs.

# %% mystnb={"figure": {"caption": "Output share and cost of a tile.", "name": "fig-tiles"}}
with torch.device("meta"):
    shape_only = UNet(1, 2, 64, 4, "valid")
sizes = [n for n in valid if n <= 1100]
per_pixel = [sum(r.macs for r in trace_shapes(shape_only, n)) / net.output_size(n) ** 2
             for n in sizes]
fraction = [(net.output_size(n) / n) ** 2 for n in sizes]
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
left.plot(sizes, fraction, ".-")
left.set(xlabel="tile side n", ylabel="output pixels / input pixels", ylim=(0, 1))
right.semilogy(sizes, [m / 1e6 for m in per_pixel], ".-")
right.set(xlabel="tile side n", ylabel="million MACs per output pixel")
for axis, values in ((left, fraction), (right, [m / 1e6 for m in per_pixel])):
    axis.plot(572, values[sizes.index(572)], "o", color="#c62828", label="572 (paper)")
    axis.legend(loc="center right")
    axis.grid(alpha=0.3)
fig.tight_layout()
plt.show()

# %%
assert round(per_pixel[0] / 1e6) == 381 and round(per_pixel[sizes.index(572)] / 1e6, 2) == 1.0
assert per_pixel == sorted(per_pixel, reverse=True)  # larger tiles are always cheaper
assert round(fraction[sizes.index(572)], 2) == 0.46

# %% [markdown]
# ## Two variations: same padding, and a narrower network
#
# `unet_core` generalises two of the paper's choices (both off by default). With
# `padding="same"` every 3x3 convolution pads its input with a one-pixel border of zeros, so
# no level loses pixels, no crop is needed and the output has the size of the input; the input
# side must then be a multiple of 16. With `base_channels=16` every level has a quarter of the
# paper's channels. Again only shapes are needed, so both networks are built on the `meta`
# device.

# %%
with torch.device("meta"):
    same = UNet(1, 2, 64, 4, "same")
    narrow = UNet(1, 2, 16, 4, "valid")
for name, model in (("paper", net), ("same padding", same), ("base_channels=16", narrow)):
    print(f"{name:>16}: {count_parameters(model):>10,} parameters, "
          f"receptive field {receptive_field(model)}")
assert count_parameters(same) == count_parameters(net) == 31_030_658
assert count_parameters(narrow) == 1_940_834
assert receptive_field(same) == receptive_field(narrow) == 204
assert not same.is_valid_size(572) and same.valid_input_size(572) == 576

# %% mystnb={"markdown_format": "gfm"}
traces = {
    "paper (valid, 64), 572": rows,
    "same, 64, 576": trace_shapes(same, 576),
    "valid, 16, 572": trace_shapes(narrow, 572),
}
Markdown(compare_table(traces, ops=(OP_INPUT, OP_POOL, OP_CROP, OP_CONV1)))

# %% [markdown]
# Padding adds no weights: the same-padded network has exactly the paper's 31,030,658
# parameters and the same receptive field, and its maps keep their size (576, 288, ..., 36 at
# the bottom), so its "crops" cut nothing. What it gives up is the guarantee that every output
# pixel saw only real image: near the border of every feature map it sees zeros. Chapter 2
# measures that effect and compares it with the overlap-tile strategy.
#
# The narrow network has exactly the paper's shapes with a quarter of the channels, and about a
# sixteenth of the parameters (1,940,834): the weights of a convolution grow with the product
# of its input and output channels. The computation shrinks by the same factor, while the
# receptive field, set by the depth and the kernel sizes alone, stays at 204 pixels.

# %%
assert all(a.size == b.size for a, b in zip(traces["paper (valid, 64), 572"],
                                             traces["valid, 16, 572"], strict=True))
assert all(c.per_side == (0, 0) for c in crops(traces["same, 64, 576"]))
assert traces["same, 64, 576"][-1].out_shape == (2, 576, 576)
narrow_macs = sum(r.macs for r in traces["valid, 16, 572"])
assert 15 < count_parameters(net) / count_parameters(narrow) < 16.1
assert 15 < total_macs / narrow_macs < 16.1

# %% [markdown]
# ## Summary
#
# * The paper's network, `UNet(1, 2, 64, 4, "valid")`, maps a 572x572 tile to a 388x388
#   segmentation through 23 convolutional layers and 31,030,658 parameters; the feature maps
#   measured by forward hooks are exactly those of Fig. 1.
# * The copy-and-crop cuts 4, 16, 40 and 88 pixels from each side of the contracting maps,
#   from the bottom level upwards; the output is the input minus a 92-pixel margin per side.
# * An output pixel sees a window of 188 or 204 input pixels per axis, depending on its
#   position modulo 16: always the smallest tile on the pooling grid that produces it.
# * Valid tile sides are $16k + 12$ from 188 (output 4) upwards, with output $n - 184$;
#   larger tiles waste less work on context.
# * Three quarters of the parameters sit in the two lowest stages, but the computation is
#   spread evenly over the levels.
