"""The evidence studies: the paper's claims as arms x seeds x steps, and the verdict rule.

A :class:`Study` is declared here, in code, before it runs: a base configuration, its arms
(each changes a few :class:`~unet_train.config.TrainConfig` fields), the seeds, the budget in
*steps* (a busy machine changes how long a cell takes, not what it computes), and the
:class:`Comparison` s that decide the paper's claims. An arm may be run at *equal time* with
another: its steps are the study's steps times the ratio of the two arms' step times, measured
once on a quiet machine and stored in the results file.

``benchmarks/study.py NAME`` (``make study NAME=...``) trains the missing cells, one run folder
each (resumable), and writes ``benchmarks/results/studies/<NAME>.json`` after every cell: per
cell the arm, seed, steps, minutes, the fingerprint of the code and data
(:mod:`unet_train.provenance`), the machine, the date, the test metrics and the validation
curve. The book reads these files (:func:`load_results`, :func:`verdicts`); it never trains a
study while it builds.

**The verdict rule** (fixed before the runs): for each comparison and each seed run in both
arms by the current code, the paired difference ``d = metric(paper's arm) - metric(other arm)``,
signed so that ``d > 0`` is the paper's side. With ``n >= 3`` seeds, the 95 % interval of the
mean difference, ``mean(d) +- t(0.975, n - 1) * sd(d) / sqrt(n)`` (Student t; 4.30 for three
seeds): **supported** when it lies above zero, **contradicted** when below, **undecided at this
budget** otherwise; fewer than 3 seeds: **incomplete**. The test set decides nothing else: the
threshold is chosen on training images, the steps are fixed in advance.

**No interim verdicts** (the stopping rule): a comparison is read only once every cell the
study plans for both of its arms (each seed, and each fold in a cross-validation) has run,
done or failed; until then it is **incomplete**, and its running mean and interval are shown
as interim numbers only. Looking at a partly run study and stopping when the interval clears
zero would make the 95 % interval a lie.

In a cross-validated study (``folds``, ISBI 2012) a paired sample is one ``(seed, fold)``: both
arms trained with that seed and tested on that fold; ``n`` counts these pairs.

**The failure rule** (fixed before the runs of ``isbi_cv`` and ``drive_augmentation``;
:func:`failure`): a cell whose training stopped on a non-finite loss, whose last logged
training loss is not below its first, or whose last validation AUC is below
:data:`MIN_VALIDATION_AUC` (an output that does not rank membranes or vessels above
background, such as a constant one) is **failed**: shown as such with its reason, never
averaged and never paired. Only training and validation data decide it, never the test set.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats as scipy_stats

from unet_train.config import TrainConfig
from unet_train.provenance import SOURCE_ROOT, covered_modules

STUDIES_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "studies"
VERDICTS = ("supported", "contradicted", "undecided", "incomplete")
MIN_SEEDS = 3
MIN_VALIDATION_AUC = 0.6  # the failure rule: below it a cell has learned nothing usable


@dataclass(frozen=True)
class Arm:
    """One arm: the study's base with ``changes``; ``equal_time_with`` names the arm whose
    wall time per cell it matches (its steps then come from the step-time ratio)."""

    name: str
    label: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    equal_time_with: str | None = None
    image_per_seed: bool = False  # few-image arms: seed s trains on the s-th image


@dataclass(frozen=True)
class Comparison:
    """A claim decided by two arms: ``paper`` is the arm the paper's claim favours."""

    claim: str  # "C1", ...
    statement: str  # what is tested, in words
    paper: str
    other: str


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    dataset: str
    base: Mapping[str, Any]  # profile and fields shared by every arm
    arms: tuple[Arm, ...]
    comparisons: tuple[Comparison, ...]
    steps: int
    seeds: tuple[int, ...] = (0, 1, 2)
    metric: str = "auc_roc"  # the metric the verdicts use (see :func:`cell_metrics`)
    secondary: tuple[str, ...] = ("f1",)
    evaluations: int = 5  # validation passes per cell (the curves)
    notes: str = ""
    doubles: str | None = None  # this study is that study's arms at twice its steps
    folds: int = 0  # ISBI 2012 cross-validation: every (arm, seed) once per fold (0: none)
    supersedes: tuple[str, ...] = ()  # older studies whose verdicts this one replaces

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise ValueError(f"study {self.name!r} has no arm {name!r}; its arms: "
                         f"{', '.join(a.name for a in self.arms)}")

    @property
    def fold_ids(self) -> tuple[int | None, ...]:
        """The folds a cell can have: ``(None,)`` without cross-validation."""
        return tuple(range(self.folds)) if self.folds else (None,)

    def config(self, arm: str | Arm, seed: int, steps: int | None = None,
               fold: int | None = None) -> TrainConfig:
        """The config of one cell (``steps`` defaults to the study's; ``fold`` is required
        exactly when the study cross-validates)."""
        arm = self.arm(arm) if isinstance(arm, str) else arm
        values = {**self.base, **arm.changes}
        profile = values.pop("profile", "cpu")
        steps = self.steps if steps is None else int(steps)
        if (fold is None) != (not self.folds):
            raise ValueError(f"study {self.name!r} has {self.folds or 'no'} folds; got "
                             f"fold={fold!r}")
        if self.folds:
            values |= {"cv_folds": self.folds, "cv_fold": int(fold)}  # type: ignore[arg-type]
        if arm.image_per_seed:
            values |= {"train_start": seed}
        return TrainConfig.from_profile(profile, **values, seed=seed, steps=steps,
                                        eval_every=max(1, steps // self.evaluations))


#: Direction of each metric a verdict may use: +1 higher is better, -1 lower is better.
DIRECTION: dict[str, int] = {"auc_roc": 1, "f1": 1, "iou": 1, "rand_error": -1,
                             "variation_of_information": -1, "pixel_error": -1,
                             "v_rand": 1, "v_info": 1, "v_rand_split": 1, "v_rand_merge": 1,
                             "v_info_split": 1, "v_info_merge": 1, "warping_error": -1,
                             "v_rand_best_on_test": 1, "outside_fov_positive": -1}

_DRIVE_BASE: dict[str, Any] = {"profile": "cpu", "dataset": "drive", "tta": "none"}
_ISBI_BASE: dict[str, Any] = {"profile": "cpu", "dataset": "isbi2012", "val_images": 2,
                              "tune_threshold": False, "tta": "none"}

STUDIES: dict[str, Study] = {}
STUDIES["drive_recipe"] = Study(
    name="drive_recipe",
    title="DRIVE: augmentation with few images, padding, and each modern choice reverted",
    dataset="drive",
    base=_DRIVE_BASE,
    steps=1000,
    arms=(
        Arm("cpu", "cpu profile (albumentations, same padding, BN, Adam one-cycle, BCE+Dice)"),
        Arm("paper_deformation", "paper's elastic deformation (572-px tile)",
            {"augmentation": "paper"}),
        Arm("no_augmentation", "no augmentation", {"augmentation": "none"}),
        Arm("paper_deformation_1img", "paper's elastic deformation, 1 training image",
            {"augmentation": "paper", "train_images": 1}),
        Arm("no_augmentation_1img", "no augmentation, 1 training image",
            {"augmentation": "none", "train_images": 1}),
        Arm("valid_padding", "valid padding + overlap-tile, equal steps",
            {"padding": "valid", "patch_size": 316, "eval_tile": 316}),
        Arm("valid_padding_equal_time", "valid padding + overlap-tile, equal time",
            {"padding": "valid", "patch_size": 316, "eval_tile": 316}, equal_time_with="cpu"),
        Arm("no_batch_norm", "no batch norm (paper)", {"batch_norm": False}),
        Arm("sgd", "SGD, momentum 0.99, constant lr 0.01 (paper)",
            {"optimizer": "sgd", "momentum": 0.99, "lr": 1e-2, "scheduler": "constant"}),
        Arm("weighted_ce", "weighted cross-entropy with the weight map (paper)",
            {"loss": "weighted_ce"}),
    ),
    comparisons=(
        Comparison("C1", "elastic deformation against none, 1 training image",
                   "paper_deformation_1img", "no_augmentation_1img"),
        Comparison("C1", "elastic deformation against none, 18 training images",
                   "paper_deformation", "no_augmentation"),
        Comparison("C1", "elastic deformation against the albumentations pipeline, 18 images",
                   "paper_deformation", "cpu"),
        Comparison("C3", "valid padding against same padding, equal steps",
                   "valid_padding", "cpu"),
        Comparison("C3", "valid padding against same padding, equal wall time",
                   "valid_padding_equal_time", "cpu"),
        Comparison("C5", "no batch norm (paper) against batch norm", "no_batch_norm", "cpu"),
        Comparison("C5", "SGD (paper) against Adam with one-cycle", "sgd", "cpu"),
        Comparison("C5", "weighted cross-entropy (paper) against BCE + Dice", "weighted_ce",
                   "cpu"),
        Comparison("C5", "valid padding (paper) against same padding", "valid_padding", "cpu"),
    ),
    notes=("The cpu profile with TTA off (every arm alike, to make evaluation 4x cheaper), "
           "trained on 18 DRIVE training images (2 validate) or on the first one "
           "(21_training) alone; the threshold is chosen on the 20 training images; metrics "
           "on the 20 test images, pooled over the FOV. Valid padding: a 316-pixel input "
           "tile, whose output is 132 pixels (the cpu arm's patch is 128)."),
)
STUDIES["isbi_recipe"] = Study(
    name="isbi_recipe",
    title="ISBI 2012: the weight map, and the paper's recipe against the cpu profile",
    dataset="isbi2012",
    base=_ISBI_BASE,
    steps=1000,
    metric="rand_error",
    secondary=("variation_of_information", "pixel_error"),
    arms=(
        Arm("w0_10", "weighted CE with the weight map, w0 = 10 (paper)",
            {"loss": "weighted_ce", "w0": 10.0}),
        Arm("w0_0", "weighted CE, class balance only (w0 = 0)", {"loss": "weighted_ce",
                                                                 "w0": 0.0}),
        Arm("cpu", "cpu profile (BCE + Dice)"),
        Arm("paper_w16_equal_time", "paper profile at 16 channels, equal time",
            {"profile": "paper", "base_channels": 16}, equal_time_with="cpu"),
    ),
    comparisons=(
        Comparison("C2", "weight map w0 = 10 against w0 = 0", "w0_10", "w0_0"),
        Comparison("C4", "paper profile (16 channels) against cpu profile, equal wall time",
                   "paper_w16_equal_time", "cpu"),
    ),
    notes=("Slices 0-20 train, 21-22 validate (the curves), 23-24 are a gap, 25-29 are held "
           "out: no slice trained on is adjacent to a held-out one. Threshold 0.5, TTA off. "
           "Rand error and variation of information of the membrane maps' cell segments, "
           "mean over the 5 held-out slices."),
)


_ISBI_CV_BASE: dict[str, Any] = {**_ISBI_BASE, "isbi_gap": 2}
STUDIES["isbi_cv"] = Study(
    name="isbi_cv",
    title=("ISBI 2012 in 5-fold cross-validation, scored with the challenge's instruments: the "
           "weight map against class balance and against uniform membrane reweighting; the "
           "paper's recipe against the cpu profile"),
    dataset="isbi2012",
    base=_ISBI_CV_BASE,
    steps=1000,
    seeds=(0, 1),
    folds=5,
    metric="v_rand",
    secondary=("v_info", "warping_error", "v_rand_split", "v_rand_merge", "v_info_split",
               "v_info_merge", "v_rand_best_on_test", "rand_error", "auc_roc"),
    arms=(
        Arm("w0_10", "weighted CE with the weight map, w0 = 10 (paper)",
            {"loss": "weighted_ce", "w0": 10.0}),
        Arm("w0_0", "weighted CE, class balance only (w0 = 0)",
            {"loss": "weighted_ce", "w0": 0.0}),
        Arm("membrane_reweighted", "weighted CE, class balance with the membranes reweighted "
            "uniformly to the share of the loss w0 = 10 gives them",
            {"loss": "weighted_ce", "w0": 0.0, "class_reweight_w0": 10.0}),
        Arm("cpu", "cpu profile (BCE + Dice)"),
        Arm("paper_w16_equal_time", "paper profile at 16 channels, equal time",
            {"profile": "paper", "base_channels": 16}, equal_time_with="cpu"),
    ),
    comparisons=(
        Comparison("C2", "weight map w0 = 10 against class balance alone (w0 = 0)",
                   "w0_10", "w0_0"),
        Comparison("C2", "weight map w0 = 10 against the same membrane share, uniformly",
                   "w0_10", "membrane_reweighted"),
        Comparison("C4", "paper profile (16 channels) against cpu profile, equal wall time",
                   "paper_w16_equal_time", "cpu"),
    ),
    supersedes=("isbi_recipe", "isbi_recipe_2x"),
    notes=("The 30 labelled slices in 5 folds of 6 consecutive slices; each fold is held out "
           "once, the 2 slices on each side of it are used by no set, the last 2 of the rest "
           "validate and the rest (18 or 20 slices) train; 2 seeds per fold, so 10 paired "
           "samples per comparison. TTA off. Every cell's threshold is the one of 0.0, 0.1, "
           "..., 1.0 with the best thinned V_rand on its own 2 validation slices; the test "
           "scores (V_rand and V_info after border thinning, their split and merge parts, the "
           "warping error) are the mean over the fold's 6 test slices at that threshold. The "
           "leaderboard's best-over-thresholds V_rand is shown beside it, chosen on the test "
           "slices; the unthinned Rand error at 0.5 is the older instrument. A cell whose "
           "training diverges or does not learn (the failure rule) is flagged failed and "
           "never averaged."),
)
STUDIES["drive_augmentation"] = Study(
    name="drive_augmentation",
    title="DRIVE: the paper's augmentation, like against like",
    dataset="drive",
    base=_DRIVE_BASE,
    steps=1000,
    seeds=(0, 1, 2, 3, 4),
    arms=(
        Arm("paper_full", "the paper's augmentation (elastic, rotation, shift, grey values)",
            {"augmentation": "paper_full"}),
        Arm("no_augmentation", "no augmentation", {"augmentation": "none"}),
        Arm("paper_full_1img", "the paper's augmentation, 1 training image (seed s: image s)",
            {"augmentation": "paper_full", "train_images": 1}, image_per_seed=True),
        Arm("no_augmentation_1img", "no augmentation, 1 training image (seed s: image s)",
            {"augmentation": "none", "train_images": 1}, image_per_seed=True),
        Arm("albumentations_paper_elastic", "albumentations with the paper's elastic step "
            "in place of its own", {"augmentation": "albumentations_paper_elastic"}),
        Arm("cpu", "cpu profile (albumentations with its own elastic step)"),
    ),
    comparisons=(
        Comparison("C1", "the paper's augmentation against none, 1 training image",
                   "paper_full_1img", "no_augmentation_1img"),
        Comparison("C1", "the paper's augmentation against none, 18 training images",
                   "paper_full", "no_augmentation"),
        Comparison("C1", "albumentations with the paper's elastic step against with its own",
                   "albumentations_paper_elastic", "cpu"),
    ),
    supersedes=("drive_recipe", "drive_recipe_2x"),
    notes=("The cpu profile with TTA off, 1000 steps, 5 seeds. The paper's augmentation is "
           "its elastic deformation at the 572-px tile's scale, a rotation by a uniform angle, "
           "the random patch position (a shift) and a random contrast (x 0.8-1.2) and "
           "brightness (+- 0.1): the paper names these without their ranges. The one-image "
           "arms train seed s on the s-th training image (21_training for seed 0). Threshold "
           "chosen on the 20 training images; AUC and F1 pooled over the FOVs of the 20 test "
           "images."),
)

STUDIES["drive_outside_fov"] = Study(
    name="drive_outside_fov",
    title="DRIVE: the pixels outside the field of view counted as background in the loss",
    dataset="drive",
    base=_DRIVE_BASE,
    steps=1000,
    seeds=(0, 1, 2),
    secondary=("outside_fov_positive", "f1"),
    arms=(
        Arm("outside_background", "the loss also counts the pixels outside the FOV as "
            "background", {"outside_fov": "background"}),
        Arm("cpu", "cpu profile (the loss sees only the FOV)"),
    ),
    comparisons=(
        Comparison("FOV", "outside the FOV as background against ignored, inside the FOV",
                   "outside_background", "cpu"),
    ),
    notes=("Not a claim of the paper: the rule for keeping the change, fixed before the runs, "
           "is that it does no harm inside the FOV (the AUC verdict is not 'contradicted') and "
           "brings the share of outside-FOV test pixels above the threshold under 1 %. The cpu "
           "profile with TTA off, 1000 steps, 3 seeds; metrics pooled over the FOVs of the 20 "
           "test images, the outside share over the pixels outside them."),
)


def _doubled(name: str, arms: tuple[str, ...]) -> Study:
    """``name``'s arms ``arms`` at twice the steps: a verdict that changes with the budget is
    budget-dependent."""
    base = STUDIES[name]
    keep = set(arms)
    return Study(
        name=f"{name}_2x", title=base.title + " (twice the steps)", dataset=base.dataset,
        base=base.base, arms=tuple(a for a in base.arms if a.name in keep),
        comparisons=tuple(c for c in base.comparisons if {c.paper, c.other} <= keep),
        steps=2 * base.steps, seeds=base.seeds, metric=base.metric, secondary=base.secondary,
        evaluations=base.evaluations, notes=base.notes, doubles=name)


STUDIES["drive_recipe_2x"] = _doubled("drive_recipe", (
    "cpu", "paper_deformation", "no_augmentation", "paper_deformation_1img",
    "no_augmentation_1img"))
STUDIES["isbi_recipe_2x"] = _doubled("isbi_recipe", ("w0_10", "w0_0"))
#: The book's headline model (chapters 5, 6, 8, 9) when the FOV rule of ``drive_outside_fov``
#: keeps the change: its kept arm at the headline's 2000 steps. Its counterpart with the FOV
#: ignored is the ``cpu`` arm of ``drive_recipe_2x`` (the same config otherwise).
STUDIES["drive_outside_fov_2x"] = Study(
    name="drive_outside_fov_2x",
    title="DRIVE: the book's model, the FOV rule's kept arm at 2000 steps",
    dataset="drive", base=_DRIVE_BASE, steps=2000, seeds=(0, 1, 2),
    secondary=STUDIES["drive_outside_fov"].secondary,
    arms=tuple(a for a in STUDIES["drive_outside_fov"].arms if a.name == "outside_background"),
    comparisons=(),
    notes=("No comparison of its own: the headline run is its seed 0, and its counterpart "
           "with the FOV ignored is the cpu arm of drive_recipe_2x (the same config "
           "otherwise, the same seeds)."),
)



@dataclass(frozen=True)
class Claim:
    """One of the paper's claims: where it is made, and the study (and the study at twice the
    steps) whose comparisons of that claim decide it."""

    key: str
    statement: str
    section: str
    study: str
    doubled: str | None = None
    superseded: tuple[str, ...] = ()  # older studies of this claim, shown as superseded
    why_superseded: str = ""


CLAIMS: dict[str, Claim] = {c.key: c for c in (
    Claim("C1", "elastic deformation is what lets U-Net learn from very few images",
          "Sec. 1, 3.1", "drive_augmentation", superseded=("drive_recipe", "drive_recipe_2x"),
          why_superseded=(
              "its 'paper' arm was the elastic deformation alone, not the paper's "
              "augmentation (which also rotates, shifts and varies grey values); it was set "
              "against an albumentations pipeline that itself deforms elastically; and its "
              "three one-image cells all trained on the same image (21_training)")),
    Claim("C2", "the weight map separates touching cells", "Sec. 3, Eq. 2, Fig. 3",
          "isbi_cv", superseded=("isbi_recipe", "isbi_recipe_2x"),
          why_superseded=(
              "it scored the cells at one fixed threshold (0.5) without the challenge's border "
              "thinning, which rewards thin membranes and so favours the arm whose weighted "
              "loss predicts thinner ones; it had no control for plain membrane reweighting; "
              "and three seeds on five test slices could not decide effects of its size")),
    Claim("C3", "valid padding with overlap-tile is worth its cost", "Sec. 2, Fig. 2",
          "drive_recipe"),
    Claim("C4", "the paper's whole recipe beats the cpu profile at equal time", "Sec. 3",
          "isbi_cv", superseded=("isbi_recipe",),
          why_superseded=(
              "it averaged a cell whose training collapsed to a constant output (seed 1: "
              "validation AUC 0.5, training loss rising) with two that trained, and scored "
              "them with the unthinned Rand error at 0.5")),
    Claim("C5", "each modern choice of the cpu profile, reverted alone, loses", "Sec. 2-3",
          "drive_recipe"),
)}


def budget_verdict(verdict_1x: str, verdict_2x: str) -> str:
    """A claim's verdict over two budgets: the one budget's verdict while the other is
    incomplete; the common verdict; or ``budget-dependent`` when both are complete and
    differ."""
    if verdict_2x == "incomplete":
        return verdict_1x
    if verdict_1x == "incomplete":
        return verdict_2x
    return verdict_1x if verdict_1x == verdict_2x else "budget-dependent"


# -- results files -------------------------------------------------------------------------------
def source_digest(root: Path = SOURCE_ROOT) -> str:
    """Hash of the text of the modules that can change a result
    (:func:`unet_train.provenance.covered_modules`): equal on a machine with other library
    versions (a GPU machine's, whose probe may differ) when the sources are the same. The raw
    text, not the syntax tree, because ``ast.dump`` differs between Python versions; so a
    docstring edit changes it (the cell is then shown as older)."""
    h = hashlib.sha256()
    for path in covered_modules(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def results_path(name: str, directory: Path = STUDIES_DIR) -> Path:
    return directory / f"{name}.json"


def get_study(name: str) -> Study:
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r}; the studies: {', '.join(STUDIES)}")
    return STUDIES[name]


def load_results(name: str, directory: Path = STUDIES_DIR) -> dict[str, Any]:
    """The study's results file (``{"cells": [], ...}`` when it has not run yet)."""
    path = results_path(name, directory)
    if not path.exists():
        return {"study": name, "cells": [], "step_times": {}}
    return json.loads(path.read_text())


def cell_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The test metrics a cell records, from a run's ``metrics.json``: pooled AUC, F1, IoU,
    Se, Sp and, for ISBI 2012, pixel and Rand error and VI."""
    test = metrics["test"]
    pooled = test["pooled"]
    out = {k: pooled.get(k) for k in ("auc_roc", "f1", "iou", "sensitivity", "specificity")}
    out.update(test.get("isbi", {}))
    return out


def result_fields(result: Any) -> dict[str, Any]:
    """What a cell records of a finished training (``unet_train.train.train``'s result): the
    training minutes, why it stopped, its provenance, the test metrics and threshold and the
    validation curve."""
    return {
        "minutes": round(result.train_minutes, 5), "stopped_by": result.stopped_by,
        "fingerprint": result.provenance, "metrics": cell_metrics(result.metrics),
        "threshold": result.metrics["test"]["threshold"],
        "curve": [{k: h[k] for k in ("step", "minutes", "loss", "val_auc_roc", "val_f1")
                   if k in h} for h in result.history],
    }


def failure(cell: Mapping[str, Any]) -> str | None:
    """Why a cell failed by the failure rule (module docstring), or None."""
    if cell.get("error"):
        return f"training stopped: {cell['error']}"
    curve = cell.get("curve") or []
    losses = [h["loss"] for h in curve if h.get("loss") is not None]
    if any(not math.isfinite(x) for x in losses):
        return "a non-finite training loss"
    if len(losses) >= 2 and losses[-1] >= losses[0]:
        return (f"the training loss rose: {losses[0]:.3f} at step {curve[0]['step']}, "
                f"{losses[-1]:.3f} at step {curve[-1]['step']}")
    aucs = [h["val_auc_roc"] for h in curve if h.get("val_auc_roc") is not None]
    if aucs and aucs[-1] < MIN_VALIDATION_AUC:
        return f"validation AUC {aucs[-1]:.3f} < {MIN_VALIDATION_AUC} at the end"
    return None


def as_defined(study: Study, cell: Mapping[str, Any]) -> bool:
    """Whether ``cell`` was trained with the config the study defines for it today (its arm,
    seed, fold and steps): a cell of an arm whose recipe has changed since, e.g. a profile's
    learning rate, is history, however current its code."""
    if "config_key" not in cell:
        return True  # recorded before cells stored their config key
    try:
        cfg = study.config(cell["arm"], cell["seed"], cell["steps"], cell.get("fold"))
    except ValueError:  # an arm or fold the study no longer has
        return False
    return cfg.key() == cell["config_key"]


def current_cells(results: Mapping[str, Any], code: str, data_key: str | None = None,
                  study: Study | None = None) -> list[dict[str, Any]]:
    """The cells made by code ``code`` (and, if given, on the data with provenance key
    ``data_key``, and with the configs ``study`` defines today, :func:`as_defined`); the
    others are history, never shown as current."""
    return [c for c in results.get("cells", []) if c["fingerprint"]["code"] == code
            and (data_key is None or c["fingerprint"]["key"] == data_key)
            and (study is None or as_defined(study, c))]


@dataclass(frozen=True)
class Verdict:
    comparison: Comparison
    metric: str
    n: int
    mean: float | None  # mean paired difference, paper's arm minus the other (raw metric)
    sd: float | None
    low: float | None  # 95 % interval of the mean difference (raw metric)
    high: float | None
    verdict: str
    seeds: tuple[int, ...]
    planned: int = 0  # the samples (seeds, or seed x fold pairs) the study plans
    run: int = 0  # of those, the ones both arms have run (done or failed)


def paired_differences(cells: Sequence[Mapping[str, Any]], paper: str, other: str,
                       metric: str) -> dict[int, float]:
    """``seed -> metric(paper) - metric(other)`` for the seeds (``(seed, fold)`` in a
    cross-validation) both arms have; failed cells (:func:`failure`) pair with nothing."""
    by = {(c["arm"], sample_id(c)): c["metrics"].get(metric) for c in cells
          if c.get("metrics") and not c.get("failed")}
    seeds = sorted({s for a, s in by if a == paper} & {s for a, s in by if a == other})
    return {s: by[paper, s] - by[other, s] for s in seeds
            if by[paper, s] is not None and by[other, s] is not None}


def sample_id(cell: Mapping[str, Any]) -> Any:
    """What pairs two arms' cells: the seed, or ``(seed, fold)`` in a cross-validation."""
    return cell["seed"] if cell.get("fold") is None else (cell["seed"], cell["fold"])


def verdict(differences: Mapping[int, float], direction: int = 1,
            min_seeds: int = MIN_SEEDS) -> tuple[str, float | None, float | None,
                                                 float | None, float | None]:
    """The verdict rule (module docstring): ``(verdict, mean, sd, low, high)``."""
    d = list(differences.values())
    n = len(d)
    if n == 0:
        return "incomplete", None, None, None, None
    mean = sum(d) / n
    if n < 2:
        return "incomplete", mean, None, None, None
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    half = float(scipy_stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if n < min_seeds:
        return "incomplete", mean, sd, low, high
    if direction * low > 0 and direction * high > 0:
        return "supported", mean, sd, low, high
    if direction * low < 0 and direction * high < 0:
        return "contradicted", mean, sd, low, high
    return "undecided", mean, sd, low, high


def verdicts(study: Study, cells: Sequence[Mapping[str, Any]],
             metric: str | None = None) -> list[Verdict]:
    """Every comparison of ``study`` decided on ``cells`` (current code only)."""
    metric = metric or study.metric
    planned = planned_samples(study)
    out = []
    for comp in study.comparisons:
        diffs = paired_differences(cells, comp.paper, comp.other, metric)
        result, mean, sd, low, high = verdict(diffs, DIRECTION[metric])
        run = {sample_id(c) for c in cells if c["arm"] == comp.paper} & {
            sample_id(c) for c in cells if c["arm"] == comp.other}
        if not planned <= run:  # the stopping rule: no verdict from a partly run study
            result = "incomplete"
        out.append(Verdict(comp, metric, len(diffs), mean, sd, low, high, result,
                           tuple(diffs), len(planned), len(planned & run)))
    return out


def planned_samples(study: Study) -> set[Any]:
    """The samples a comparison of ``study`` pairs when every cell has run: its seeds, or
    its ``(seed, fold)`` pairs in a cross-validation (:func:`sample_id`)."""
    if study.folds:
        return {(seed, fold) for seed in study.seeds for fold in study.fold_ids}
    return set(study.seeds)


def arm_summary(cells: Sequence[Mapping[str, Any]], arm: str, metric: str,
                ) -> tuple[int, float | None, float | None]:
    """``(n, mean, sd)`` of ``metric`` over the arm's cells."""
    values = [c["metrics"][metric] for c in cells if c["arm"] == arm and c.get("metrics")
              and not c.get("failed") and c["metrics"].get(metric) is not None]
    if not values:
        return 0, None, None
    mean = sum(values) / len(values)
    sd = (math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
          if len(values) > 1 else None)
    return len(values), mean, sd


def equal_time_steps(study: Study, arm: Arm, step_times: Mapping[str, float]) -> int:
    """The steps of an equal-time arm: the study's steps x (seconds per step of the arm it
    matches / its own), from the stored step times."""
    if arm.equal_time_with is None:
        return study.steps
    missing = [a for a in (arm.name, arm.equal_time_with) if a not in step_times]
    if missing:
        raise ValueError(f"study {study.name!r}: no stored step time for {', '.join(missing)}")
    return max(1, round(study.steps * step_times[arm.equal_time_with] / step_times[arm.name]))
