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
# (chap-paper-vs-ours)=
# # Paper vs this implementation
#
# Every choice the paper {cite:p}`ronneberger2015unet` makes, next to what this project does
# by default (the `cpu` profile) and, where the book measured it, what the difference does.
# The `paper` profile (`-p profile paper` in {ref}`chap-training`) restores the paper's
# choices where the paper states them; the learning rate, the number of iterations and the
# drop-out rate it does not state.
#
# The measured column comes from the seeded studies of {ref}`chap-claims` (committed results
# files; each row names its claim, its verdict and its number of paired samples):
# `drive_recipe`, whose arms change one setting of the `cpu` profile back to the paper's,
# `drive_augmentation`, which compares augmentations like against like, and `isbi_cv`, the
# paper's own task in cross-validation, scored with the challenge's instruments (the thinned
# $V_\text{rand}$ at a threshold chosen on validation slices). Only cells made by the current
# code are shown as current. Throughput figures come from `benchmarks/throughput.py` (its lab notes
# are in `benchmarks/README.md`).

# %%
from IPython.display import Markdown, display

from unet_book.evidence import METRIC_NAMES, comparison_rows, study_view
from unet_book.experiments import notebook_config
from unet_book.results import benchmark_result
from unet_book.tables import markdown_table
from unet_core.model import UNet, count_parameters
from unet_train.config import TrainConfig

cfg = notebook_config({})
paper = TrainConfig.from_profile("paper")
views = {name: study_view(name) for name in ("drive_recipe", "drive_augmentation", "isbi_cv")}
verdicts = {(name, v.comparison.paper, v.comparison.other, v.metric): v
            for name, view in views.items() for metric in (None, "f1")
            for v in comparison_rows(view, metric=metric)}


def effect(study: str, paper_arm: str, other: str, metric: str = "auc_roc") -> str:
    """The claim, verdict and mean paired difference of a study comparison, as text."""
    v = verdicts.get((study, paper_arm, other, metric))
    if v is None or v.mean is None:
        return f"not yet measured (cells of `{study}` missing)"
    older = "" if views[study].current else " (older code)"
    interval = "" if v.low is None else f", 95 % interval [{v.low:+.4f}, {v.high:+.4f}]"
    return (f"claim {v.comparison.claim}: **{v.verdict}**; paper minus ours "
            f"{v.mean:+.4f} {METRIC_NAMES.get(metric, metric)} over {v.n} paired samples"
            f"{interval} (`{study}`){older}")


paper_params = count_parameters(UNet(1, 2, paper.base_channels, paper.depth, paper.padding))
ours_params = count_parameters(UNet(3, 1, cfg.base_channels, cfg.depth, cfg.padding,
                                    batch_norm=cfg.batch_norm))
throughput = benchmark_result("throughput")
speedup = "benchmarks/results/throughput.json not produced in this checkout"
if throughput is not None:
    best = {(r["width"], r["padding"], r["phase"]): r["speedup_vs_fp32"]
            for r in throughput["speedups_vs_fp32"] if r["mode"] == "bf16+channels_last"}
    speedup = (f"training throughput x{best[(64, 'same', 'training')]:.2f} at width 64, "
               f"x{best[(16, 'same', 'training')]:.2f} at width 16 "
               "(benchmarks/results/throughput.json, measured "
               f"{throughput.get('date', '')[:10] or 'at an earlier commit'})")
threshold_effect = "see chapter 6: the threshold is chosen on training-set images"
for name, view in views.items():
    print(f"{name}: {len(view.cells)} cells "
          + ("by the current code" if view.current else "by OLDER code (marked)"))

# %%
rows = [
    ["padding (Sec. 2)", "unpadded 3x3 convolutions, crop-and-copy; 572 -> 388",
     f"{cfg.padding} padding, overlap tiles blended with a Hann window",
     effect("drive_recipe", "valid_padding_equal_time", "cpu")],
    ["width (Fig. 1)", f"{paper.base_channels} channels at the first level "
     f"({paper_params:,} parameters)", f"{cfg.base_channels} channels ({ours_params:,} "
     "parameters)", "not ablated for quality; see the throughput row"],
    ["normalisation", "none (2015)", "batch norm after every convolution",
     effect("drive_recipe", "no_batch_norm", "cpu")],
    ["drop-out (Sec. 3.1)", f"at the end of the contracting path (profile: {paper.dropout})",
     f"{cfg.dropout}", "not ablated"],
    ["loss (Sec. 3, Eqs. 1-2)", "softmax cross-entropy weighted by the weight map, w0 = 10, "
     "sigma = 5 px", f"{cfg.loss}, one sigmoid output",
     effect("drive_recipe", "weighted_ce", "cpu")],
    ["separation term w0 (ISBI)", "w0 = 10", "w0 = 10 in the ISBI chapter",
     effect("isbi_cv", "w0_10", "w0_0", "v_rand")],
    ["border weight or membrane weight (ISBI)", "the weight map's border term",
     "control: the membranes reweighted uniformly to the same share of the loss",
     effect("isbi_cv", "w0_10", "membrane_reweighted", "v_rand")],
    ["augmentation (Sec. 3.1)", "elastic: 3x3 grid, sigma 10 px, bicubic; shifts, rotations, "
     "grey values", "none (the paper's against no augmentation, 18 images)",
     effect("drive_augmentation", "paper_full", "no_augmentation")],
    ["elastic step (Sec. 3.1)", "the paper's elastic deformation",
     f"{cfg.augmentation}: flips, 90-degree rotations, its own elastic step, grid "
     "distortion, brightness/contrast", effect("drive_augmentation",
                                              "albumentations_paper_elastic", "cpu")],
    ["few training images (Sec. 1, 3.1)", "augmentation lets U-Net learn from very few "
     "images", "1 training image (another per seed), the paper's augmentation against none",
     effect("drive_augmentation", "paper_full_1img", "no_augmentation_1img")],
    ["optimiser (Sec. 3)", "SGD, momentum 0.99, learning rate not stated",
     f"{cfg.optimizer}, lr {cfg.lr}, {cfg.scheduler} schedule",
     effect("drive_recipe", "sgd", "cpu")],
    ["the whole recipe (ISBI)", "the paper's recipe", "the cpu profile, equal wall time",
     effect("isbi_cv", "paper_w16_equal_time", "cpu", "v_rand")],
    ["batch (Sec. 3)", "one 572x572 tile per step", f"{cfg.batch_size} patches of "
     f"{cfg.patch_size}x{cfg.patch_size}", "not ablated"],
    ["precision", "fp32 (Caffe, GPU)", f"precision '{cfg.precision}', memory format "
     f"'{cfg.memory_format}': the faster measured on the training CPU", speedup],
    ["inference (Sec. 2)", "overlap-tile with mirrored context",
     f"the same, plus test-time augmentation '{cfg.tta}'", "chapter 2: tile-size invariance"],
    ["threshold", "arg-max of the two-class softmax (0.5)",
     f"maximises F1 on the {cfg.threshold_images.replace('_', ' ')} images"
     if cfg.tune_threshold else f"{cfg.threshold}", threshold_effect],
]
display(Markdown(markdown_table(["choice", "paper", "this project (cpu profile)",
                                 "measured effect (seeded studies; claims page)"], rows,
                                align="llll")))
