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
# (chap-weight-map)=
# # The loss and its weight map
#
# > We pre-compute the weight map for each ground truth segmentation to compensate the
# > different frequency of pixels from a certain class in the training data set, and to force
# > the network to learn the small separation borders that we introduce between touching cells.
# > {cite:p}`ronneberger2015unet`, Sec. 3
#
# Section 3 of the paper defines the training objective in two equations: a cross-entropy
# summed over the pixels (Eq. 1), in which every pixel carries a weight, and the weight map
# itself (Eq. 2), which adds a large weight to the background pixels squeezed between two
# cells. The paper shows the result only on a picture of HeLa cells (its Fig. 3). This
# chapter computes it on the ISBI 2012 electron-microscopy labels
# {cite:p}`cardona2010isbi,arganda2015isbi`, the paper's first task: the instances and the
# two distance maps it is built from, the map itself zoomed on the thinnest gaps, its profile
# across one gap, the class-balancing term, the influence of $w_0$ and $\sigma$, where the
# weight goes, how long it takes, and, with a deliberately blurred prediction, where the
# weighted loss puts its mass.
#
# The computations are `unet_core.weights` (Eq. 2) and `unet_core.losses` (Eq. 1); the
# figures are drawn by `unet_book.weight_plots`. Every number in the text is printed by a
# code cell, and the key facts are checked by `assert`s.

# %%
import time
import timeit

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

from unet_book.source import show_source
from unet_book.tables import markdown_table
from unet_book.weight_plots import (
    Panel,
    blurred_logits,
    densest_window,
    describe_machine,
    gap_profile,
    instance_colours,
    near_two_cells,
    per_pixel_loss,
    plot_maps,
    plot_parameter_grid,
    plot_profile,
    plot_profile_map,
    plot_weight_histogram,
    thin_gap_window,
    thinnest_gap_point,
    two_cells,
    weight_mass_near_borders,
)
from unet_core.data import resolve_dataset, shown_path
from unet_core.losses import weighted_cross_entropy
from unet_core.weights import (
    balanced_class_weights,
    class_weight_map,
    distance_maps,
    instances_from_membranes,
    weight_map,
)

chapter_started = time.perf_counter()
W0, SIGMA = 10.0, 5.0  # the paper: "we set w0 = 10 and sigma ~ 5 pixels"

# %% [markdown]
# ## The energy function
#
# > The energy function is computed by a pixel-wise soft-max over the final feature map
# > combined with the cross entropy loss function. {cite:p}`ronneberger2015unet`, Sec. 3
#
# The network's last layer gives, at every pixel $\mathbf{x}$ of the output map
# $\Omega \subset \mathbb{Z}^2$, one activation $a_k(\mathbf{x})$ per class $k = 1, \dots, K$
# (here $K = 2$: membrane and cell interior). The soft-max turns them into probabilities,
#
# $$
# p_k(\mathbf{x}) = \frac{\exp\big(a_k(\mathbf{x})\big)}
#                        {\sum_{k'=1}^{K} \exp\big(a_{k'}(\mathbf{x})\big)},
# $$ (eq-pixel-softmax)
#
# and the energy adds up, over all pixels, the log-probability of the true label
# $\ell(\mathbf{x})$, each pixel weighted by $w(\mathbf{x})$:
#
# $$
# E = -\sum_{\mathbf{x} \in \Omega} w(\mathbf{x}) \, \log p_{\ell(\mathbf{x})}(\mathbf{x}).
# $$ (eq-weighted-energy)
#
# {eq}`eq-weighted-energy` is the paper's Eq. 1 with two readings made explicit in
# `unet_core.losses.weighted_cross_entropy`: the paper prints it without the minus sign (a
# cross-entropy is minimised, so the negative log-likelihood is meant), and the library
# divides by the number of pixels (a mean instead of a sum; with a fixed tile size that only
# rescales the learning rate). With $w \equiv 1$ this is the ordinary pixel-wise
# cross-entropy. The weight map is where the paper's two concerns enter:
#
# $$
# w(\mathbf{x}) = w_c(\mathbf{x})
#   + w_0 \exp\left( -\frac{\big(d_1(\mathbf{x}) + d_2(\mathbf{x})\big)^2}{2\sigma^2} \right),
# $$ (eq-weight-map)
#
# > where $w_c$ is the weight map to balance the class frequencies, $d_1$ denotes the distance
# > to the border of the nearest cell and $d_2$ the distance to the border of the second
# > nearest cell. In our experiments we set $w_0 = 10$ and $\sigma \approx 5$ pixels.
# > {cite:p}`ronneberger2015unet`, Sec. 3
#
# The second term, the *separation term*, is close to $w_0$ where $d_1 + d_2$ is small, i.e.
# on a background pixel that has two different cells within a few pixels, and vanishes
# elsewhere. Why it is needed: the network classifies pixels, but what we want in the end are
# *cells*, read off as the connected components of the cell class. Two cells that touch are
# kept apart by a border of background only a few pixels wide. Getting one of those pixels
# wrong costs next to nothing in an unweighted pixel-wise loss, yet merges two cells. The
# separation term makes exactly these pixels expensive.

# %% [markdown]
# ### The code
#
# {eq}`eq-weighted-energy` in the library: a soft-max cross-entropy per pixel, multiplied by
# the weight map, averaged over the pixels that count (the `mask`, for example DRIVE's field
# of view). The same function accepts a one-channel sigmoid output (then the soft-max over two
# classes is the sigmoid).

# %%
show_source(weighted_cross_entropy)

# %% [markdown]
# {eq}`eq-weight-map` is `weight_map`: the class-balancing term $w_c$ plus the separation
# term, computed from the distances to the nearest and second-nearest cell
# (`distance_maps`). The sections below take it apart on ISBI 2012.

# %%
show_source(weight_map)

# %% [markdown]
# ## ISBI 2012 labels as cell instances
#
# `resolve_dataset` finds the ISBI 2012 training set under the data directory
# (`UNET_DATA_DIR`), or, when it is absent, a synthetic stand-in in the same layout; the cell
# below says which one this build used. Numbers from the stand-in are not ISBI results.

# %%
isbi = resolve_dataset("isbi2012")
train = isbi.load("train")
source = "SYNTHETIC stand-in (real ISBI 2012 not found)" if isbi.synthetic else "real ISBI 2012"
print(f"{source}: {len(train)} training slices of {train[0].image.shape}, "
      f"from {shown_path(isbi.root)}")
assert len(train) == 30 and train[0].image.shape == (512, 512)

# %% [markdown]
# A label image marks every pixel as membrane (the challenge's label 0, drawn black) or cell
# interior (255, white). Eq. 2 needs *instances*: which cell each interior pixel belongs to.
# They are the connected components of the interior, with 4-connectivity so that a
# one-pixel diagonal membrane still separates two cells (`instances_from_membranes`). In the
# language of `unet_core.weights`, the membranes are the "background" (label 0) and the cells
# are numbered $1, \dots, K$. Unlike the paper's HeLa cells, EM cells do not touch: every
# cell is already enclosed by its membrane, so the "separation borders" are the membranes
# themselves, and the weight map will single out the places where they are thinnest.

# %%
sample = train[0]
cells = instances_from_membranes(~sample.membranes)  # interior = not membrane
n_cells = int(cells.max())
sizes = np.bincount(cells.ravel())[1:]
print(f"slice {sample.name}: {sample.membranes.mean():.1%} membrane pixels, {n_cells} cells, "
      f"median area {np.median(sizes):.0f} px (smallest {sizes.min()}, largest {sizes.max()})")
assert 50 < n_cells < 300
assert np.array_equal(cells == 0, sample.membranes)  # every interior pixel is in some cell
all_cells = [instances_from_membranes(~s.membranes) for s in train]  # every training slice
per_slice_cells = [int(c.max()) for c in all_cells]
print(f"cells per training slice: {min(per_slice_cells)} to {max(per_slice_cells)}")

# %% [markdown]
# ## Balancing the classes: $w_c$
#
# The paper computes $w_c$ from "the frequency of pixels from a certain class in the training
# data set". `balanced_class_weights` counts the two classes over all 30 label images and
# returns the inverse frequencies, normalised so that the mean of $w_c$ over the data set is
# 1: $w_c = N / (2 n_c)$ for a class with $n_c$ of the $N$ pixels. Both classes then carry the
# same total weight.

# %%
class_weights = balanced_class_weights(s.labels for s in train)  # labels: 255 = interior
w_membrane, w_interior = class_weights  # label 0 (membrane) is the "background" class
fractions = np.array([s.membranes.mean() for s in train])
membrane_share = float(np.mean(fractions))  # all slices have the same size
print(f"membrane pixels: {membrane_share:.1%} of the training set "
      f"({fractions.min():.1%} to {fractions.max():.1%} per slice)")
print(f"w_c = {w_membrane:.3f} on membrane, {w_interior:.3f} on cell interior")
assert 0.15 < membrane_share < 0.30
assert np.isclose(w_membrane, 1 / (2 * membrane_share))
assert np.isclose(w_interior, 1 / (2 * (1 - membrane_share)))
assert np.isclose(membrane_share * w_membrane, (1 - membrane_share) * w_interior)  # half each

# %% [markdown]
# The membrane class, about a fifth of the pixels, gets a weight above 2; the interior about
# 0.64. Training does the same: `unet_train.recipe.loss_weight_maps` counts the classes over
# the whole training set, and on DRIVE only inside the field of view, the pixels the loss
# sees (the vessels' share there is higher than over the whole photograph with its black
# surround).
# `weight_map(..., class_weights=None)` would balance each image by its own frequencies
# instead; the membrane weight then varies from slice to slice with the membrane fraction,
# as below.

# %%
per_slice = 1 / (2 * fractions)
print(f"per-slice w_c on membrane: {per_slice.min():.2f} to {per_slice.max():.2f} "
      f"(data set: {w_membrane:.2f}, i.e. {per_slice.min() / w_membrane - 1:+.0%} to "
      f"{per_slice.max() / w_membrane - 1:+.0%})")
assert per_slice.min() < w_membrane < per_slice.max()

# %% [markdown]
# ## $d_1$, $d_2$ and the weight map on one slice
#
# `distance_maps` gives, for every pixel, the distance $d_1$ to the nearest cell and $d_2$ to
# the second nearest (a different cell); `weight_map` evaluates Eq. 2 from them. Here we
# compute both separately, check that `weight_map` is Eq. 2 written out (on the membrane
# pixels; on cell pixels the library adds no separation term, see below), and look at the
# maps.

# %%
d1, d2 = distance_maps(cells)  # exact Euclidean distances between pixel centres
w_c = class_weight_map(cells, class_weights)
w = weight_map(cells, W0, SIGMA, class_weights)
eq2 = w_c + W0 * np.exp(-((d1 + d2) ** 2) / (2 * SIGMA**2))
membrane = cells == 0
print(f"largest |weight_map - Eq. 2| on membrane pixels: {np.abs(w - eq2)[membrane].max():.1e}")
print(f"w ranges from {w.min():.2f} to {w.max():.2f}; mean {w.mean():.3f} "
      f"(mean of w_c alone: {w_c.mean():.3f})")
assert np.abs(w - eq2)[membrane].max() < 1e-5
assert np.array_equal(w[~membrane], w_c[~membrane].astype(np.float32))
assert np.all(d1[~membrane] == 0) and np.all(d1 <= d2)

# %% [markdown]
# To see the thin gaps, we zoom on the 96x96 window that contains the most membrane pixels
# lying within 3 pixels of two different cells (`thin_gap_window`); it is outlined in white.

# %% mystnb={"figure": {"caption": "A training slice, its weight map.", "name": "fig-wmap-slice"}}
window = thin_gap_window(cells, 96, k=3)
labels_img = np.where(sample.membranes, 0, 255)
fig = plot_maps([
    Panel("(a) EM slice", sample.image, cmap="gray"),
    Panel("(b) label: membrane black, interior white", labels_img, cmap="gray"),
    Panel(f"(c) {n_cells} cells (connected components)", instance_colours(cells)),
    Panel("(d) weight map w (Eq. 2)", w, cmap="magma", colorbar=True),
], ncols=4, box=window, panel_size=3.3)
plt.show()
print(f"zoom window: rows {window[0].start}-{window[0].stop - 1}, "
      f"columns {window[1].start}-{window[1].stop - 1}")

# %% [markdown]
# {numref}`fig-wmap-slice` is the EM version of the paper's Fig. 3: the raw image (a), the
# label (b), the instances (c; the paper overlays them on the image) and the weight map (d).
# At this scale the weight map looks like an outline of the cells: most membrane pixels are
# bright, the interior is dark, and so are the wide membranes and dark blobs of the label,
# which are far from the middle of any gap between two cells. The zoom shows how it is made:

# %% mystnb={"figure": {"caption": "Zoom on the thinnest gaps.", "name": "fig-wmap-zoom"}}
fig = plot_maps([
    Panel("EM slice", sample.image, cmap="gray"),
    Panel("cells over the image", instance_colours(cells, sample.image)),
    Panel("$w_c$", w_c, cmap="magma", colorbar=True, vmin=0, vmax=float(w.max())),
    Panel("$d_1$ (px)", d1, cmap="viridis", colorbar=True),
    Panel("$d_2$ (px)", d2, cmap="viridis", colorbar=True, vmax=20),
    Panel("$w$ (Eq. 2)", w, cmap="magma", colorbar=True, vmin=0, vmax=float(w.max())),
], ncols=3, window=window, panel_size=3.4)
plt.show()

# %% [markdown]
# In {numref}`fig-wmap-zoom`, $d_1$ is 0 on every cell and grows towards the middle of each
# membrane; $d_2$ is the distance to the *other* cell, small only on pixels that have a second
# cell close by (the colour scale stops at 20 px). Their sum is small, and the weight high,
# on the narrow stretches of membrane between two cells; it is lower on wide membranes and at
# junctions of several membranes, and the interior of every cell keeps $w = w_c$.
#
# ## The convention: distances between pixel centres
#
# The paper does not say how $d_1$ and $d_2$ are measured on a pixel grid. `unet_core.weights`
# measures from pixel centre to pixel centre (`scipy.ndimage.distance_transform_edt`), so a
# background pixel touching a cell is at distance 1, not 0.5. Across a straight gap of $g$
# background pixels between two cells, pixel $i$ of the gap ($i = 1, \dots, g$) is at
# distance $i$ from one cell and $g + 1 - i$ from the other: $d_1 + d_2 = g + 1$ on every pixel
# of the gap. Measuring to the pixel *edges* would give $g$ instead. On two toy cells:

# %% mystnb={"markdown_format": "gfm"}
rows = []
for gap in range(1, 9):
    toy, inside_gap = two_cells(gap)  # toy labels, and the gap pixels between the two cells
    term = weight_map(toy, W0, SIGMA, class_weights=(0.0, 0.0))  # w_c = 0: the term alone
    t1, t2 = distance_maps(toy)
    total = np.unique(t1[inside_gap] + t2[inside_gap])
    assert total.tolist() == [gap + 1]  # d1 + d2 = g + 1 on every gap pixel
    assert np.unique(term[inside_gap]).size == 1  # so the term is constant across the gap
    rows.append([gap, gap + 1, f"{term[inside_gap].max() / W0:.3f}",
                 f"{np.exp(-(gap**2) / (2 * SIGMA**2)):.3f}"])
display(Markdown(markdown_table(
    ["gap width g (px)", "d1 + d2 in the gap", "term / w0 (ours)", "term / w0 (edge distances)"],
    rows)))
assert rows[1][2] == "0.835"  # a 2-pixel gap: exp(-9/50) w0
assert rows[7][2:] == ["0.198", "0.278"]  # an 8-pixel gap

# %% [markdown]
# A 2-pixel gap thus gets $w_0 e^{-9/50} \approx 0.835\,w_0$ on top of $w_c$, not
# $w_0 e^{-4/50} \approx 0.923\,w_0$. With $\sigma = 5$ the difference is modest for thin gaps
# and grows with the width (at 8 px, 0.198 against 0.278). The paper's "$\sigma \approx 5$"
# leaves room for either reading; we keep centre distances, which is what a Euclidean
# distance transform returns.
#
# ## Across one gap
#
# We follow a straight line across the thinnest gap in the zoom window
# (`thinnest_gap_point`, `gap_profile`): through the gap pixel with the smallest $d_1 + d_2$,
# along the direction in which $d_1 - d_2$ changes fastest (the normal of the gap), 12 pixels
# to either side. Besides $w$ and $w_c$ we draw the
# separation term evaluated literally on *every* pixel (`where="all"`). Inside cell $k$ that
# reading gives $d_1 = 0$ and $d_2$ = the distance to the nearest other cell, so the high
# weight spills into both cells; the library's default (`where="background"`) adds the term
# on background pixels only, where the paper's text and Fig. 3d put it ("to force the network
# to learn the border pixels").

# %% mystnb={"figure": {"caption": "w along a line across a gap.", "name": "fig-wmap-profile"}}
point = thinnest_gap_point(cells, window)
profile = gap_profile(cells, point, half_length=12)
w_all = weight_map(cells, W0, SIGMA, class_weights, where="all")
fig, (left, middle, right) = plt.subplots(1, 3, figsize=(11, 3.6), width_ratios=(1, 1, 2.2))
plot_profile_map(left, instance_colours(cells, sample.image), profile, title="cells")
plot_profile_map(middle, w, profile, title="w", cmap="magma", vmin=0, vmax=float(w.max()))
plot_profile(right, profile, {"w (background only, default)": w, 'w (where="all")': w_all,
                              "$w_c$": w_c}, cells,
             styles={"$w_c$": {"ls": "--", "color": "0.3"},
                     'w (where="all")': {"ls": ":", "lw": 2}})
fig.tight_layout()
plt.show()
on_line = profile.sample(cells)
print(f"gap pixel {point}: d1 + d2 = {d1[point] + d2[point]:.2f}, w = {w[point]:.2f} = "
      f"w_c {w_c[point]:.2f} + separation term {w[point] - w_c[point]:.2f}")
assert set(np.unique(on_line)) == {0, *profile.cells}  # the line crosses one gap, two cells
s_point = d1[point] + d2[point]
assert np.isclose(w[point] - w_c[point], W0 * np.exp(-(s_point**2) / (2 * SIGMA**2)), rtol=1e-5)

# %% [markdown]
# {numref}`fig-wmap-profile` shows the step that `where="background"` produces: $w_c$ on both cells,
# and on the gap (grey band) $w_c$ plus nearly the whole $w_0$. Across a straight gap the term
# is flat, because $d_1 + d_2 = g + 1$ on every gap pixel. The literal reading
# (`where="all"`) adds a Gaussian tail on the cell side that reaches 10 pixels and more into
# each cell ($w_0 e^{-d^2/2\sigma^2}$ at distance $d$ from the other cell); it weights the
# *interior* pixels near a thin gap, which are not where cells get merged.
#
# ## The influence of $w_0$ and $\sigma$
#
# $w_0$ scales the separation term; $\sigma$ sets which gaps count as thin. At a membrane pixel
# with $d_1 + d_2 = s$ the term is $w_0 e^{-s^2/2\sigma^2}$. For the median membrane pixel of
# our slice:

# %%
s_median = float(np.median((d1 + d2)[membrane]))
factors = {sigma: np.exp(-(s_median**2) / (2 * sigma**2)) for sigma in (2.5, 5.0, 10.0)}
print(f"median d1 + d2 on membrane pixels: {s_median:.2f} px; term / w0 there: "
      + ", ".join(f"{f:.2f} (sigma = {sigma:g})" for sigma, f in factors.items()))
assert 4 < s_median < 9
assert factors[2.5] < 0.2 < factors[5.0] < 0.7 < factors[10.0]

# %% [markdown]
# A small $\sigma$ thus singles out the very thinnest gaps, and a large one weights nearly
# every membrane pixel by about $w_0$, which is a class weight again rather than a border
# weight; $\sigma \approx 5$ sits in between. All panels of {numref}`fig-wmap-params` share one
# logarithmic colour scale (the zoom window of {numref}`fig-wmap-zoom`).

# %% mystnb={"figure": {"caption": "w for several w0 and sigma.", "name": "fig-wmap-params"}}
w0s, sigmas = (3.0, 10.0, 30.0), (2.5, 5.0, 10.0)
fig, grid = plot_parameter_grid(cells, w0s, sigmas, window=window, class_weights=class_weights,
                                log=True)
plt.show()
means = {key: float(m.mean()) for key, m in grid.items()}
print("mean weight in the window:",
      ", ".join(f"w0={a:g}, sigma={b:g}: {v:.2f}" for (a, b), v in means.items()))
for sigma in sigmas:
    assert means[3.0, sigma] < means[10.0, sigma] < means[30.0, sigma]
for w0 in w0s:
    assert means[w0, 2.5] < means[w0, 5.0] < means[w0, 10.0]

# %% [markdown]
# ## Where the weight goes
#
# How much of the loss is moved onto the borders? On this slice, the distribution of $w$:
# the cell interior sits at $w_c$, one value; the membrane pixels spread from $w_c$ up to
# nearly $w_c + w_0$.

# %% mystnb={"figure": {"caption": "The weights of one slice.", "name": "fig-wmap-hist"}}
fig, ax = plt.subplots(figsize=(7, 3.2))
hist = plot_weight_histogram(ax, w, membrane, bins=np.arange(0, 13.25, 0.25))
plt.show()
assert hist["membrane"].sum() == membrane.sum()
assert hist["cell interior"].sum() == (~membrane).sum()
print(f"membrane pixels with w > w_c + w0/2: {(w[membrane] > w_membrane + W0 / 2).mean():.1%}")

# %% [markdown]
# Over the whole training set, `weight_mass_near_borders` measures which share of the total
# weight lands on membrane pixels within $k$ pixels of two cells ($d_2 \le k$), first with
# every weight equal to 1 (this is just the share of pixels), then with $w_c$ alone (Eq. 2
# with $w_0 = 0$), then with the full $w$.

# %% mystnb={"markdown_format": "gfm"}
ks = (2, 3, 4, 5, 8)
mass = weight_mass_near_borders(all_cells, ks, w0=W0, sigma=SIGMA, class_weights=class_weights)
display(Markdown(markdown_table(
    ["k (px)", "share of membrane pixels", "share of pixels (w = 1)", "share of w_c",
     "share of w"],
    [[f"{m.k:g}", f"{m.of_background:.1%}", f"{m.uniform:.1%}", f"{m.class_only:.1%}",
      f"{m.full:.1%}"] for m in mass])))
for m in mass:
    assert m.uniform < m.class_only < m.full
by_k = {int(m.k): m for m in mass}
assert by_k[5].full > 1.5 * by_k[5].class_only

# %% [markdown]
# ISBI membranes are rarely thinner than about 4 pixels, so only a small share of the pixels
# has two cells within 2 or 3 pixels. Class balancing alone already multiplies the share of
# every membrane pixel by $w_c \approx 2.3$; the separation term then roughly doubles the
# share of the pixels near two cells again (for $k \le 4$), while the total weight of the data
# set grows by the factor below. This is the redistribution the paper asks for: the weight
# moves from the easy interior and the wide, unambiguous membranes to the narrow places where
# two cells nearly meet.

# %%
growth = mass[0].growth
print(f"total w / total w_c over the training set: {growth:.2f}")
assert 1.2 < growth < 3

# %% [markdown]
# ## How long it takes
#
# The paper pre-computes the weight map once per ground-truth image. `weight_map` needs one
# distance transform per cell; `unet_core.weights` computes each inside the cell's bounding
# box grown by the distance beyond which the term falls below $10^{-6}$ (28 pixels for the
# paper's values), which keeps the result within $10^{-6}$ of the exact Eq. 2 (checked above
# against exact distances). Timed on this slice, with the instances:

# %%
repeats = 5
t_wmap = timeit.repeat(lambda: weight_map(cells, W0, SIGMA, class_weights), number=1,
                       repeat=repeats)
t_inst = timeit.repeat(lambda: instances_from_membranes(~sample.membranes), number=1,
                       repeat=repeats)
t_exact = timeit.repeat(lambda: distance_maps(cells), number=1, repeat=2)
print(f"machine: {describe_machine()}")
print(f"weight_map, 512x512, {n_cells} cells: median {np.median(t_wmap) * 1e3:.0f} ms, "
      f"best {min(t_wmap) * 1e3:.0f} ms ({repeats} runs)")
print(f"instances_from_membranes: median {np.median(t_inst) * 1e3:.1f} ms")
print(f"exact distance_maps (for comparison): best {min(t_exact) * 1e3:.0f} ms")
assert np.median(t_wmap) < 5.0  # generous: a shared CPU can be slow, but not this slow

# %% [markdown]
# A fraction of a second per slice: pre-computing the 30 maps of the training set is a matter
# of seconds, negligible against training. (The machine is shared, so the times vary from
# run to run; the median is the honest figure.) With elastic deformations the weight map must
# be deformed with the labels, or recomputed from the deformed labels; at this speed the
# latter is affordable.
#
# ## The weighted loss emphasises the borders
#
# Finally, Eq. 1 at work. We fake a prediction that is right about the broad structure and
# wrong on thin membranes: the membrane label blurred by a Gaussian of 2 pixels, its
# log-odds tripled so that it is confident away from its mistakes, as a trained network is
# (`blurred_logits`). Thin membranes fade below $p = 0.5$ and cells merge; the blur also
# widens the membranes a little. `per_pixel_loss` gives the terms of {eq}`eq-weighted-energy` pixel
# by pixel; their mean is exactly the library's `weighted_cross_entropy`.

# %%
target = sample.membranes.astype(np.int64)  # class 1 = membrane, as in unet_core.losses
logits = blurred_logits(target, sigma=2.0, confidence=3.0)
loss = {
    "w = 1": per_pixel_loss(logits, target),
    "w = w_c": per_pixel_loss(logits, target, w_c),
    "w (Eq. 2)": per_pixel_loss(logits, target, w),
}
library = weighted_cross_entropy(logits, torch.from_numpy(target)[None],
                                 torch.from_numpy(w)[None]).item()
print(f"mean weighted loss: per_pixel_loss {loss['w (Eq. 2)'].mean():.5f}, "
      f"weighted_cross_entropy {library:.5f}")
assert np.isclose(loss["w (Eq. 2)"].mean(), library, rtol=1e-5)
p_membrane = torch.softmax(logits, dim=1)[0, 1].numpy()
merged = instances_from_membranes(p_membrane < 0.5)
erased = sample.membranes & (p_membrane < 0.5)  # membrane predicted as interior
widened = ~sample.membranes & (p_membrane > 0.5)  # interior predicted as membrane
print(f"cells in the blurred prediction: {int(merged.max())} (truth: {n_cells}); "
      f"{erased.mean():.2%} of the pixels are erased membrane, {widened.mean():.2%} widened")
assert merged.max() < n_cells

# %% [markdown]
# Which share of the loss lands where? Three groups of pixels: the membrane pixels within
# 4 pixels of two cells (the thin gaps), the erased membrane pixels (the errors that merge
# cells), and all membrane pixels.

# %% mystnb={"markdown_format": "gfm"}
thin = near_two_cells(cells, 4)
groups = {f"thin gaps ({thin.mean():.1%} of pixels)": thin,
          f"erased membrane ({erased.mean():.1%})": erased,
          f"all membrane ({membrane.mean():.1%})": membrane}
shares = {name: [float(per_pixel[g].sum() / per_pixel.sum()) for g in groups.values()]
          for name, per_pixel in loss.items()}
display(Markdown(markdown_table(
    ["weights", *(f"share of the loss on {g}" for g in groups)],
    [[name, *(f"{v:.1%}" for v in values)] for name, values in shares.items()])))
for column in (0, 1):  # thin gaps and erased membrane gain at every step
    assert shares["w = 1"][column] < shares["w = w_c"][column] < shares["w (Eq. 2)"][column]
assert shares["w (Eq. 2)"][1] > 1.5 * shares["w = 1"][1]

# %% [markdown]
# We zoom on the 96x96 window with the most erased membrane pixels. Each loss map has its own
# linear colour scale, so that one sees where each puts its mass.

# %% mystnb={"figure": {"caption": "Loss of a blurred prediction.", "name": "fig-wmap-loss"}}
loss_window = densest_window(erased, 96)
fig = plot_maps([
    Panel("label (membrane black)", labels_img, cmap="gray"),
    Panel("prediction: p(membrane)", p_membrane, cmap="gray_r", vmin=0, vmax=1),
    Panel("cells of the prediction (p < 0.5)", instance_colours(merged)),
    Panel("loss per pixel, w = 1", loss["w = 1"], cmap="inferno", colorbar=True),
    Panel("loss per pixel, w = $w_c$", loss["w = w_c"], cmap="inferno", colorbar=True),
    Panel("loss per pixel, w of Eq. 2", loss["w (Eq. 2)"], cmap="inferno", colorbar=True),
], ncols=3, window=loss_window, panel_size=3.4)
plt.show()

# %% [markdown]
# In {numref}`fig-wmap-loss`, even the unweighted loss is highest on the erased thin membranes (a
# confident mistake costs more than an uncertain edge), but most of its mass is spread thinly
# along the edges of all membranes, where the blurred prediction is off by a pixel. Class
# balancing raises every membrane pixel alike. With the full weight map, the erased thin
# membranes, which the prediction needs to keep two cells apart, stand far above everything
# else, and the share of the loss on them roughly doubles (table above). These are the errors
# that matter for the segmentation into cells, and they now dominate the loss and its
# gradient, which with respect to $a_k(\mathbf{x})$ is
# $w(\mathbf{x})\,\big(p_k(\mathbf{x}) - [k = \ell(\mathbf{x})]\big)$ per pixel (for the
# summed energy).
#
# ## Summary
#
# * The paper's energy (Eq. 1, {eq}`eq-weighted-energy`) is a pixel-wise soft-max cross-entropy in
#   which each pixel carries a pre-computed weight $w(\mathbf{x})$ (Eq. 2,
#   {eq}`eq-weight-map`): a class-balancing term $w_c$ plus a separation term
#   $w_0 e^{-(d_1+d_2)^2/2\sigma^2}$ on pixels between two cells.
# * On ISBI 2012, membranes cover about a fifth of the training pixels (printed above), so
#   $w_c \approx 2.3$ on membrane and 0.64 on interior; the cells are the 4-connected
#   components of the interior, about a hundred per slice.
# * Distances are measured between pixel centres: a gap of $g$ pixels has $d_1 + d_2 = g + 1$
#   on every pixel, and a 2-pixel gap gets $e^{-9/50} w_0 \approx 0.835\,w_0$.
# * The separation term multiplies the share of the total weight on membrane pixels near two
#   cells (table above), without touching the cell interiors; $\sigma$ decides which gaps
#   count as thin, $w_0$ how much they count.
# * A weight map of a 512x512 slice takes a fraction of a second on a CPU; the weighted loss of
#   a blurred prediction concentrates on the thin membranes that the prediction erased.

# %%
print(f"chapter executed in {time.perf_counter() - chapter_started:.0f} s")
