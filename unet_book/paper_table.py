"""Chapter 9's table: every choice the paper makes, what this project does by default, and the
measured effect of the difference.

The effects come from the seeded studies' verdicts (:mod:`unet_book.evidence`: the claim, the
verdict, the mean paired difference, its interval and the number of paired samples) and from
the throughput benchmark (``benchmarks/results/throughput.json``); a choice nothing measured
says so. The configs are passed in, so the table describes whatever profile the chapter runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from unet_book.evidence import METRIC_NAMES, StudyView, comparison_rows, samples_text
from unet_book.tables import markdown_table
from unet_core.model import UNet, count_parameters
from unet_train.config import TrainConfig

#: The studies whose verdicts fill the measured column.
MEASURED_STUDIES = ("drive_recipe", "drive_augmentation", "isbi_cv")
HEADER = ("choice", "paper", "this project (cpu profile)",
          "measured effect (seeded studies; claims page)")
#: The first-level widths whose training speed-up the precision row quotes: the paper's and
#: the ``cpu`` profile's.
THROUGHPUT_WIDTHS = (64, 16)
THRESHOLD_EFFECT = "see chapter 6: the threshold is chosen on training-set images"


def study_effect(views: Mapping[str, StudyView], study: str, paper_arm: str, other: str,
                 metric: str = "auc_roc") -> str:
    """The claim, verdict and mean paired difference (paper's arm minus the other, with its
    95 % interval) of one comparison of ``study``, as text; "not yet measured" when the
    comparison has no paired samples."""
    found = [v for v in comparison_rows(views[study], metric=metric)
             if (v.comparison.paper, v.comparison.other) == (paper_arm, other)]
    if not found or found[0].mean is None:
        return f"not yet measured (cells of `{study}` missing)"
    v = found[0]
    older = "" if views[study].current else " (older code)"
    interval = "" if v.low is None else f", 95 % interval [{v.low:+.4f}, {v.high:+.4f}]"
    return (f"claim {v.comparison.claim}: **{v.verdict}**; paper minus ours "
            f"{v.mean:+.4f} {METRIC_NAMES.get(metric, metric)} over {samples_text(v)} "
            f"paired samples{interval} (`{study}`){older}")


def parameter_counts(paper: TrainConfig, ours: TrainConfig) -> tuple[int, int]:
    """The trainable parameters of the paper's network (Fig. 1: one grey input channel, a
    two-class softmax, no normalisation) and of ours (three colour channels, one sigmoid
    output, ``ours.batch_norm``), at each config's width, depth and padding."""
    paper_net = UNet(1, 2, paper.base_channels, paper.depth, paper.padding)
    ours_net = UNet(3, 1, ours.base_channels, ours.depth, ours.padding,
                    batch_norm=ours.batch_norm)
    return count_parameters(paper_net), count_parameters(ours_net)


def throughput_effect(throughput: Mapping[str, Any] | None,
                      widths: Sequence[int] = THROUGHPUT_WIDTHS) -> str:
    """The training speed-up of bf16 with channels-last over fp32 at each width (same
    padding), from the throughput benchmark's results, or that it was not produced."""
    if throughput is None:
        return "benchmarks/results/throughput.json not produced in this checkout"
    best = {(r["width"], r["padding"], r["phase"]): r["speedup_vs_fp32"]
            for r in throughput["speedups_vs_fp32"] if r["mode"] == "bf16+channels_last"}
    speedups = ", ".join(f"x{best[(w, 'same', 'training')]:.2f} at width {w}" for w in widths)
    return (f"training throughput {speedups} (benchmarks/results/throughput.json, measured "
            f"{throughput.get('date', '')[:10] or 'at an earlier commit'})")


def paper_vs_implementation_rows(
    cfg: TrainConfig, paper: TrainConfig, views: Mapping[str, StudyView],
    throughput: Mapping[str, Any] | None = None,
) -> list[list[str]]:
    """One row per choice (:data:`HEADER`): the paper's (its section), this project's under
    ``cfg`` and the measured effect (:func:`study_effect` on ``views``, which must hold the
    :data:`MEASURED_STUDIES`; :func:`throughput_effect`)."""
    def effect(study: str, paper_arm: str, other: str, metric: str = "auc_roc") -> str:
        return study_effect(views, study, paper_arm, other, metric)

    paper_params, ours_params = parameter_counts(paper, cfg)
    threshold = (f"maximises F1 on the {cfg.threshold_images.replace('_', ' ')} images"
                 if cfg.tune_threshold else f"{cfg.threshold}")
    return [
        ["padding (Sec. 2)", "unpadded 3x3 convolutions, crop-and-copy; 572 -> 388",
         f"{cfg.padding} padding, overlap tiles blended with a Hann window",
         effect("drive_recipe", "valid_padding_equal_time", "cpu")],
        ["width (Fig. 1)", f"{paper.base_channels} channels at the first level "
         f"({paper_params:,} parameters)", f"{cfg.base_channels} channels ({ours_params:,} "
         "parameters)", "not ablated for quality; see the throughput row"],
        ["normalisation", "none (2015)", "batch norm after every convolution",
         effect("drive_recipe", "no_batch_norm", "cpu")],
        ["drop-out (Sec. 3.1)", f"at the end of the contracting path (profile: "
         f"{paper.dropout})", f"{cfg.dropout}", "not ablated"],
        ["loss (Sec. 3, Eqs. 1-2)", "softmax cross-entropy weighted by the weight map, w0 = 10, "
         "sigma = 5 px", f"{cfg.loss}, one sigmoid output",
         effect("drive_recipe", "weighted_ce", "cpu")],
        ["separation term w0 (ISBI)", "w0 = 10", "w0 = 10 in the ISBI chapter",
         effect("isbi_cv", "w0_10", "w0_0", "v_rand")],
        ["border weight or membrane weight (ISBI)", "the weight map's border term",
         "control: the membranes reweighted uniformly to the same share of the loss",
         effect("isbi_cv", "w0_10", "membrane_reweighted", "v_rand")],
        ["augmentation (Sec. 3.1)", "elastic: 3x3 grid, sigma 10 px, bicubic; shifts, "
         "rotations, grey values", "none (the paper's against no augmentation, 18 images)",
         effect("drive_augmentation", "paper_full", "no_augmentation")],
        ["elastic step (Sec. 3.1)", "the paper's elastic deformation",
         f"{cfg.augmentation}: flips, 90-degree rotations, its own elastic step, grid "
         "distortion, brightness/contrast",
         effect("drive_augmentation", "albumentations_paper_elastic", "cpu")],
        ["few training images (Sec. 1, 3.1)", "augmentation lets U-Net learn from very few "
         "images", "1 training image (another per seed), the paper's augmentation against "
         "none", effect("drive_augmentation", "paper_full_1img", "no_augmentation_1img")],
        ["optimiser (Sec. 3)", "SGD, momentum 0.99, learning rate not stated",
         f"{cfg.optimizer}, lr {cfg.lr}, {cfg.scheduler} schedule",
         effect("drive_recipe", "sgd", "cpu")],
        ["the whole recipe (ISBI)", "the paper's recipe", "the cpu profile, equal wall time",
         effect("isbi_cv", "paper_w16_equal_time", "cpu", "v_rand")],
        ["batch (Sec. 3)", "one 572x572 tile per step", f"{cfg.batch_size} patches of "
         f"{cfg.patch_size}x{cfg.patch_size}", "not ablated"],
        ["precision", "fp32 (Caffe, GPU)", f"precision '{cfg.precision}', memory format "
         f"'{cfg.memory_format}': the faster measured on the training CPU",
         throughput_effect(throughput)],
        ["inference (Sec. 2)", "overlap-tile with mirrored context",
         f"the same, plus test-time augmentation '{cfg.tta}'",
         "chapter 2: tile-size invariance"],
        ["threshold", "arg-max of the two-class softmax (0.5)", threshold, THRESHOLD_EFFECT],
    ]


def paper_vs_implementation_table(
    cfg: TrainConfig, paper: TrainConfig, views: Mapping[str, StudyView],
    throughput: Mapping[str, Any] | None = None,
) -> str:
    """Markdown: :func:`paper_vs_implementation_rows` under :data:`HEADER`."""
    return markdown_table(list(HEADER),
                          paper_vs_implementation_rows(cfg, paper, views, throughput),
                          align="llll")
