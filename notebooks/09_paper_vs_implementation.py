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
# The measured column comes from runs of this build, loaded from `runs/`: the ablations of
# {ref}`chap-results` (each changes one setting back to the paper's, same minutes of
# training) and the two ISBI 2012 runs of {ref}`chap-isbi`. Throughput figures come from
# `benchmarks/throughput.py` (see the README). Under the smoke profile (CI) the runs train
# for a few steps and the measured column is meaningless.

# %%
from IPython.display import Markdown, display

from unet_book.experiments import (
    ABLATION_MINUTES,
    ISBI_SETTINGS,
    load_or_train,
    notebook_config,
    run_ablations,
)
from unet_book.results import benchmark_result
from unet_book.tables import markdown_table
from unet_core.config import TrainConfig
from unet_core.model import UNet, count_parameters

cfg = notebook_config({})
paper = TrainConfig.from_profile("paper")
budget = None if cfg.profile == "smoke" else ABLATION_MINUTES
ablations = {a.label: a for a in run_ablations(cfg, budget, log=lambda _: None)}
base = next(iter(ablations.values())).run


def effect(label: str) -> str:
    """F1 and AUC of an ablation row relative to the first row, as text."""
    a = ablations[label]
    if a.run is None or base is None:
        return f"diverged ({a.error or 'the base run'})"
    got, ref = a.run.metrics["test"]["pooled"], base.metrics["test"]["pooled"]
    return (f"DRIVE F1 {got['f1']:.4f} vs {ref['f1']:.4f} ({got['f1'] - ref['f1']:+.4f}), "
            f"AUC {got['auc_roc']:.4f} vs {ref['auc_roc']:.4f}")


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
               "(benchmarks/results/throughput.json)")
quality = benchmark_result("drive_quality")
threshold_effect = "benchmarks/results/drive_quality.json has no threshold comparison"
if quality is not None and quality.get("threshold_rules"):
    threshold_effect = "quality benchmark, test F1: " + "; ".join(
        f"{rule.replace('_', ' ')} ({r['n_images']} images, t = {r['threshold']:.3f}) "
        f"{r['test_f1']:.4f}" for rule, r in quality["threshold_rules"].items())
isbi = {w0: load_or_train(notebook_config({"w0": w0}, **ISBI_SETTINGS), progress=False,
                          log=lambda _: None).metrics["test"]["isbi"]
        for w0 in (10.0, 0.0)}
print(f"profile {cfg.profile}; ablation budget "
      f"{'smoke steps' if budget is None else f'{budget:g} min'} per run")

# %%
rows = [
    ["padding (Sec. 2)", "unpadded 3x3 convolutions, crop-and-copy; 572 -> 388",
     f"{cfg.padding} padding, overlap tiles blended with a Hann window",
     effect("paper: valid padding with crop-and-copy")],
    ["width (Fig. 1)", f"{paper.base_channels} channels at the first level "
     f"({paper_params:,} parameters)", f"{cfg.base_channels} channels ({ours_params:,} "
     "parameters)", "not ablated for quality; see the throughput row"],
    ["normalisation", "none (2015)", "batch norm after every convolution",
     effect("paper: no batch norm")],
    ["drop-out (Sec. 3.1)", f"at the end of the contracting path (profile: {paper.dropout})",
     f"{cfg.dropout}", "not ablated"],
    ["loss (Sec. 3, Eqs. 1-2)", "softmax cross-entropy weighted by the weight map, w0 = 10, "
     "sigma = 5 px", f"{cfg.loss}, one sigmoid output",
     effect("paper: weighted cross-entropy (Eqs. 1-2)")],
    ["separation term w0 (ISBI)", "w0 = 10", "w0 = 10 in the ISBI chapter",
     f"Rand error {isbi[10.0]['rand_error']:.4f} (w0 = 10) vs {isbi[0.0]['rand_error']:.4f} "
     f"(w0 = 0); VI {isbi[10.0]['variation_of_information']:.3f} vs "
     f"{isbi[0.0]['variation_of_information']:.3f}"],
    ["augmentation (Sec. 3.1)", "elastic: 3x3 grid, sigma 10 px, bicubic; shifts, rotations, "
     "grey values", f"{cfg.augmentation}: flips, 90-degree rotations, elastic, grid "
     "distortion, brightness/contrast",
     effect("paper: elastic deformation (3x3 grid, sigma 10 px)")],
    ["no augmentation", "(the paper always augments)", "",
     effect("no augmentation")],
    ["optimiser (Sec. 3)", "SGD, momentum 0.99, learning rate not stated",
     f"{cfg.optimizer}, lr {cfg.lr}, {cfg.scheduler} schedule", "not ablated"],
    ["batch (Sec. 3)", "one 572x572 tile per step", f"{cfg.batch_size} patches of "
     f"{cfg.patch_size}x{cfg.patch_size}", "not ablated"],
    ["precision", "fp32 (Caffe, GPU)", f"bf16 autocast {cfg.bf16}, channels-last "
     f"{cfg.channels_last} (CPU)", speedup],
    ["inference (Sec. 2)", "overlap-tile with mirrored context",
     f"the same, plus test-time augmentation '{cfg.tta}'", "chapter 2: tile-size invariance"],
    ["threshold", "arg-max of the two-class softmax (0.5)",
     f"maximises F1 on the {cfg.threshold_images.replace('_', ' ')} images"
     if cfg.tune_threshold else f"{cfg.threshold}", threshold_effect],
]
display(Markdown(markdown_table(["choice", "paper", "this project (cpu profile)",
                                 "measured effect (this build)"], rows, align="llll")))
