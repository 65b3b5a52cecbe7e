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
# (chap-explorer)=
# # The mask explorer
#
# Numbers pooled over 20 images hide where a model fails. The explorer puts one image, its
# probability map and its labels side by side, with a threshold slider: watch thin
# capillaries appear as the threshold drops, and the false alarms around the optic disc and
# bright lesions with them; switch the right panel to the second observer to see how
# differently two people drew the same vessels.
#
# It runs in the browser, on this page as in JupyterLab: one ES module (an anywidget)
# thresholds the probability map, draws the panels and
# computes the metrics from the data it is given, so the slider needs no kernel. Move the
# threshold (the slider, or its arrow keys: steps of 0.01); pick what each panel shows
# (input, probability, errors, ground truth, second observer, prediction); toggle the field
# of view (metrics inside it, or over the whole image); zoom into a 256, 128 or 64 pixel
# square at full resolution and move it by dragging a panel, or with the arrow keys once a
# panel has the focus (`+` and `-` zoom). The metrics line (F1, sensitivity, specificity,
# precision and the threshold-free AUC-ROC) follows the threshold, which starts at the value
# the run chose on its validation images. In the errors overlay a found vessel pixel is
# white, a false alarm orange and a missed vessel sky blue (Okabe and Ito's colour-blind-safe
# pair), outside the field of view grey.
#
# **On this page** the explorer shows the training chapter's run, with a menu over its test
# images; an image's data are loaded when it is chosen. **In JupyterLab or Notebook** the
# cell `display(explorer.widget)` below shows the same explorer live, with a run chooser
# (every finished run under `runs/`, newest first) and a file box: any image file, segmented
# with the run's model by overlap-tile inference ({ref}`chap-padding`). The printed book
# shows the figures at the end of the chapter instead.

# %%
import time

import numpy as np
from IPython.display import display

from unet_book.experiments import HEADLINE_SETTINGS, load_or_train, notebook_config
from unet_book.explorer import gallery, list_runs, outside_fov_note, run_cases, window
from unet_book.explorer_widget import MODULE, MaskExplorer, encode_case
from unet_book.site.explorer_export import export_static, site_html

# the training chapter's run: loaded from runs/ (trained if this chapter runs alone)
run = load_or_train(notebook_config(**HEADLINE_SETTINGS), progress=False)
cases = run_cases(run.run_dir)
# its test images for this page: one data file each and an index, in <run>/explorer/
site = export_static(run.run_dir)
print(f"{len(list_runs())} finished runs; this page shows {run.run_dir.name} "
      f"({len(cases)} test images)")

# %% tags=["remove-input"]
html = site_html(run.run_dir.name)
display({"text/html": html,
         "text/plain": "(The interactive explorer runs in the HTML version of the book.)"},
        raw=True)

# %% [markdown]
# The live explorer: run the next cell in JupyterLab or Notebook (the book's build skips
# it, so that the page carries no widget state; the explorer above is the same module).

# %% tags=["skip-execution"]
explorer = MaskExplorer(run=run.run_dir.name)
display(explorer.widget)

# %% [markdown]
# (sec-own-image)=
# ## Your own image, in this page
#
# Below, the book's trained networks segment an image you give them, in your browser: pick or
# drop a fundus photograph for chapter 5's vessel model, or an electron-microscopy slice for
# chapter 7's membrane model. The image never leaves your machine. Add its ground-truth mask
# for the metrics at the model's threshold, and a field-of-view mask (white inside) if you
# have one; the explorer's controls then work on your image, and the two files `python -m
# unet_core predict` writes (the probability map as a 16-bit PNG, `round(p * 65535)`, and the
# 0/255 mask) can be downloaded.

# %%
from unet_book.browser_model import browser_costs, export_run, runtime_difference
from unet_book.experiments import ISBI_SETTINGS
from unet_book.site.segment_page import segment_html

isbi = load_or_train(notebook_config(**ISBI_SETTINGS), progress=False)
browser_models = [("DRIVE vessels (chapter 5's model)", run.run_dir),
                  ("ISBI 2012 membranes (chapter 7's model)", isbi.run_dir)]
exports = [export_run(folder) for _, folder in browser_models]
print("in this page: " + "; ".join(f"{label}, run {folder.name}"
                                   for label, folder in browser_models))

# %% tags=["remove-input"]
display({"text/html": segment_html([(label, folder.name) for label, folder in browser_models]),
         "text/plain": "(Segmenting your own image runs in the HTML version of the book.)"},
        raw=True)

# %% [markdown]
# **What runs where.** The weights are the run's own: its `model.pt` exported when the book is
# built to ONNX, as one network for one tile of the run's tile size, in fp32
# (`unet_book.browser_model.export_run`); the page checks the file's SHA-256 against the
# export's record. The tiling is the paper's overlap-tile strategy with mirror extrapolation
# ({ref}`chap-padding`) in the page's own JavaScript, written to follow `unet_core.tiling`
# line by line (a test compares their plans, tiles and stitching). The runtime is another:
# onnxruntime-web, the ONNX runtime compiled to WebAssembly, in a Web Worker so that the page
# stays responsive, served from this site. The page prepares the image as `predict` does
# (colour channels, 8-bit values / 255, 16-bit ones / 65535: it decodes PNG and TIFF itself,
# so that 16-bit files keep their bits), runs each tile once (no test-time augmentation) and
# fetches the runtime and the model only when you give it an image.
#
# The difference the runtime makes, measured here through the same tiling on the first DRIVE
# test image (PyTorch against the exported file run by onnxruntime, the runtime's CPU build),
# and the cost in the browser, measured in headless Chromium by
# `benchmarks/browser_speed.py`:

# %%
print(runtime_difference(run.run_dir, cases[0]))
print(browser_costs(exports))

# %% [markdown]
# **Outside the eye.** DRIVE's metrics are computed inside each photograph's field of view,
# and a loss that sees only those pixels never learns what the black surround is: a model
# trained so marks part of it as vessel, which a reader's photograph shows at once (the
# study in {ref}`sec-outside-fov` measures how much). The book's model is trained with its
# loss also counting the pixels outside the FOV as background, which that study found to do
# no harm inside the FOV, so the surround comes out as background in this page and in
# `predict`'s files without any FOV mask; `predict --fov auto` still estimates one for the
# mask file, and here a FOV mask can be added. On the test images:

# %%
print(outside_fov_note(cases, run.metrics["test"]["threshold"], run.config.outside_fov))

# %% [markdown]
# ## What the browser computes, and what it is given
#
# For each image the browser receives one data file: the probability map at 16 bits (the
# 65536 levels of `round(p * 65535)`; 8 bits would move the AUC by about 0.002 on DRIVE),
# the labels (ground truth, field of view, second observer) as one byte of bits per pixel,
# both deflated, and the image as a JPEG (`unet_book.explorer_widget.encode_case`). Once per
# image it counts the pixels of each level in four histograms (vessel or background, inside
# or outside the field of view) and sums them from the top level down: the confusion counts
# at any threshold are then two array reads, and the AUC-ROC a trapezoid over the 65536
# levels, within about 0.00001 of the exact one. The levels are made exact at the slider's
# thresholds (`quantise`): at 0.01, ..., 0.99 a pixel counts as a vessel in the browser
# exactly when `prob >= threshold` in `unet_core.metrics`, so the numbers the page shows
# are the library's (the tests compare them, in Node.js and in Chromium).
#
# One update (the metrics line and both panels redrawn at full resolution) is one pass over
# the pixels shown; the explorer prints how long its last one took below its panels. In
# JupyterLab, choosing an image costs Python one encoding, sent once; moving the slider
# costs Python nothing. Measured here, on the machine that built this page:

# %%
case = cases[0]
t0 = time.perf_counter()
data = encode_case(case)
encode_ms = (time.perf_counter() - t0) * 1000
sizes = np.array([entry["bytes"] for entry in site["images"]])
index_kb = (run.run_dir / "explorer" / "index.json").stat().st_size / 1e3
shape = case.prob.shape
print(f"{shape[1]}x{shape[0]} image: encoded in {encode_ms:.0f} ms, {len(data) / 1e3:.0f} kB")
print(f"this page: the explorer's HTML {len(html.encode()) / 1e3:.1f} kB, its ES module "
      f"{MODULE.stat().st_size / 1e3:.0f} kB, the index {index_kb:.0f} kB, then "
      f"{np.median(sizes) / 1e3:.0f} kB per image chosen ({len(sizes)} images, "
      f"{sizes.sum() / 1e6:.1f} MB on the site)")

# %% [markdown]
# ## A gallery of explorer states
#
# The first test image at three thresholds: lowering it finds more of the thin vessels
# (fewer sky-blue pixels) at the price of false alarms (more orange ones). The title of each
# panel is the metrics line the explorer prints at that threshold.

# %% mystnb={"figure": {"caption": "Explorer states at three thresholds.", "name": "fig-gallery"}}
t_run = float(run.metrics["test"]["threshold"])
thresholds = sorted({round(max(0.05, t_run - 0.3), 2), round(t_run, 2),
                     round(min(0.95, t_run + 0.3), 2)})
fig = gallery(case, thresholds)

# %% [markdown]
# The same states zoomed on a 128-pixel square at full resolution, where single-pixel
# capillaries decide the F1 score:

# %% mystnb={"figure": {"caption": "Zoomed explorer states.", "name": "fig-gallery-zoom"}}
fig = gallery(case, thresholds, region=window(case.prob.shape, 128, (0.55, 0.35)))
