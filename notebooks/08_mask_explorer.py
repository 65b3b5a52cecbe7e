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
# **In JupyterLab or Notebook** the cell below shows the live widgets: choose a run (every
# finished run under `runs/`, newest first) and an image (the run's test images, or any
# image file, segmented with the run's model by overlap-tile inference, {ref}`chap-padding`);
# move the threshold; pick what each panel shows (input, probability, errors, ground truth,
# second observer, prediction); toggle the field of view (metrics are computed inside it, or
# over the whole image); zoom into a 256, 128 or 64 pixel square at full resolution and move
# it with the centre sliders. The metrics line (F1, sensitivity, specificity, precision and
# the threshold-free AUC-ROC) follows the threshold. The threshold starts at the value the
# run chose on its validation images.
#
# **In the static book** widgets cannot run, so the cell's output is left out and the
# figures below show explorer states rendered by the same code (`unet_book.explorer`).

# %%
import numpy as np
from IPython.display import display

from unet_book.experiments import load_or_train, notebook_config
from unet_book.explorer import MaskExplorer, gallery, window

# the training chapter's run: loaded from runs/ (trained if this chapter runs alone)
run = load_or_train(notebook_config({}), progress=False)
explorer = MaskExplorer(run=run.run_dir.name)
print(f"{len(explorer.runs)} finished runs; opened {explorer.run.value} "
      f"({len(explorer.cases)} test images)")

# %% tags=["remove-output"]
display(explorer.widget)

# %% [markdown]
# ## Responsiveness
#
# One update (the two panels rendered, encoded as PNG and sent, and the metrics recomputed)
# should stay well under 200 ms for a 565x584 DRIVE image, or the slider feels sticky. The
# metrics use two sorted arrays of probabilities (positives and negatives inside the FOV) and
# a binary search per threshold, so they cost microseconds; most of the time is PNG encoding.
# Measured here, over 21 threshold positions, on the machine that built this page (a
# wall-clock time, so it is printed, not asserted: a busy machine is slower; the tests check
# the cost structure instead):

# %%
explorer.left.value, explorer.right.value = "probability", "errors"
times = []
for t in np.linspace(0.1, 0.9, 21):
    explorer.threshold.value = float(round(t, 2))
    times.append(explorer.last_update_ms)
shape = explorer.case().prob.shape
print(f"{shape[1]}x{shape[0]} image: median update {np.median(times):.1f} ms, "
      f"max {np.max(times):.1f} ms")

# %% [markdown]
# ## A gallery of explorer states
#
# The first test image at three thresholds: lowering it finds more of the thin vessels
# (fewer blue pixels) at the price of false alarms (more red ones). The title of each panel
# is the metrics line the explorer prints at that threshold.

# %% mystnb={"figure": {"caption": "Explorer states at three thresholds.", "name": "fig-gallery"}}
case = explorer.cases[0]
t_run = float(run.metrics["test"]["threshold"])
thresholds = sorted({round(max(0.05, t_run - 0.3), 2), round(t_run, 2),
                     round(min(0.95, t_run + 0.3), 2)})
fig = gallery(case, thresholds)

# %% [markdown]
# The same states zoomed on a 128-pixel square at full resolution, where single-pixel
# capillaries decide the F1 score:

# %% mystnb={"figure": {"caption": "Zoomed explorer states.", "name": "fig-gallery-zoom"}}
fig = gallery(case, thresholds, region=window(case.prob.shape, 128, (0.55, 0.35)))
