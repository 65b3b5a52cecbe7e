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
# This chapter trains a U-Net on the DRIVE retinal vessel images {cite:p}`staal2004drive`
# and is also the project's batch-training entry point: it runs headless under papermill,
#
# ```bash
# papermill notebooks/05_training.ipynb runs/paper.ipynb -p profile paper -p steps 2000
# ```
#
# and every `TrainConfig` field (see `unet_train.config`) can be passed with `-p`. A
# misspelt parameter stops the run with the list of valid names instead of being ignored.
# The profile defaults to the environment variable `UNET_PROFILE`, else `cpu`; the test
# suite and CI set `UNET_PROFILE=smoke`, which trains for a few steps only: numbers printed
# under the smoke profile say nothing about quality.
#
# Training is *load-or-train*: a run lives in
# `runs/<dataset>-<profile>-<config hash>-<provenance key>/` (`UNET_RUNS_DIR`), and when a
# finished run with exactly this configuration is there, it is loaded instead of trained
# again. The provenance key (`unet_train.provenance`) is a hash of what the code computes and
# of the data the run reads (the content of the data set's files, or the synthetic stand-in's
# options). What the code computes is measured, not read from its text: a short probe
# (`unet_train.probe`, a few seconds, cached per source state) runs every path to a result
# (data preparation, sampling and augmentation, the weight map, the network, every loss,
# optimiser and schedule, training steps, overlap-tile inference, the threshold rule, FOV
# masking, every metric) on small synthetic inputs in float64 and hashes the outputs, rounded
# far above the last bits that the thread count or the processor changes. Renaming a variable
# or moving a function therefore leaves every run current; a changed formula or rule, or the
# real DRIVE replacing the stand-in, makes the same configuration train again instead of
# serving an older run. The run folder keeps both fingerprints, and the probe's digest of
# each component, in `provenance.json`. A run interrupted half-way resumes from its last
# checkpoint and ends with the same weights as an uninterrupted one (tested in
# `tests/test_train.py`).

# %%
import json
from pathlib import Path

from IPython.display import Markdown, display

from unet_book.experiments import (
    HEADLINE_CELL,
    HEADLINE_SETTINGS,
    collect_parameters,
    load_or_train,
    notebook_config,
)
from unet_book.results import describe_run_provenance, describe_threshold, plot_history
from unet_book.source import show_source
from unet_book.tables import markdown_table
from unet_train.config import PROFILES, TrainConfig
from unet_train.provenance import code_fingerprint
from unet_train.train import train_step

_names_before = set(globals())

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
params = collect_parameters(globals(), _names_before)
cfg = notebook_config(params, **HEADLINE_SETTINGS)
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
# The run this chapter trains, the book's *headline run*, is not a new configuration: it is
# one cell of the seeded study `drive_outside_fov_2x` ({ref}`chap-results`), seed 0 of the
# `cpu` profile with the loss also counting the pixels outside the field of view as
# background (so that a photograph's black surround comes out as background; {ref}`chap-results`
# shows that it does no harm inside the field of view), at that study's budget and with
# test-time augmentation off as in every study cell (`HEADLINE_SETTINGS`, printed above, in
# `unet_book/experiments.py`). So the
# book can set the run it trains beside the study's record of the same cell and the spread
# over its three seeds ({ref}`chap-results` does), and a first build trains fewer steps than
# the profile's default; `-p steps 3000 -p tta flips` trains the profile as it is.

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
assert result.steps == cfg.steps or result.stopped_by == "time"
assert result.provenance["code"] == code_fingerprint()

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
pooled = test["pooled"]
# F1 is the harmonic mean of precision and sensitivity at the chosen threshold
assert abs(pooled["f1"] - 2 * pooled["precision"] * pooled["sensitivity"]
           / (pooled["precision"] + pooled["sensitivity"])) < 1e-9
if not result.synthetic and cfg.profile != "smoke":  # a trained model on the real DRIVE
    assert pooled["auc_roc"] > 0.97, pooled["auc_roc"]

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
saved = json.loads((Path(result.run_dir) / "config.json").read_text())
assert TrainConfig.from_dict(saved).key() == result.config.key()
