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
# (chap-training)=
# # Training on DRIVE
#
# > The input images and their corresponding segmentation maps are used to train the network
# > with the stochastic gradient descent implementation of Caffe.
# > {cite:p}`ronneberger2015unet`, Sec. 3
#
# This chapter trains a U-Net on the DRIVE retinal vessel images {cite:p}`staal2004drive`:
# the configuration, the training step, the run, its curves and its test metrics. Under the
# `smoke` profile (the test suite and CI set `UNET_PROFILE=smoke`) it trains for a few steps
# only, and its numbers say nothing about quality. How the chapter runs headless under
# papermill, how a run is named and found again instead of trained twice, and why a change of
# what the code computes trains it again: {ref}`sec-runs-found-again`.

# %%
from pathlib import Path

from IPython.display import Markdown, display

from unet_book.checks import (
    check_config_round_trip,
    check_f1_is_harmonic_mean,
    check_made_by_current_code,
    check_run_finished,
    check_trained_quality,
)
from unet_book.experiments import (
    HEADLINE_CELL,
    HEADLINE_SETTINGS,
    ChapterParameters,
    load_or_train,
)
from unet_book.results import describe_run_provenance, describe_threshold, plot_history
from unet_book.source import show_source
from unet_book.tables import markdown_table
from unet_train.config import PROFILES, TrainConfig
from unet_train.train import train_step

parameters = ChapterParameters(globals())

# %% tags=["parameters"]
# Papermill parameters. None keeps the profile's value; any other TrainConfig field may be
# passed as well (e.g. -p lr 0.001).
profile = None  # "cpu" (default), "paper" or "smoke"; None: $UNET_PROFILE or "cpu"
dataset = "drive"  # "drive" or "isbi2012"
steps = None  # optimisation steps; None: those of the headline cell (HEADLINE_SETTINGS)
time_budget_min = None  # stop after this many minutes of training as well
base_channels = None  # width of the first level (paper: 64)
padding = None  # "same" or "valid" (paper)
loss = None  # "bce_dice", "bce", "dice" or "weighted_ce" (paper)
augmentation = None  # "albumentations", "paper" or "none"
seed = None  # random seed
run_name = None  # None: runs/<dataset>-<profile>-<config hash>-<provenance key>

# %%
cfg = parameters.config(**HEADLINE_SETTINGS)
print(f"profile {cfg.profile}: config hash {cfg.key()}")
print(f"the headline cell: arm {HEADLINE_CELL[1]!r} of the study {HEADLINE_CELL[0]!r}, "
      f"settings {HEADLINE_SETTINGS}")

# %% [markdown]
# ## The configuration
#
# Every run is described by one `TrainConfig`. The table puts the three profiles side by
# side for the fields in which they differ; the column `this run` is the configuration the
# cell above built from the parameters. The `paper` column follows Sec. 3 of the paper where
# it is explicit (valid padding, SGD with momentum 0.99, batch of one large tile, the
# weighted cross-entropy, elastic deformation, drop-out at the end of the contracting path);
# the learning rate and the number of steps are not in the paper and are our guesses. The
# paper's recipe is `TrainConfig`'s defaults; `cpu` and `smoke` are named overrides of them
# (`unet_train/config.py`, its fields grouped: data, model, augmentation, loss, optimisation,
# evaluation, runtime). The `cpu` profile is the one this project runs by default (the
# chapters and the command line start from it), chosen for speed on a 2-core CPU: a 16-channel
# net with batch norm and same padding, in the precision and memory format measured fastest on
# the machine that trains it (`unet_train.placement`: fp32 or bf16 autocast, NCHW or
# channels-last; {ref}`chap-padding` shows that same padding with overlap-tile blending costs
# little).
#
# The run this chapter trains, the book's *headline run*, is one cell of a seeded study
# (`HEADLINE_SETTINGS`, printed above): seed 0 of the `cpu` profile with the pixels outside the
# field of view counted as background, at that study's budget, so {ref}`chap-results` can set
# it beside the study's three seeds ({ref}`sec-runs-found-again` says why and how).

# %%
profiles = {name: TrainConfig.from_profile(name) for name in PROFILES}
differing = [f for f in TrainConfig.field_names()
             if f != "profile" and len({str(getattr(c, f)) for c in profiles.values()}
                                       | {str(getattr(cfg, f))}) > 1]
display(Markdown(markdown_table(
    ["field", *profiles, "this run"],
    [[f, *(str(getattr(c, f)) for c in profiles.values()), f"**{getattr(cfg, f)}**"]
     for f in differing],
)))

# %% [markdown]
# ## The training step
#
# Each step draws a batch of random patches (with their mirrored context, their augmentation
# and, for the paper's loss, their weight maps; `unet_core.data.sampler.PatchSampler`) and
# calls `train_step`: the forward pass in the precision chosen for training (bf16 autocast
# where it measured faster than fp32 on this machine), the loss in fp32, and one optimiser
# step, skipped when the loss is not finite (the run then stops with the last good checkpoint
# kept). The loop around it (`unet_train.train.train`)
# adds the schedule, validation passes, checkpoints and the final evaluation.

# %%
show_source(train_step)

# %% [markdown]
# ## Train (or load the finished run)
#
# (The command line, `python -m unet_train train`, shows a tqdm progress bar; here the cell
# prints a line when training starts and one when it ends.) Every `eval_every` steps the model is
# evaluated on the validation images (the last `val_images` DRIVE training images, never a
# test image), a checkpoint is written atomically, and a row is added to `history.csv`. At the
# end, the threshold that maximises F1 on images of the official training set is chosen
# (`threshold_images`: all of them, or only the validation images) and the official 20 test
# images are evaluated with it, inside the field of view, against the first observer.

# %%
result = load_or_train(cfg, run_name, progress=False)
data_note = ("SYNTHETIC stand-in: the real data set was not found under UNET_DATA_DIR; "
             "these numbers are not DRIVE results" if result.synthetic else "real data")
print(f"run directory: {result.run_dir.name} in the runs folder\n{result.steps} steps, "
      f"{result.train_minutes:.1f} minutes of training, stopped by {result.stopped_by}; "
      f"{data_note}")
print("made by", describe_run_provenance(result))
check_run_finished(result, cfg)
check_made_by_current_code(result)

# %% [markdown]
# ## Curves
#
# Loss on the training patches and, on the validation images, the area under the ROC curve
# and F1 at the fixed threshold, against minutes of training (time spent in the optimisation
# steps only; validation passes are not counted).

# %% mystnb={"figure": {"caption": "Loss and validation metrics.", "name": "fig-training-curves"}}
fig = plot_history(result.history, title=f"{cfg.dataset}, profile {cfg.profile}")

# %%
display(Markdown(markdown_table(
    ["step", "minutes", "loss", "learning rate", "val AUC-ROC", "val F1"],
    [[int(h["step"]), f"{h['minutes']:.2f}", f"{h['loss']:.4f}", f"{h['lr']:.2e}",
      f"{h.get('val_auc_roc', float('nan')):.4f}", f"{h.get('val_f1', float('nan')):.4f}"]
     for h in result.history],
)))

# %% [markdown]
# ## Test metrics
#
# Pooled over every pixel inside the field of view of the test images (the usual DRIVE
# convention), and the mean of the per-image values. The threshold was chosen on
# training-set images, never on test images; {ref}`chap-results` compares these numbers with
# the second observer and with published ones, and measures each deviation from the paper.

# %%
test = result.metrics["test"]
names = ["auc_roc", "auc_pr", "f1", "iou", "accuracy", "sensitivity", "specificity"]
display(Markdown(
    "Threshold **"
    + describe_threshold(result.metrics.get("threshold_choice"), test["threshold"])
    + "**, "
    f"{len(test['images'])} test images, {data_note}.\n\n"
    + markdown_table(["", *names],
                     [[kind, *(f"{test[kind][n]:.4f}" for n in names)]
                      for kind in ("pooled", "mean")])
))
check_f1_is_harmonic_mean(test["pooled"])
check_trained_quality(result, cfg)

# %% [markdown]
# ## Artifacts of the run
#
# The run directory holds everything needed to reuse the model: `model.pt` for
# `python -m unet_train predict --checkpoint runs/<run>/model.pt --output out/ images...`,
# and the full config, history and metrics as text.

# %%
for path in sorted(Path(result.run_dir).iterdir()):
    if path.is_file():
        print(f"{path.name:28s} {path.stat().st_size / 1e6:8.2f} MB")
check_config_round_trip(result.run_dir, result.config)
