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
# (chap-elastic)=
# # Elastic deformation
#
# > Data augmentation is essential to teach the network the desired invariance and robustness
# > properties, when only few training samples are available. [...] Especially random elastic
# > deformations of the training samples seem to be the key concept to train a segmentation
# > network with very few annotated images. We generate smooth deformations using random
# > displacement vectors on a coarse 3 by 3 grid. The displacements are sampled from a Gaussian
# > distribution with 10 pixels standard deviation. Per-pixel displacements are then computed
# > using bicubic interpolation. Drop-out layers at the end of the contracting path perform
# > further implicit data augmentation. {cite:p}`ronneberger2015unet`, Sec. 3.1
#
# The paragraph is short, and the deformation itself is specified in three sentences. This
# chapter makes them concrete. We draw the nine random vectors and the per-pixel field that
# interpolates them, warp a regular grid to see what the field does, and apply the deformation
# to an EM slice and to a retinal photograph together with their masks, next to a modern
# pipeline built on albumentations {cite:p}`buslaev2020albumentations`, checking that the masks
# stay binary and stay on the structures they label. Then we measure something the paper leaves
# implicit: the grid is tied to the image, so the same 10-pixel standard deviation deforms a
# small training patch much more strongly than the paper's 572x572 tile, until it folds the
# image over. We close with the cost of a deformation, the drop-out layers and how the released
# Caffe code differs.
#
# The deformation is `unet_core.augment`: `coarse_displacements` draws the vectors,
# `displacement_field` interpolates them, `warp` resamples, and `elastic_deform` does all three.
# The figures and the strain measurements come from `unet_book.augment_plots`.

# %%
import time
import timeit

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from unet_book.augment_plots import (
    deformation_statistics,
    grid_pattern,
    jacobian_determinant,
    mask_contrast,
    plot_augmented,
    plot_det_histograms,
    plot_displacements,
    plot_field_magnitude,
    plot_jacobian,
    plot_strain_vs_size,
)
from unet_book.plotting import show
from unet_book.source import show_source
from unet_book.tables import markdown_table
from unet_core.augment import (
    coarse_displacements,
    displacement_field,
    elastic_deform,
    make_augmentation,
    tile_displacement_field,
    warp,
)
from unet_core.data import resolve_dataset, shown_path
from unet_core.model import UNet

chapter_started = time.perf_counter()

# %% [markdown]
# The images are the first slice of the ISBI 2012 training stack
# {cite:p}`cardona2010isbi,arganda2015isbi`, the paper's own data (512x512, greyscale, with
# the membranes between cells as the mask), and the first photograph of the DRIVE training set
# {cite:p}`staal2004drive` (565x584, RGB, with the vessel mask and the circular field of view,
# FOV). When a data set is not in the data directory (`UNET_DATA_DIR`), its deterministic
# synthetic stand-in is used instead, and the cell below says so.

# %%
isbi, drive = resolve_dataset("isbi2012"), resolve_dataset("drive")
slices, photos = isbi.load("train"), drive.load("training")
for data, n in ((isbi, len(slices)), (drive, len(photos))):
    source = "SYNTHETIC stand-in (real data not found)" if data.synthetic else "real data"
    print(f"{data.name}: {source}, {n} training images, from {shown_path(data.root)}")
em, fundus = slices[0], photos[0]
print(f"EM slice {em.name}: {em.image.shape}, membranes on {em.membranes.mean():.0%} of pixels")
print(f"DRIVE {fundus.name}: {fundus.image.shape}, vessels on {fundus.vessels.mean():.1%}")
assert len(slices) == 30 and em.image.shape == (512, 512) and em.membranes.dtype == bool
assert fundus.image.shape == (584, 565, 3) and fundus.vessels.dtype == fundus.fov.dtype == bool

# %% [markdown]
# ## Why deform: thirty images
#
# The ISBI 2012 challenge provides 30 annotated slices. However many random tiles are cut from
# them, the network sees the same 30 pieces of tissue over and over, and a network with 31
# million parameters (chapter 1) can learn them by heart. Augmentation enlarges the training
# set with transformed copies whose labels are known for free, because the same transformation
# is applied to the mask. Which transformations are worth it depends on what varies between
# real images. For microscopy the paper names shifts, rotations, grey-value variations and,
# above all, deformations: in its introduction, deformation is "the most common variation in
# tissue", and realistic deformations "can be simulated efficiently". Sections stretch, tissue
# bends, and cells of one type come in slightly different shapes.
#
# Elastic distortions were introduced for handwritten digits by {cite:t}`simard2003elastic`,
# who smooth an independent random displacement per pixel with a Gaussian. The U-Net paper
# replaces the per-pixel noise by nine random vectors and a smooth interpolation between them.
#
# ## Nine random vectors, one smooth field
#
# `coarse_displacements(3, 10.0, rng)` draws the vectors: an array `(2, 3, 3)` holding a row
# and a column displacement, in pixels, for each point of a 3x3 grid, every entry drawn
# independently from $\mathcal N(0, 10^2)$. The grid points sit on the image corners, the edge
# mid-points and the centre. `displacement_field` interpolates them with a bicubic spline to a
# displacement $u(y, x)$ for every pixel. The convention of `warp` is *backward*: the output
# pixel at $(y, x)$ takes its value from position $(y + u_0, x + u_1)$ of the input.

# %%
coarse = coarse_displacements(3, 10.0, rng=5)  # (2, 3, 3) in pixels: rows, then columns
field = displacement_field(coarse, em.image.shape)  # (2, 512, 512)
print("row displacements (px):\n", coarse[0].round(1))
print("column displacements (px):\n", coarse[1].round(1))
print(f"per-pixel |u|: mean {np.hypot(*field).mean():.1f} px, max {np.hypot(*field).max():.1f} px")
corners = (slice(None), [[0], [-1]], [0, -1])
assert field.shape == (2, 512, 512)
assert np.allclose(field[corners], coarse[corners])  # the field passes through the vectors

# %% [markdown]
# In {numref}`fig-field` the thick red arrows are the nine drawn vectors and the thin yellow
# ones the interpolated field every 32 pixels, all drawn at three times their length. Each
# arrow points from an output pixel to the input position it samples. The field is smooth:
# neighbouring arrows barely differ, and over a 32-pixel step the field changes by a pixel or
# two. On the right is its magnitude, with the grid points circled.

# %% mystnb={"figure": {"caption": "The nine vectors and their field.", "name": "fig-field"}}
fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.8))
arrows = plot_displacements(left, em.image, coarse, field, step=32, exaggerate=3,
                            title="3x3 vectors (red) and per-pixel field (yellow), 3x length")
plot_field_magnitude(right, field, title="|u| per pixel")
fig.tight_layout()
plt.show()
assert arrows.coarse.N == 9 and arrows.dense.N == 16 * 16

# %% [markdown]
# The spline *interpolates*: at the grid points the field equals the drawn vectors, with a
# standard deviation of 10 pixels per component; in between it is a weighted average of
# several vectors with partly cancelling weights, and its spread is smaller. Measured over
# 500 draws (the statistics do not depend on the image size, so a 65x65 field suffices):

# %%
draws = np.stack([displacement_field(coarse_displacements(3, 10.0, rng), (65, 65))
                  for rng in range(500)])
spread = draws.std(axis=0)  # (2, 65, 65): standard deviation per pixel and component
mean_length = np.hypot(draws[:, 0], draws[:, 1]).mean()
print(f"std of a component: {spread[:, ::32, ::32].mean():.1f} px at the grid points, "
      f"{spread[:, 16::32, 16::32].mean():.1f} px at the cell centres, "
      f"{spread.mean():.1f} px on average; mean |u| {mean_length:.1f} px")
assert 9 < spread[:, ::32, ::32].mean() < 11
assert 5 < spread[:, 16::32, 16::32].mean() < 7 < spread.mean() < 9

# %% [markdown]
# ## What the field does to a grid
#
# Warping a pattern of straight lines shows the deformation directly
# ({numref}`fig-grid`): lines bend gently, cells are stretched on one side of the image and
# squeezed on another, and the EM slice next to them is distorted in the same way. At the
# border, positions outside the image are mirrored (`d c b | a b c d`, the extrapolation
# the paper uses for the overlap-tile strategy), so a vector pointing out of the image pulls in
# a mirrored copy of the border region instead of black. `elastic_deform` is exactly these
# three steps: with the same seed it draws the same nine vectors and returns the same pixels.

# %%
lines = warp(grid_pattern(em.image.shape, spacing=32), field, order=1)
checkers = warp(grid_pattern(em.image.shape, spacing=64, kind="checkerboard"), field, order=0)
deformed, deformed_membranes = elastic_deform(em.image, em.membranes, rng=5)
assert np.array_equal(deformed, warp(em.image, field, order=3))
assert np.array_equal(deformed_membranes, warp(em.membranes, field, order=0))

# %% mystnb={"figure": {"caption": "One field warps grid and slice.", "name": "fig-grid"}}
fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
show(axes[0], em.image, "original slice", cmap="gray")
show(axes[1], lines, "grid lines (32 px), warped", cmap="gray_r")
show(axes[2], checkers, "checkerboard (64 px), warped", cmap="gray")
show(axes[3], deformed, "slice, warped", cmap="gray")
fig.tight_layout()
plt.show()

# %% [markdown]
# ### The code
#
# `elastic_deform` in the library, shown from the source that runs: the three steps above,
# with the image resampled by a cubic spline and every mask by nearest neighbour at the same
# positions (next section).

# %%
show_source(elastic_deform)

# %% [markdown]
# ## Image and masks move together
#
# A deformed image is only useful with a mask that is deformed identically, and the mask must
# remain a mask. `elastic_deform(image, *masks)` resamples the image with a cubic spline and
# every mask by nearest neighbour at the same positions, so a mask never gets values it did
# not have: a boolean mask stays boolean, an instance labelling keeps its labels.
#
# The modern alternative in `unet_core` is `make_augmentation("albumentations")`, an
# albumentations pipeline (not in the paper) that applies, each with its own probability:
# horizontal and vertical flips (0.5 each), a rotation by a multiple of 90 degrees (0.5, square
# images only), `ElasticTransform` (0.5; Simard-style smoothed noise, `alpha=300`,
# `sigma=20`), `GridDistortion` (0.3; 5x5 cells, each side scaled by up to ±30 %) and a
# random brightness and contrast change (0.5, up to 20 %). Its masks also go through nearest
# neighbour. Both transforms are called as `transform(image, *masks, rng=rng)`.
#
# For each image we draw two paper deformations and two pipeline outputs from one seeded
# generator.

# %%
paper = make_augmentation("paper")  # ElasticDeformation(sigma=10.0, grid=3, order=3)
modern = make_augmentation("albumentations")
rng = np.random.default_rng(5)
em_views = ([(em.image, em.membranes)]
            + [paper(em.image, em.membranes, rng=rng) for _ in range(2)]
            + [modern(em.image, em.membranes, rng=rng) for _ in range(2)])
fundus_views = ([(fundus.image, fundus.vessels, fundus.fov)]
                + [paper(fundus.image, fundus.vessels, fundus.fov, rng=rng) for _ in range(2)]
                + [modern(fundus.image, fundus.vessels, fundus.fov, rng=rng) for _ in range(2)])
titles = ["original", "paper, draw 1", "paper, draw 2", "albumentations, draw 1",
          "albumentations, draw 2"]

# %% mystnb={"figure": {"caption": "Membranes move with the slice.", "name": "fig-em-views"}}
fig = plot_augmented([v[0] for v in em_views], [v[1] for v in em_views], titles,
                     zoom=(slice(192, 320), slice(192, 320)), colour=(1.0, 0.45, 0.0))
plt.show()

# %% mystnb={"figure": {"caption": "Vessels move with the photo.", "name": "fig-drive-views"}}
fig = plot_augmented([v[0] for v in fundus_views], [v[1] for v in fundus_views], titles,
                     zoom=(slice(150, 214), slice(90, 154)), linewidth=0.8)
plt.show()

# %% [markdown]
# In {numref}`fig-em-views` and {numref}`fig-drive-views` the top row shows every view with
# its mask blended in (membranes in orange, vessels in cyan) and the white square marks the
# window enlarged below, where the mask is drawn as an outline over the image. The window is
# the same *output* region in every column, so the tissue inside it moves from column to
# column, and the outline moves with it. Each albumentations draw applies a random subset of
# its transforms: flips and rotations are obvious, a darker or brighter view had a
# brightness/contrast change, and a wavy outline of DRIVE's field of view is the grid
# distortion at work. DRIVE's photographs are not square, so the pipeline never rotates them by
# 90 degrees.
#
# Two checks, in numbers. *Binary*: every mask comes back as a boolean array of the image's
# size, with no values in between. *Aligned*: vessels in the green channel and membranes in EM
# are darker than their surroundings, so the *mask contrast*, the mean grey value off the mask
# minus the mean on it, divided by the standard deviation (inside the FOV for DRIVE), is large
# only when the mask lies on the structures. Every augmented view must keep at least 80 % of
# the original's contrast, and, as a control showing that the measure notices a misalignment,
# the original mask shifted by 3 pixels against its own image must lose more than 20 %.

# %% mystnb={"markdown_format": "gfm"}
for image, mask, *fov in em_views + fundus_views:
    assert mask.dtype == bool and mask.shape == image.shape[:2]
    assert set(np.unique(mask)) <= {False, True} and all(f.dtype == bool for f in fov)

em_contrast = [mask_contrast(image, mask) for image, mask in em_views]
fundus_contrast = [mask_contrast(image[..., 1], mask, fov) for image, mask, fov in fundus_views]
shifted = [mask_contrast(em.image, np.roll(em.membranes, 3, axis=1)),
           mask_contrast(fundus.image[..., 1], np.roll(fundus.vessels, 3, axis=1), fundus.fov)]
body = [[name, f"{c_em:.2f}", f"{c_fu:.2f}"]
        for name, c_em, c_fu in zip(titles, em_contrast, fundus_contrast, strict=True)]
body.append(["control: original mask shifted 3 px", f"{shifted[0]:.2f}", f"{shifted[1]:.2f}"])
display(Markdown(markdown_table(["view", "EM membranes", "DRIVE vessels (green, FOV)"], body,
                                align="lrr")))
for contrast, control in ((em_contrast, shifted[0]), (fundus_contrast, shifted[1])):
    assert control < 0.8 * contrast[0] < min(contrast)

# %% [markdown]
# The thin vessels are the more sensitive test: a 3-pixel shift costs them about half their
# contrast (the thicker membranes about a quarter), while the augmented views keep at least four
# fifths of it, mostly far more. A pure flip or rotation keeps it exactly; the small changes
# come from interpolation, which blurs the image slightly but not the mask, from the
# brightness/contrast transform, which can clip, and from pulling mirrored border content into
# the view.
#
# ## The grid is tied to the image: small patches deform more
#
# In the paper's setting the deformation acts on a 512x512 slice or on a 572x572 tile (the
# tile of its Fig. 1); either way the grid spacing is about 256 to 286 pixels. A training
# pipeline that cuts *small* patches and deforms each patch (as `PatchSampler` does with a
# `transform`, applied to the input-sized patch) puts the same nine 10-pixel vectors on a much
# smaller grid: the displacements keep their size, but the distance over which they change
# shrinks, and what matters for the shape of the tissue is the *gradient* of the field, the
# strain.
#
# Two numbers describe it at every pixel. The strain $\partial u_i/\partial x_j$: 0.1 means
# roughly that two pixels 10 apart end up 9 to 11 apart. And the Jacobian determinant of the
# sampling map $p \mapsto p + u(p)$, the local change of area: 1 means none, 0.5 that the
# output shows a source area half as large (the content is stretched to twice its area), and
# 0 or less that the map *folds*: the output shows the same tissue twice, once mirrored, an
# image no microscope can produce. Because the field is the same spline stretched to the
# patch, its gradient scales exactly like $1/(n-1)$ for a patch of side $n$.
#
# {numref}`fig-same-vectors` shows this for one set of nine vectors, applied once to a 572
# tile and once to a 128 patch. We picked, out of 300 draws, the one that deforms the 128 patch
# most, to show what a fold looks like.

# %%
candidates = [coarse_displacements(3, 10.0, rng) for rng in range(300)]
worst = min(candidates,
            key=lambda c: jacobian_determinant(displacement_field(c, (128, 128))).min())
fields = {n: displacement_field(worst, (n, n)) for n in (572, 128)}
dets = {n: jacobian_determinant(f) for n, f in fields.items()}
for n in (572, 128):
    print(f"{n}x{n}: det J from {dets[n].min():.2f} to {dets[n].max():.2f}, "
          f"{np.mean(dets[n] <= 0):.1%} of the pixels folded")
assert dets[572].min() > 0.5 and dets[128].min() < 0

# %% mystnb={"figure": {"caption": "Same vectors, 572 vs 128 px.", "name": "fig-same-vectors"}}
fig, axes = plt.subplots(2, 2, figsize=(9, 8.4))
for col, n in enumerate((572, 128)):
    pattern = warp(grid_pattern((n, n), spacing=n // 8, width=n // 128), fields[n], order=1)
    show(axes[0, col], pattern, f"{n}x{n}: grid of 8x8 cells, warped", cmap="gray_r")
    plot_jacobian(axes[1, col], dets[n], title=f"{n}x{n}: det J (black line: det J = 0)")
fig.tight_layout()
plt.show()

# %% [markdown]
# On the 572 tile the grid cells change their area by at most about 25 %. On the 128 patch the
# same vectors squeeze some cells to nothing and turn others inside out: inside the black
# outline the grid runs backwards. How typical is this? `deformation_statistics` draws 100
# deformations and measures each one's peak strain (the largest
# $|\partial u_i/\partial x_j|$), its smallest determinant and its folded pixels. With one seed
# it draws the same 100 sets of vectors at every patch size, so that only the size differs.

# %% mystnb={"markdown_format": "gfm"}
sizes = [64, 96, 128, 188, 256, 388, 572]
stats = {n: deformation_statistics(n, n_draws=100, rng=0) for n in sizes}
body = [[n, f"{np.median(s.max_gradient):.2f}", f"{np.median(s.min_det):.2f}",
         f"{s.fold_probability:.0%}", f"{s.folded.mean():.3%}"] for n, s in stats.items()]
display(Markdown(markdown_table(
    ["patch side", "median peak strain", "median smallest det J", "draws that fold",
     "pixels folded"], body, align="rrrrr")))
ratio = np.median(stats[128].max_gradient) / np.median(stats[572].max_gradient)
print(f"strain(128) / strain(572) = {ratio:.2f}; (572 - 1) / (128 - 1) = {571 / 127:.2f}")
assert abs(ratio / (571 / 127) - 1) < 0.1
assert round(np.median(stats[572].max_gradient), 2) in (0.14, 0.15, 0.16)
assert stats[572].fold_probability == stats[388].fold_probability == 0
assert 0.6 < np.median(stats[128].max_gradient) < 0.75 and stats[128].fold_probability <= 0.02
assert 0.05 < stats[96].fold_probability < 0.3
assert stats[64].fold_probability > 0.5

# %% [markdown]
# The author of `unet_core.augment` quotes a median peak strain of 0.14 for 572, 0.32 for 256
# and 0.64 for 128; our 100 draws per size agree to within a few hundredths, and because they
# are the same draws at every size, the ratio between sizes is that of the $1/(n-1)$ law. On
# the paper's tile the strongest local stretch of a typical draw is about 15 %, and no draw
# folds. At 188, the smallest valid input of the paper's network, the strain is three times
# the paper's. At 128 a typical draw halves the area somewhere, and folds are rare: none of
# these 100 draws folds, the worst of the 300 draws above does. At 96 about one draw in seven
# folds, at 64 most do.
#
# What does that mean for $\sigma$? To give an $n$-pixel patch the paper's strain, scale the
# standard deviation with the grid spacing, $\sigma_n = 10\,(n-1)/571$ pixels: 2.2 pixels for
# a 128 patch. That keeps the shapes right but also shrinks the displacements to about 2
# pixels, which matters little, because random cropping already provides the shifts. The
# alternative keeps both: deform a 572 tile (or the whole image), then cut the patch from its
# centre, at the price of deforming 20 times more pixels than the patch has (timed below).
# {numref}`fig-strain` compares both with the paper's tile and with the naive 10 pixels on 128.

# %%
scaled = deformation_statistics(128, sigma=10 * 127 / 571, n_draws=100, rng=0)
cropped = deformation_statistics(128, crop_from=572, n_draws=100, rng=0)
for s in (stats[572], stats[128], scaled, cropped):
    print(f"{s.label:>32}: median peak strain {np.median(s.max_gradient):.2f}, "
          f"{s.fold_probability:.0%} of draws fold")
paper_strain = np.median(stats[572].max_gradient)
assert abs(np.median(scaled.max_gradient) / paper_strain - 1) < 0.1
assert np.median(cropped.max_gradient) <= paper_strain
assert scaled.fold_probability == cropped.fold_probability == 0

# %% [markdown]
# Training in `unet_core` takes the second remedy, without deforming the whole tile: with
# `elastic_tile=572` (the default of `TrainConfig`), `ElasticDeformation(tile=572, context=40)`
# lays the 3x3 grid over a virtual 572 tile, puts the patch at a random place in it, and
# evaluates the field only on the patch (`tile_displacement_field`), which is exactly the
# window of the tile's field. The patch sampler hands it the patch with 40 pixels ($4\sigma$)
# of real image around it, so that what the field pulls in from beyond the patch is image, as
# it would be in the deformed tile. The strain of 100 such patches:

# %%
window_rng = np.random.default_rng(0)
in_tile = []
for _ in range(100):
    vectors = coarse_displacements(3, 10.0, window_rng)
    top, left = window_rng.integers(0, 572 - 128 + 1, size=2)
    window_field = tile_displacement_field(vectors, 572, (top, left, 128, 128))
    in_tile.append(max(float(np.abs(g).max()) for comp in window_field
                       for g in np.gradient(comp)))
print(f"128 patch in a 572 tile (the training path): median peak strain "
      f"{np.median(in_tile):.2f}, against {paper_strain:.2f} on the paper's tile and "
      f"{np.median(stats[128].max_gradient):.2f} with the grid on the patch")
assert np.median(in_tile) <= 1.1 * paper_strain

# %% mystnb={"figure": {"caption": "Strain against patch size.", "name": "fig-strain"}}
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
plot_det_histograms(left, [stats[572], stats[128], scaled, cropped])
left.set_title("where the area changes: det J over pixels and draws", fontsize=9)
plot_strain_vs_size(right, list(stats.values()))
right.set_title("peak strain and folding against patch side (sigma = 10 px)", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# On the left of {numref}`fig-strain` (note the logarithmic scale), the determinant on the
# paper's tile stays between about 0.75 and 1.3. With $\sigma = 10$ on a 128 patch it spreads
# from near 0 to above 2.5 (no fold among these draws, but close). Both remedies bring it back
# to the paper's distribution; the centre crop is even a little narrower, because the centre of
# the tile is a grid point, and the field varies least around its grid points. On the right, the
# measured peak strain follows the $1/(n-1)$ law over the whole range, and folding sets in
# around 128 pixels and becomes common below 100.
#
# ## Speed
#
# How long does one deformation take? The timings below are means of ten calls, measured on
# the machine that built this page (two CPU cores shared with other work, so they vary by a
# factor of two from build to build): the paper's deformation with the default cubic
# interpolation of the image and with linear interpolation (`order=1`), and the
# albumentations pipeline, each on a greyscale tile with one mask, and on the RGB DRIVE
# photograph with its two masks.

# %% mystnb={"markdown_format": "gfm"}
tile = np.ascontiguousarray(np.tile(em.image, (2, 2))[:572, :572])  # a 572x572 EM tile
tile_mask = np.ascontiguousarray(np.tile(em.membranes, (2, 2))[:572, :572])
linear = make_augmentation("paper", order=1)
cases = [
    ("paper, cubic", "572x572 grey + 1 mask", paper, (tile, tile_mask)),
    ("paper, linear (order=1)", "572x572 grey + 1 mask", linear, (tile, tile_mask)),
    ("albumentations", "572x572 grey + 1 mask", modern, (tile, tile_mask)),
    ("paper, cubic", "128x128 grey + 1 mask", paper, (tile[:128, :128], tile_mask[:128, :128])),
    ("albumentations", "128x128 grey + 1 mask", modern, (tile[:128, :128],
                                                       tile_mask[:128, :128])),
    ("paper, cubic", "584x565 RGB + 2 masks", paper, (fundus.image, fundus.vessels, fundus.fov)),
    ("albumentations", "584x565 RGB + 2 masks", modern, (fundus.image, fundus.vessels,
                                                        fundus.fov)),
]
timing_rng = np.random.default_rng(0)
ms = {}
for name, size, transform, arrays in cases:
    seconds = timeit.timeit(lambda t=transform, a=arrays: t(*a, rng=timing_rng), number=10)
    ms[name, size] = 1e3 * seconds / 10
display(Markdown(markdown_table(["transform", "input", "ms per call, mean of 10 (this machine)"],
                                [[name, size, f"{t:.1f}"] for (name, size), t in ms.items()],
                                align="llr")))
cubic_572 = ms["paper, cubic", "572x572 grey + 1 mask"]
linear_572 = ms["paper, linear (order=1)", "572x572 grey + 1 mask"]
cubic_128 = ms["paper, cubic", "128x128 grey + 1 mask"]
print(f"paper: cubic / linear at 572: {cubic_572 / linear_572:.1f}; 572 tile / 128 patch: "
      f"{cubic_572 / cubic_128:.0f} (ratio of pixels: {572**2 / 128**2:.0f})")
assert all(t > 0 for t in ms.values())

# %% [markdown]
# The absolute numbers, and even their ratios, move from build to build on a shared machine (the
# ratios printed above are this build's). What holds throughout: cubic interpolation of the
# image costs more than linear; a 572 tile, with 20 times the pixels, cost 15 to 50 times as
# much as a 128 patch in our builds; and the albumentations pipeline (OpenCV underneath) costs
# much less than the paper's deformation on the RGB photograph, where the cubic spline resamples
# each colour channel separately. The pipeline's cost also varies from call to call, because its
# random draws switch transforms on and off. Either way, augmentation is cheap next to the
# network: one forward pass through the paper's U-Net on a 572x572 tile costs 150 billion
# multiply-accumulates (chapter 1), and a training step roughly three times that. Deforming a
# 572 tile to cut a 128 patch from it costs the 572 row of the table rather than the 128 row:
# affordable, and easily spread over the workers of a data loader.
#
# ## Drop-out: augmentation inside the network
#
# The last sentence of the quotation is about the network, not the data: drop-out layers at the
# end of the contracting path. In `unet_core`, `UNet(..., dropout=p)` adds one
# `torch.nn.Dropout` after the bottom block, which zeroes every activation independently with
# probability $p$ during training (and scales the others by $1/(1-p)$), as Caffe's `Dropout`
# layer, which the paper used, does; `torch.nn.Dropout2d` would zero whole feature maps.
# The paper does not state $p$; `unet_core`'s documentation
# notes that 0.5 is Caffe's default and the released model's setting. Two training-mode passes
# over the same tile then run two different random sub-networks, a perturbation of the
# features rather than of the input, while in evaluation mode drop-out is switched off. A
# narrow network (8 channels at the first level) and the smallest valid tile are enough to see
# it:

# %%
torch.manual_seed(0)
net = UNet(1, 2, 8, 4, "valid", dropout=0.5)
x = torch.from_numpy(em.image[:188, :188] / 255.0).float()[None, None]
with torch.no_grad():
    net.train()
    first, second = net(x), net(x)
    net.eval()
    third, fourth = net(x), net(x)
print(f"training mode: outputs differ by up to {float((first - second).abs().max()):.3f}; "
      f"evaluation mode: identical = {bool(torch.equal(third, fourth))}")
assert not torch.equal(first, second) and torch.equal(third, fourth)

# %% [markdown]
# ## What the released code did differently
#
# The text of the paper is the specification this book follows. According to the notes in
# `unet_core.augment`, the Freiburg group's later public Caffe code (the `CreateDeformation`
# layer of the 3D U-Net and U-Net plugin releases) generates its deformation differently, in
# two ways (we have not re-run that code here):
#
# * **The control grid is set by a spacing in pixels**, on a lattice that reaches beyond the
#   image, not by a fixed 3x3 grid on the image corners. With a spacing in pixels, the strain
#   no longer depends on the patch size: the dependence measured above does not arise, and a
#   small patch gets the same local deformation as a large tile.
# * **The field is a cubic B-spline *approximation*** of the random control values rather than
#   an interpolating spline: the field does not pass through the drawn vectors. If the control
#   values are drawn independently with the same $\sigma$, it is also weaker: at a control
#   point the field is a weighted average of the neighbouring values, with the B-spline weights
#   $(1, 4, 1)/6$ along each axis, and its standard deviation is the one computed below,
#   against 10 pixels at the grid points of the interpolating spline.

# %%
weights = np.outer([1, 4, 1], [1, 4, 1]) / 36  # cubic B-spline weights at a knot, in 2D
at_knot = 10.0 * np.sqrt((weights**2).sum())
print(f"std of a component at a control point: {at_knot:.1f} px (B-spline, sigma = 10)")
assert at_knot == 5.0

# %% [markdown]
# A setting copied from the released code therefore does not translate one-to-one into the
# paper's 3x3 interpolating grid, and vice versa: compare deformations by their strain
# (or Jacobian determinant), as in this chapter, rather than by $\sigma$ alone.
#
# ## Summary
#
# * The paper's deformation is nine Gaussian vectors (10 pixels standard deviation per
#   component) on a 3x3 grid through the image corners, interpolated bicubically. The field
#   passes through the vectors; between them its spread falls to about 6 pixels, and the mean
#   displacement of a pixel is about 10 pixels.
# * Masks are resampled by nearest neighbour at the same positions as the image: they stay
#   binary and aligned, for the paper's deformation and for the albumentations pipeline
#   alike, on EM and on DRIVE (checked by the mask contrast, which a 3-pixel misalignment
#   visibly reduces).
# * The grid is tied to the image, so the strain scales as $1/(n-1)$ with the patch side. On
#   the paper's 572 tile the median peak strain is about 0.15 and nothing folds; on a 128
#   patch it is about 0.68 and folds become possible; below 100 pixels they are common, and
#   at 64 most draws fold. For small patches, scale $\sigma$ to $10\,(n-1)/571$ (2.2 pixels
#   at 128) or deform a large tile and crop.
# * One deformation of a 572 tile takes well under a fifth of a second on this machine, far
#   less than a training step.

# %%
print(f"chapter executed in {time.perf_counter() - chapter_started:.0f} s")
