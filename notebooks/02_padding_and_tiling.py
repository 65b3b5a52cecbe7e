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
# (chap-padding)=
# # Padding and the overlap-tile strategy
#
# > The network does not have any fully connected layers and only uses the valid part of each
# > convolution, i.e., the segmentation map only contains the pixels, for which the full context
# > is available in the input image. This strategy allows the seamless segmentation of
# > arbitrarily large images by an overlap-tile strategy (see Figure 2). To predict the pixels
# > in the border region of the image, the missing context is extrapolated by mirroring the
# > input image. {cite:p}`ronneberger2015unet`, Sec. 1
#
# This chapter takes that paragraph apart. We look at what a 3x3 convolution does at a border
# with and without padding, watch crop-and-copy happen on real feature maps, *measure* how far
# the zero padding of a "same" network reaches into a tile, and then run the overlap-tile
# strategy of `unet_core.tiling.predict_tiled` on a retinal photograph: the tile grid and the
# mirrored margin, the claim that the result does not depend on the tile size (and why that
# needs tiles to advance by multiples of 16 pixels), what same padding needs instead
# (overlapping, blended tiles), an image smaller than the network's margin, and the memory
# bound that makes a 4000x4000 image no harder than a 572x572 one.
#
# Every number below is computed by the code cells, and the key properties are checked by
# `assert`s, so the book fails to build if they stop holding. To keep the chapter fast on a
# laptop CPU, most demonstrations use a narrow network (8 feature channels at the first level
# instead of 64, same depth 4); the width does not enter any of the properties shown, and the
# tile-size invariance is checked once on the paper's full-width network as well.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Markdown, display

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
from unet_book.plotting import plot_border_effect, plot_crop_and_copy, plot_tile_grid, show
from unet_book.source import show_source
from unet_book.tables import markdown_table
from unet_core.data import load_drive, resolve_dataset, shown_path
from unet_core.model import UNet, receptive_field
from unet_core.tiling import mirror_indices, plan_axis, predict_tiled

chapter_started = time.perf_counter()
_ = torch.manual_seed(0)

# %% [markdown]
# The image is the first photograph of the DRIVE training set {cite:p}`staal2004drive`
# (565x584 pixels, RGB), or its deterministic synthetic stand-in when the real data set is not
# in the data directory (`UNET_DATA_DIR`). The network sees each colour channel standardised
# to zero mean and unit variance.

# %%
drive = resolve_dataset("drive")
sample = load_drive(drive.root, "training")[0]
picture = sample.image  # (H, W, 3) uint8, for display
H, W = picture.shape[:2]
image = torch.from_numpy(picture).permute(2, 0, 1).float()
image = (image - image.mean(dim=(1, 2), keepdim=True)) / image.std(dim=(1, 2), keepdim=True)
source = "SYNTHETIC stand-in (real DRIVE not found)" if drive.synthetic else "real DRIVE"
print(f"image {sample.name}: {source}, {H}x{W} pixels, from {shown_path(drive.root)}")

# %% [markdown]
# ## One convolution at the border
#
# A 3x3 convolution computes each output pixel from the 3x3 input pixels around it. At the
# border of the image some of those neighbours do not exist, and there are two ways out:
#
# * **valid** (the paper, "unpadded convolutions"): compute only the pixels whose whole 3x3
#   neighbourhood exists. The output is 2 pixels smaller than the input in each direction.
# * **same** (zero padding): pretend that the missing neighbours are 0. The output keeps the
#   input's size, but its border pixels are computed from made-up values.
#
# The difference is easiest to see on a constant image and a 3x3 averaging filter: every
# output pixel *should* be 1.

# %%
flat = torch.ones(1, 1, 6, 6)
box = torch.full((1, 1, 3, 3), 1 / 9)
valid_out = F.conv2d(flat, box)  # padding=0
same_out = F.conv2d(flat, box, padding=1)
print("valid:", tuple(valid_out.shape[-2:]), "\n", valid_out[0, 0].numpy().round(3))
print("same: ", tuple(same_out.shape[-2:]), "\n", same_out[0, 0].numpy().round(3))
assert valid_out.shape[-1] == 4 and torch.allclose(valid_out, torch.ones(1))
assert same_out.shape[-1] == 6
assert torch.isclose(same_out[0, 0, 0, 0], torch.tensor(4 / 9))  # corner: 5 of 9 taps are 0
assert torch.isclose(same_out[0, 0, 0, 2], torch.tensor(6 / 9))  # edge: 3 of 9 taps are 0

# %% [markdown]
# With zero padding the outermost ring is wrong, by a third at the edges and more than half at
# the corners. In a network this error does not stay in one ring: the next convolution spreads
# it one pixel further in, every max-pool doubles the distance it covers in input pixels, and
# every deeper level adds a zero-padded border of its own. The paper's network stacks 18 such
# 3x3 convolutions over four resolutions, so the question "how far in is the output affected?"
# needs a measurement, which we make below.
#
# Valid convolutions avoid the question by not computing those pixels. The price is that the
# output is smaller than the input, by the network's *margin* on every side (chapter 1):

# %%
paper = UNet(3, 2, 64, 4, "valid")  # the paper's network, with 3 input channels for RGB
paper_same = UNet(3, 2, 64, 4, "same")
rows = [
    ["valid (paper)", 572, paper.output_size(572), paper.margin,
     f"{paper.output_size(572) ** 2 / 572**2:.0%}"],
    ["same", 576, 576, 0, "100%"],
]
display(Markdown(markdown_table(
    ["padding", "input tile", "output tile", "margin per side", "output / input pixels"], rows)))
print("receptive field of one output pixel:", receptive_field(paper), "pixels")
assert paper.output_size(572) == 388 and paper.margin == 92
assert receptive_field(paper) == 204

# %% [markdown]
# Why accept a smaller output? Because every output pixel of the valid network was computed
# from its *complete* context: the same image pixels, in the same arrangement, whichever tile
# it was computed in. The output of a tile is then simply the restriction of one big function
# of the image, and tiles can be cut anywhere (with one caveat about max-pooling, below)
# without changing a single output value. The same network cannot promise that for pixels near
# a tile border.
#
# ## A network that has learnt something
#
# Random weights are enough for everything that is a property of the architecture, but feature
# maps and predictions are easier to read when the network has learnt something. So we train
# a narrow same-padding U-Net (8 channels at the first level, depth 4) for 60 steps of Adam on
# random 128x128 crops of this one image and its vessel mask, a few seconds on a CPU. This is a
# toy: it is not the paper's training procedure (chapter on training), it is evaluated on its
# own training image, and nothing in this chapter is about its accuracy.
#
# The weights of a U-Net do not depend on its padding, so a *valid* network can load the very
# same weights. We use this "valid twin" for the valid-padding demonstrations.

# %%
net_same = UNet(3, 2, 8, 4, "same")
t0 = time.perf_counter()
losses = train_briefly(net_same, image, sample.vessels, steps=60, crop=128, batch_size=4,
                       lr=3e-3, seed=0)
print(f"trained 60 steps in {time.perf_counter() - t0:.1f} s; cross-entropy "
      f"{np.mean(losses[:5]):.3f} (first 5 steps) -> {np.mean(losses[-5:]):.3f} (last 5)")
net_valid = UNet(3, 2, 8, 4, "valid")
net_valid.load_state_dict(net_same.state_dict())
net_valid.eval()
assert np.mean(losses[-5:]) < np.mean(losses[:5])

# %% [markdown]
# ## Crop and copy, on real feature maps
#
# > Every step in the expansive path consists of an upsampling of the feature map followed by a
# > 2x2 convolution ("up-convolution") that halves the number of feature channels, a
# > concatenation with the correspondingly cropped feature map from the contracting path, and
# > two 3x3 convolutions \[...\]. The cropping is necessary due to the loss of border pixels in
# > every convolution. {cite:p}`ronneberger2015unet`, Sec. 2
#
# `skip_connections` runs the valid twin on one 572x572 tile and records, at every level, the
# contracting path's feature map and the up-convolved decoder map it is concatenated with. The
# tile is centred on the photograph, which is smaller than the tile, so its edges are filled by
# mirroring (more on that below). The top row shows one channel of each encoder map with the
# centre window that is copied (red); the bottom row puts that window next to a channel of the
# decoder map. They have the same size and cover the same part of the image: the encoder map is
# larger only by the context that the decoder side has used up on its way down and up.

# %% mystnb={"figure": {"caption": "Crop-and-copy on one 572x572 tile.", "name": "fig-crop-copy"}}
m = net_valid.margin
y0, x0 = (H + 2 * m - 572) // 2, (W + 2 * m - 572) // 2
centre_tile = mirror_pad(image, m)[:, y0 : y0 + 572, x0 : x0 + 572]
skips = skip_connections(net_valid, centre_tile)
fig = plot_crop_and_copy(skips)
plt.show()
print("crop per side at each level:", [s.top for s in skips])
assert [s.top for s in skips] == [88, 40, 16, 4]
assert all(s.cropped.shape == s.upsampled.shape for s in skips)

# %% [markdown]
# The crop shrinks towards the bottom of the U (88, 40, 16 and 4 pixels per side, as in the
# paper's Fig. 1) because each level's offset is counted in that level's pixels, which are
# 2, 4 and 8 input pixels wide further down. The encoder maps are recognisably the image
# (vessel and edge detectors). The up-convolved maps carry a checkerboard pattern: a 2x2
# up-convolution with stride 2 applies a different weight to each of the four pixels of every
# 2x2 output block, which a briefly trained network has not yet learnt to balance
# {cite:p}`odena2016deconvolution`; the 3x3 convolutions that follow the concatenation see both
# maps together.
#
# ## What zero padding does, measured
#
# To measure the border effect of a same-padding network we predict the *same* pixels twice:
#
# 1. as a reference, in one pass over a 512x512 region of the image, using only pixels at
#    least 112 pixels inside it (half the receptive field, rounded up to the pooling grid),
#    where the region's own zero padding cannot reach;
# 2. in 224x224 tiles cut from the region at 9 positions, each pixel now somewhere between the
#    tile's centre and its border.
#
# `border_effect` bins the absolute difference of the logits by the pixel's distance to the
# nearest tile border and divides by the standard deviation of the reference logits. The tiles
# start on multiples of 16 pixels, so that max-pooling sees the same pixel pairs in the tile
# and in the reference; what is left is the zero padding. We measure three randomly initialised
# same networks (three seeds), the trained one, and, as a control, the valid twin (for which
# "distance" is counted from the edge of the tile's output window, itself 92 pixels inside the
# tile).

# %%
top, left = (H - 512) // 2, (W - 512) // 2
region = image[:, top : top + 512, left : left + 512]
curves = {}
for seed in (0, 1, 2):
    torch.manual_seed(seed)
    curves[f"same, random init (seed {seed})"] = border_effect(UNet(3, 2, 8, 4, "same"),
                                                               region, 224)
curves["same, trained (60 steps)"] = border_effect(net_same, region, 224)
curves["valid twin (trained)"] = border_effect(net_valid, region[:, :508, :508], 316)
print("guard band:", same_context(net_same), "pixels; tiles per curve:",
      {k: v.n_tiles for k, v in curves.items()})

# %% mystnb={"figure": {"caption": "Border effect of zero padding.", "name": "fig-border-effect"}}
fig, (ax_max, ax_mean) = plt.subplots(1, 2, figsize=(11, 4))
plot_border_effect(ax_max, curves, stat="max")
plot_border_effect(ax_mean, curves, stat="mean")
fig.tight_layout()
plt.show()

# %%
def _at(effect, d):
    return f"{effect.relative_mean[d]:.2g}" if d < len(effect.distance) else "-"


display(Markdown(markdown_table(
    ["network", "mean at d=0", "d=8", "d=32", "d=64", "worst at d=0",
     "reach (max < 1e-4)"],
    [[name, _at(e, 0), _at(e, 8), _at(e, 32), _at(e, 64), f"{e.relative_max[0]:.2g}",
      f"{e.reach(1e-4)} px"] for name, e in curves.items()],
)))
same_curves = {n: e for n, e in curves.items() if n.startswith("same")}
trained = curves["same, trained (60 steps)"]
assert curves["valid twin (trained)"].relative_max.max() < 1e-5  # valid: rounding only
assert all(32 < e.reach(1e-4) <= same_context(net_same) for e in same_curves.values())
assert all(e.relative_max[0] > 1e-1 for e in same_curves.values())  # large at the border
assert all(e.relative_mean[-1] < 1e-5 for e in same_curves.values())  # gone at the centre
assert all(trained.relative_mean[32] < e.relative_mean[32]  # training shortens the tail
           for n, e in same_curves.items() if "random" in n)
assert all(e.relative_mean[32] > 0.05 for n, e in same_curves.items() if "random" in n)
assert trained.relative_mean[0] > 0.1 and trained.reach(1e-4) > 64  # ... but not the reach

# %% [markdown]
# What the measurement shows:
#
# * In the same-padding network the zero padding changes the prediction of the pixels at the
#   tile border by about as much as the logits vary across the image (relative values near 1,
#   worst pixels several times that).
# * For the randomly initialised networks the effect decays slowly: pixels 32 pixels inside
#   the tile still differ by around a tenth of the logits' spread.
# * It disappears only at the distance in the last column, about 90 pixels, close to half the
#   receptive field (204 pixels): beyond it no unit that influences the pixel can see the
#   border, and the curves drop abruptly to float32 rounding (about $10^{-6}$).
# * The briefly trained network's curve falls much faster: it was trained on 128x128 crops,
#   each with zero-padded borders, and has learnt to rely less on what lies near them. But
#   its border pixels are still off by a large fraction of the logits' spread, and its worst
#   pixels keep differing far into the tile (last column). Training teaches the network to live
#   with the borders; it cannot tell it what the missing image would have shown.
# * The valid network has no such curve: however the tile is cut, its outputs agree with the
#   reference to float32 rounding, at every distance.
#
# ## The overlap-tile strategy
#
# > Figure 2: Overlap-tile strategy for seamless segmentation of arbitrary large images
# > \[...\]. Prediction of the segmentation in the yellow area, requires image data within the
# > blue area as input. Missing input data is extrapolated by mirroring.
# > {cite:p}`ronneberger2015unet`
#
# With valid padding a 572x572 input tile yields the 388x388 pixels at its centre. To segment a
# whole image, `predict_tiled` lays out output windows that cover it, and cuts for each the
# input window 92 pixels larger on every side. Around the image, where that context does not
# exist, the image is extended by mirroring. The figure draws the plan of the paper's network
# on our photograph: the mirrored image (dimmed outside the white outline), every tile's output
# window (thin squares), and the input windows (dashed) of two tiles, for the paper's 572 tile
# and for a smaller one.

# %% mystnb={"figure": {"caption": "Mirroring and overlap-tile plans.", "name": "fig-tile-grid"}}
fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
m = paper.margin
show(axes[0], mirror_pad(picture, m, axes=(0, 1)), f"mirrored by {m} px",
     extent=(-m - 0.5, W + m - 0.5, H + m - 0.5, -m - 0.5))
axes[0].add_patch(plt.Rectangle((-0.5, -0.5), W, H, fill=False, edgecolor="white", lw=1.5))
plans = {}
for ax, tile, chosen in ((axes[1], 572, [(0, 0), (1, 1)]), (axes[2], 316, [(0, 0), (2, 3)])):
    plans[tile] = plot_tile_grid(ax, picture, paper, tile, highlight=chosen)
    py, px = plans[tile]
    ax.set_title(f"tile {tile} -> output {py.out}, stride {py.stride}: "
                 f"{len(py.starts)}x{len(px.starts)} tiles", fontsize=9)
fig.tight_layout()
plt.show()
assert [len(p.starts) for p in plans[572]] == [2, 2] and plans[572][0].stride == 384

# %% [markdown]
# ### The code
#
# The mirror extrapolation is an index computation: `mirror_indices` maps the rows (or
# columns) of an input window, which may reach outside the image, to rows inside it,
# reflecting about the border pixel without repeating it. A tile is then read with one
# fancy-indexing operation, however far it reaches out.

# %%
show_source(mirror_indices)

# %% [markdown]
# `predict_tiled` plans the tiles along each axis (`plan_axis`: output windows that cover the
# image, advancing by a multiple of `2**depth`), runs the network on batches of mirrored input
# windows, and writes each tile's output into its place (valid padding) or blends the
# overlapping outputs with a Hann window (same padding). Test-time augmentation averages the
# logits over flips (or the eight symmetries of the square).

# %%
show_source(predict_tiled)

# %% [markdown]
# Mirroring reflects about the border pixel without repeating it, so the image continues
# smoothly: vessels that leave the image come back as their mirror image, and the dark
# background outside the camera's field of view stays dark. The network never sees an edge
# that is not in the image. It is an extrapolation, not information: the predictions for the
# outermost pixels are still less certain than those in the middle, but they no longer depend
# on how the image was cut into tiles.
#
# ## Tile-size invariance, numerically
#
# If the overlap-tile strategy is seamless, the assembled segmentation must not depend on the
# tile size at all: it must equal a single pass of the network over the whole mirrored image
# (`predict_whole`), for every valid tile size. We check this for the valid twin with four tile
# sizes, from 25 tiles of 316x316 down to a single tile of 780x780.

# %%
reference = predict_whole(net_valid, image)
tiled, rows = {}, []
for tile in (316, 444, 572, 780):
    t0 = time.perf_counter()
    tiled[tile] = predict_tiled(net_valid, image, tile)
    seconds = time.perf_counter() - t0
    py, px = plan_axis(net_valid, H, tile), plan_axis(net_valid, W, tile)
    diff = (tiled[tile] - reference).abs().max().item()
    rows.append([tile, py.out, py.stride, len(py.starts) * len(px.starts), f"{diff:.1e}",
                 f"{seconds:.2f}"])
display(Markdown(markdown_table(
    ["tile", "output", "stride", "tiles", "max abs diff to one pass", "seconds"], rows)))
pairwise = max((tiled[a] - tiled[b]).abs().max().item() for a in tiled for b in tiled)
print(f"largest difference between any two tile sizes: {pairwise:.1e} "
      f"(logits range {reference.min():.1f} .. {reference.max():.1f})")
assert pairwise < 1e-4
assert all((t - reference).abs().max() < 1e-4 for t in tiled.values())

# %% [markdown]
# The differences are at the level of float32 rounding (different tile sizes make PyTorch sum
# the convolutions in a different order), or exactly zero. The same check on the paper's
# network itself, `UNet(3, 2, 64, 4)` with its 31 million (random) weights, on a 120x120 crop
# so that it stays fast: four 252x252 tiles against one 572x572 tile against one pass.

# %%
crop = image[:, 220:340, 200:320]
paper_ref = predict_whole(paper, crop)
paper_252 = predict_tiled(paper, crop, 252)
paper_572 = predict_tiled(paper, crop, 572)
print("tiles of 252:", len(plan_axis(paper, 120, 252).starts) ** 2, "| tiles of 572: 1")
for name, out in (("252 tiles", paper_252), ("572 tile", paper_572)):
    print(f"{name}: max abs diff to one pass {(out - paper_ref).abs().max().item():.1e}")
assert (paper_252 - paper_572).abs().max() < 1e-4
assert (paper_252 - paper_ref).abs().max() < 1e-4

# %% [markdown]
# ## Why tiles advance by multiples of 16
#
# > To allow a seamless tiling of the output segmentation map (see Figure 2), it is important
# > to select the input tile size such that all 2x2 max-pooling operations are applied to a
# > layer with an even x- and y-size. {cite:p}`ronneberger2015unet`, Sec. 2
#
# Even sizes are necessary but not sufficient. A 2x2 max-pool with stride 2 pools pixels
# (0, 1), (2, 3), ...; shift the input by one pixel and it pools (1, 2), (3, 4), ..., a
# different function. Four pooling steps make the network invariant only to shifts by
# multiples of $2^4 = 16$ pixels. A naive tiler advances by the output size, 388 pixels for the
# paper's tile, and $388 \bmod 16 = 4$: every tile would see the pooling grid shifted by 4 more
# pixels than its left neighbour. `predict_tiled` therefore advances by the output size rounded
# down to a multiple of 16 (384), and tiles overlap by a few output pixels, which they agree on.

# %%
rows = []
for tile in (252, 316, 444, 572, 780):
    out = paper.output_size(tile)
    rows.append([tile, out, out % 16, plan_axis(paper, 1000, tile).stride,
                 plan_axis(paper, 1000, tile, aligned=False).stride])
display(Markdown(markdown_table(
    ["tile", "output", "output mod 16", "aligned stride", "naive stride"], rows)))
assert paper.output_size(572) % 16 == 4

# %% [markdown]
# `aligned=False` makes `predict_tiled` behave like the naive tiler. With 316x316 tiles
# (132x132 outputs, $132 \bmod 16 = 4$) the five columns of tiles are shifted against the
# pooling grid by 0, 4, 8, 12 and 16 = 0 pixels, and the same for the rows, so only tiles
# whose row *and* column are shifted by a multiple of 16 agree with the seamless result.

# %%
naive = predict_tiled(net_valid, image, 316, aligned=False)
plan_y, plan_x = plan_axis(net_valid, H, 316, aligned=False), plan_axis(net_valid, W, 316,
                                                                        aligned=False)
seams = (naive - reference).abs()
tile_diffs = per_tile_max(naive - reference, plan_y, plan_x)
print("largest |naive - seamless| logit difference in each tile (rows x columns):")
print(np.array2string(tile_diffs, precision=2, suppress_small=True))
print(f"overall: max {seams.max():.2f}, mean {seams.mean():.3f}")
margin = net_valid.margin
on_grid_y = np.array([(s + margin) % 16 == 0 for s in plan_y.starts])
on_grid_x = np.array([(s + margin) % 16 == 0 for s in plan_x.starts])
on_grid = on_grid_y[:, None] & on_grid_x[None, :]
assert on_grid.sum() == 4  # the four corner tiles (shifts 0 and 16 in both directions)
assert tile_diffs[on_grid].max() < 1e-4  # tiles on the pooling grid agree
assert tile_diffs[~on_grid].min() > 1e-2  # all others differ: aligned=False is not seamless

# %% mystnb={"figure": {"caption": "Seams of misaligned tiles.", "name": "fig-seams"}}
prob_aligned, prob_naive = tiled[316].softmax(0)[1], naive.softmax(0)[1]
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
show(axes[0], prob_aligned, "aligned tiles (316): vessel probability", cmap="gray", vmin=0,
     vmax=float(prob_aligned.max()), colorbar=True)
show(axes[1], seams.amax(0), "|naive - aligned|, logits (log scale)", cmap="magma", log=True,
     vmin=1e-4, colorbar=True)
show(axes[2], (prob_naive - prob_aligned).abs(), "|naive - aligned|, probability",
     cmap="magma", colorbar=True)
for ax in axes[1:]:
    for s in plan_x.starts[1:]:
        ax.axvline(s + margin - 0.5, color="cyan", lw=0.6, ls=":")
    for s in plan_y.starts[1:]:
        ax.axhline(s + margin - 0.5, color="cyan", lw=0.6, ls=":")
fig.tight_layout()
plt.show()

# %% [markdown]
# The pooling phase is not a rounding matter: in every misaligned tile the logits change by
# four or more orders of magnitude more than float32 rounding, and the difference changes
# abruptly at the tile boundaries (dotted), where the phase jumps. Only the four corner tiles,
# whose row and column are both shifted by 0 or 16 pixels, agree. (The vessel map itself is
# what 60 training steps give: the large vessels and some of the small ones, at low
# probabilities; it is drawn with its own contrast.)
#
# ## Same padding: overlapping, blended tiles
#
# A same-padding network has no margin, so tiles need not overlap to cover the image; but we
# measured that a pixel near a tile border gets a different prediction than it would in the
# middle of a tile. If tiles simply abut (overlap 0), neighbouring pixels on either side of a
# tile boundary come from different tiles, each at its border, and the seams show. The usual
# remedy, implemented by `predict_tiled` for same padding, is to let tiles overlap, weight each
# tile's prediction with a window that falls off towards the tile border (a Hann window), and
# normalise by the summed weights. We compare both against the seam-free reference, one pass
# over the image mirrored by 112 pixels (`predict_whole`, beyond the reach measured above).

# %%
same_ref = predict_whole(net_same, image)
same_tiled, rows = {}, []
for tile, overlap in ((128, 0), (128, 64), (256, 0), (256, 128)):
    out = predict_tiled(net_same, image, tile, overlap=overlap)
    same_tiled[tile, overlap] = out
    py, px = plan_axis(net_same, H, tile, overlap), plan_axis(net_same, W, tile, overlap)
    n_tiles = len(py.starts) * len(px.starts)
    err = (out - same_ref).abs()
    prob_err = (out.softmax(0)[1] - same_ref.softmax(0)[1]).abs()
    rows.append([tile, overlap, n_tiles, f"{n_tiles * tile**2 / (H * W):.1f}",
                 f"{err.max():.2f}", f"{err.mean():.3f}", f"{prob_err.max():.2f}"])
valid_cost = len(plans[572][0].starts) * len(plans[572][1].starts) * 572**2 / (H * W)
rows.append(["valid, 572", "(margin 92)", 4, f"{valid_cost:.1f}",
             f"{(tiled[572] - reference).abs().max():.0e}", "0", "0"])
display(Markdown(markdown_table(
    ["tile", "overlap", "tiles", "pixels computed / image pixels", "max abs. logit error",
     "mean abs. logit error", "max abs. probability error"], rows)))
err_abut = (same_tiled[128, 0] - same_ref).abs()
err_blend = (same_tiled[128, 64] - same_ref).abs()
assert err_blend.mean() < err_abut.mean()  # blending helps ...
assert err_blend.max() > 1e-2  # ... but does not make same padding exact
assert valid_cost < min(float(r[3]) for r in rows if r[1] in (64, 128))

# %% mystnb={"figure": {"caption": "Same padding: abutting vs blended tiles.", "name": "fig-blend"}}
fig, axes = plt.subplots(1, 3, figsize=(15, 5))
show(axes[0], err_abut.amax(0), "overlap 0: |error|", cmap="magma", log=True, vmin=1e-3,
     vmax=float(err_abut.max()), colorbar=True)
show(axes[1], err_blend.amax(0), "overlap 64, Hann-blended: |error|", cmap="magma", log=True,
     vmin=1e-3, vmax=float(err_abut.max()), colorbar=True)
show(axes[2], same_tiled[128, 64].softmax(0)[1], "blended vessel probability", cmap="gray",
     vmin=0, colorbar=True)
fig.tight_layout()
plt.show()

# %% [markdown]
# With abutting tiles the error is concentrated on the tile boundaries, a visible grid. With
# overlapping, blended tiles the grid is gone: every pixel's prediction is dominated by the
# tiles in which it lies far from the border, and the weights change smoothly. But blending
# only hides the seams; the error does not go to zero, because no pixel is ever more than half
# a tile (64 or 128 pixels here) from the border of the tile that computes it, within the reach
# of the zero padding measured above. Exactness would need every tile to discard a band as
# wide as that reach, which is what the valid network does by construction, and it does so
# while processing fewer input pixels than the blended tilings (last row).
#
# ## An image smaller than the margin
#
# Mirroring is defined for any image, even one much smaller than the 92-pixel context each
# output pixel needs: the reflection simply repeats, periodically. Here is a 9x13 crop of the
# photograph (where a small vessel joins a larger one, in the real image) segmented by a
# single 204x204 tile, the smallest tile whose 20x20 output can advance on the pooling grid,
# and by 252x252 tiles.

# %%
tiny_picture = picture[121:130, 252:265]
tiny = image[:, 121:130, 252:265]
tiny_204 = predict_tiled(net_valid, tiny, 204)
tiny_252 = predict_tiled(net_valid, tiny, 252)
tiny_ref = predict_whole(net_valid, tiny)
print("output shape:", tuple(tiny_204.shape), "| 204 vs 252:",
      f"{(tiny_204 - tiny_252).abs().max():.1e}", "| 204 vs one pass:",
      f"{(tiny_204 - tiny_ref).abs().max():.1e}")
assert tiny_204.shape == (2, 9, 13)
assert (tiny_204 - tiny_252).abs().max() < 1e-4 and (tiny_204 - tiny_ref).abs().max() < 1e-4

# %% mystnb={"figure": {"caption": "A 9x13 image in one tile.", "name": "fig-tiny"}}
fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1.4, 1, 1]})
plot_tile_grid(axes[0], tiny_picture, net_valid, 204, title="input tile 204x204", dim=0.2)
show(axes[1], tiny_picture, "9x13 image")
show(axes[2], tiny_204.softmax(0)[1], "vessel probability", cmap="gray", vmin=0,
     colorbar=True)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## A 4000x4000 image in bounded memory
#
# The point of tiling is that memory is set by the tile, not by the image. For the paper's
# network on a 4000x4000 RGB image, compare tiled inference with 572x572 tiles against a
# single pass over the whole (mirror-extended) image. `activation_bytes` computes the sizes of
# all feature maps on PyTorch's `meta` device, which records shapes without allocating or
# computing anything.

# %%
side = 4000
plan_big = plan_axis(paper, side, 572)
per_tile = activation_bytes(paper, 572)
whole_side = paper.valid_input_size(side + 2 * paper.margin)
whole = activation_bytes(paper, whole_side)
GB = 1e9
display(Markdown(markdown_table(
    ["", "input", "largest feature map", "all feature maps"],
    [
        ["one 572x572 tile", f"{per_tile['input'] / GB:.3f} GB",
         f"{per_tile['largest_map'] / GB:.3f} GB", f"{per_tile['all_layer_outputs'] / GB:.2f} GB"],
        [f"one pass, {whole_side}x{whole_side}", f"{whole['input'] / GB:.2f} GB",
         f"{whole['largest_map'] / GB:.2f} GB", f"{whole['all_layer_outputs'] / GB:.1f} GB"],
    ],
)))
n_big = len(plan_big.starts) ** 2
print(f"{len(plan_big.starts)} x {len(plan_big.starts)} = {n_big} tiles of 572x572")
print(f"whole-image arrays: the (3, {side}, {side}) float32 image {3 * side**2 * 4 / GB:.2f} GB, "
      f"the (2, {side}, {side}) float32 logits {2 * side**2 * 4 / GB:.3f} GB")
assert n_big == 121
assert whole["all_layer_outputs"] > 40 * per_tile["all_layer_outputs"]
assert whole["largest_map"] > 8 * GB and per_tile["all_layer_outputs"] < 1 * GB

# %% [markdown]
# A single pass of the paper's network over the whole image would need tens of gigabytes of
# feature maps (more than eight for the largest single map alone); tiled, the feature maps of
# one tile take under a gigabyte, whatever the image size (a batch of `batch_size` tiles
# multiplies this). What grows with the image is only the image itself and the output (of
# which `predict_tiled` holds a few copies while it assembles and averages them).
#
# To see that this is not just arithmetic, we run tiled inference on a 4000x4000 image (our
# photograph, extended by mirroring) with 572x572 tiles and a very narrow network (4 channels
# at the first level; the full-width network takes seconds per tile on a CPU, minutes for the
# 121 tiles).

# %%
big = mirror_pad(image, 0, (side - H, side - W))
torch.manual_seed(0)
narrow = UNet(3, 2, 4, 4, "valid")
t0 = time.perf_counter()
big_out = predict_tiled(narrow, big, 572, batch_size=1)
print(f"{tuple(big.shape)} -> {tuple(big_out.shape)} in {time.perf_counter() - t0:.1f} s, "
      f"{n_big} tiles; the network's largest feature map per tile: "
      f"{activation_bytes(narrow, 572)['largest_map'] / 1e6:.0f} MB")
assert big_out.shape == (2, side, side) and torch.isfinite(big_out).all()
del big, big_out

# %% [markdown]
# ## Summary
#
# * A valid 3x3 convolution drops the border pixels it cannot compute; a same convolution
#   computes them from zeros. In a same-padding U-Net the zero padding changes predictions
#   near a tile border by about the spread of the logits, and the effect reaches (measured)
#   about 90 pixels into the tile, nearly half the receptive field; brief training shortens
#   its tail but not its reach.
# * The valid network's output is a fixed function of the image: tiled with mirroring and
#   aligned tiles, the result is the same for every tile size (float32 rounding at most) and
#   equals one pass over the mirrored image, for the narrow and for the full-width network,
#   and even for a 9x13 image.
# * Aligned means advancing by a multiple of $2^4 = 16$ pixels. Advancing by the output size
#   (388 for the paper's tile, $388 \bmod 16 = 4$) gives visible seams.
# * Same padding needs overlapping, blended tiles to hide the seams, and remains approximate.
# * Memory is bounded by the tile: 121 tiles of 572x572 for a 4000x4000 image.

# %%
print(f"chapter executed in {time.perf_counter() - chapter_started:.0f} s")
