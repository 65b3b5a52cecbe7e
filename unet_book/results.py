"""Figure data and figures for the training and results chapters (DRIVE and ISBI 2012).

Figure data (pure functions, tested on their values):

* :func:`run_probabilities`: a run's foreground probabilities on its test split, computed
  once with the run's own inference settings and cached in the run directory.
* :func:`error_overlay`: true positives, false positives and false negatives in three colours.
* :func:`observer_metrics`: the second DRIVE observer scored against the first.
* :func:`rank_images`: per-image scores sorted, for best and worst images.
* :func:`quoted_row` and :func:`run_row`: table rows that say where each number comes from.

Chapter 6's tables (Markdown, from a run and the committed benchmark results files):

* :func:`drive_comparison_table`: the book's run beside the quality benchmarks, the second
  observer and the quoted figures (:func:`drive_comparison_rows`).
* :func:`quality_benchmark_note`, :func:`time_to_quality_markdown`,
  :func:`time_to_quality_curve`, :func:`levers_markdown`: each benchmark as it was written.
* :func:`per_image_table`: a run's test metrics per image.

Figures (matplotlib; they draw what they are given):

* :func:`plot_history`: training loss and validation metrics against minutes of training.
* :func:`plot_roc_pr`: ROC and precision-recall curves of several runs, with the second
  observer as a point.
* :func:`plot_predictions`: image, ground truth, probability and errors for chosen images.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from unet_book.tables import markdown_table
from unet_book.weight_plots import instance_colours
from unet_core.data.splits import Example, load_data
from unet_core.metrics import (
    SegmentationMetrics,
    pr_curve,
    roc_curve,
    segment_labels,
    segmentation_metrics,
)
from unet_train.atomic import write_npz
from unet_train.evaluation import predict_probability
from unet_train.provenance import dataset_fingerprint, describe, is_current
from unet_train.runs import MODEL, PROBABILITIES, RunResult, load_model

#: Colours of :func:`error_overlay` (RGB, 0-255).
COLOURS = {
    "tp": (255, 255, 255),  # vessel found: white
    "fp": (230, 40, 40),  # predicted, not in the ground truth: red
    "fn": (40, 140, 255),  # missed: blue
    "tn": (0, 0, 0),
    "outside": (60, 60, 60),  # outside the field of view
}
PROBS_FILE = PROBABILITIES


def run_probabilities(
    run: RunResult, examples: Sequence[Example] | None = None
) -> list[np.ndarray]:
    """Foreground probabilities of ``run``'s final model on its test split (cached).

    The first call predicts every test image with the run's overlap-tile and TTA settings and
    stores them (float16) in ``<run>/test_probabilities.npz``; later calls read that file. The
    cache is keyed by the image names and is recomputed if they differ.
    """
    path = Path(run.run_dir) / PROBS_FILE
    if examples is None:
        examples = load_data(run.config).test
    names = [e.name for e in examples]
    if path.exists():
        with np.load(path) as z:
            if list(z["names"]) == names:
                return [z[f"p{i}"].astype(np.float32) for i in range(len(names))]
    model, cfg, _ = load_model(Path(run.run_dir) / MODEL)
    probs = [predict_probability(model, e.image, cfg) for e in examples]
    write_npz(path, names=np.array(names),
              **{f"p{i}": p.astype(np.float16) for i, p in enumerate(probs)})
    return probs


def error_overlay(
    prob: np.ndarray, target: np.ndarray, fov: np.ndarray | None = None, threshold: float = 0.5
) -> np.ndarray:
    """``(H, W, 3)`` uint8 picture of the errors at ``threshold``: TP white, FP red, FN blue,
    TN black, outside the FOV grey (:data:`COLOURS`)."""
    prob, target = np.asarray(prob), np.asarray(target).astype(bool)
    if prob.shape != target.shape:
        raise ValueError(f"prob {prob.shape} and target {target.shape} must have the same shape")
    pred = prob >= threshold
    out = np.zeros((*prob.shape, 3), np.uint8)
    for name, where in (("tp", pred & target), ("fp", pred & ~target), ("fn", ~pred & target)):
        out[where] = COLOURS[name]
    if fov is not None:
        fov = np.asarray(fov).astype(bool)
        if fov.shape != prob.shape:
            raise ValueError(f"fov {fov.shape} must have the shape of prob {prob.shape}")
        out[~fov] = COLOURS["outside"]
    return out


def observer_metrics(examples: Sequence[Example]) -> SegmentationMetrics:
    """The second observer (``test/2nd_manual``) scored against the first inside the FOV.

    A binary annotation has no ranking, so its AUC-ROC is the single-point value
    ``(sensitivity + specificity) / 2``; quote its F1, sensitivity and specificity instead.
    """
    missing = [e.name for e in examples if e.second_observer is None]
    if missing:
        raise ValueError(f"no second observer for {', '.join(missing)}")
    return segmentation_metrics([e.second_observer.astype(np.float32) for e in examples],
                                [e.target for e in examples], [e.fov for e in examples],
                                threshold=0.5)


def rank_images(names: Sequence[str], per_image: Sequence[Mapping[str, float]],
                key: str = "f1") -> list[tuple[str, float]]:
    """``(name, score)`` sorted from best to worst by ``key``."""
    if len(names) != len(per_image):
        raise ValueError(f"{len(names)} names for {len(per_image)} per-image scores")
    return sorted(((n, float(m[key])) for n, m in zip(names, per_image, strict=True)),
                  key=lambda t: -t[1])


TABLE_HEADER = ("source", "model and conditions", "AUC-ROC", "F1", "Se", "Sp", "Acc")


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.4f}"


def run_row(label: str, conditions: str, pooled: Mapping[str, float]) -> list[str]:
    """A table row for a number measured here."""
    return [f"measured: {label}", conditions,
            *(_fmt(pooled.get(k)) for k in ("auc_roc", "f1", "sensitivity", "specificity",
                                            "accuracy"))]


def quoted_row(who: str, conditions: str, **values: float) -> list[str]:
    """A table row for a number quoted from someone else, marked as such."""
    return [f"quoted: {who}", conditions,
            *(_fmt(values.get(k)) for k in ("auc_roc", "f1", "sensitivity", "specificity",
                                            "accuracy"))]


# -- figures ------------------------------------------------------------------------------------
def plot_history(history: Sequence[Mapping[str, float]], title: str = "") -> Figure:
    """Training loss and validation AUC / F1 against minutes of training."""
    if not history:
        raise ValueError("history is empty: the run has no validation pass yet")
    minutes = [h["minutes"] for h in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax_loss.plot(minutes, [h["loss"] for h in history], "o-", color="C0")
    ax_loss.set(xlabel="minutes of training", ylabel="mean training loss", yscale="log",
                title="training loss")
    for key, label, colour in (("val_auc_roc", "AUC-ROC", "C1"), ("val_f1", "F1", "C2")):
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax_val.plot(minutes, [np.nan if v is None else v for v in values], "o-",
                        color=colour, label=label)
    ax_val.set(xlabel="minutes of training", title="validation images")
    if ax_val.lines:
        ax_val.legend()
    else:
        ax_val.text(0.5, 0.5, "no validation images", ha="center", transform=ax_val.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_roc_pr(
    curves: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray],
                               Sequence[np.ndarray] | None]],
    observer: SegmentationMetrics | None = None,
    max_points: int = 400,
) -> Figure:
    """ROC and PR curves (pooled inside the FOV) for each ``label: (probs, targets, fovs)``."""
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4.4))
    for label, (probs, targets, fovs) in curves.items():
        fpr, tpr, _ = roc_curve(probs, targets, fovs, max_points=max_points)
        precision, recall, _ = pr_curve(probs, targets, fovs, max_points=max_points)
        ax_roc.plot(fpr, tpr, label=label)
        ax_pr.plot(recall, precision, label=label)
    if observer is not None:
        precision = observer.f1 * observer.sensitivity / (2 * observer.sensitivity - observer.f1)
        ax_roc.plot(1 - observer.specificity, observer.sensitivity, "k*", ms=11,
                    label="2nd observer")
        ax_pr.plot(observer.sensitivity, precision, "k*", ms=11, label="2nd observer")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate (sensitivity)",
               title="ROC (inset: FPR < 0.2)", xlim=(0, 1), ylim=(0, 1))
    inset = ax_roc.inset_axes([0.45, 0.1, 0.5, 0.5])
    for line in ax_roc.lines:
        inset.plot(*line.get_data(), color=line.get_color(), marker=line.get_marker(),
                   linestyle=line.get_linestyle(), ms=line.get_markersize())
    inset.set(xlim=(0, 0.2), ylim=(0.6, 1.0))
    inset.tick_params(labelsize=7)
    ax_pr.set(xlabel="recall (sensitivity)", ylabel="precision", title="precision-recall",
              xlim=(0, 1), ylim=(0, 1))
    ax_pr.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_predictions(
    examples: Sequence[Example], probs: Sequence[np.ndarray], threshold: float,
    titles: Sequence[str] | None = None, crop: tuple[slice, slice] | None = None,
) -> Figure:
    """One row per image: input, ground truth, probability, errors (TP/FP/FN) at ``threshold``."""
    if len(examples) != len(probs):
        raise ValueError(f"{len(examples)} examples for {len(probs)} probability maps")
    crop = crop or (slice(None), slice(None))
    n = len(examples)
    fig, axes = plt.subplots(n, 4, figsize=(13, 3.4 * n), squeeze=False)
    for row, (e, p) in enumerate(zip(examples, probs, strict=True)):
        image = e.image[..., 0] if e.image.shape[2] == 1 else e.image
        panels: list[tuple[Any, dict[str, Any], str]] = [
            (image, {"cmap": "gray"}, "input"),
            (e.target, {"cmap": "gray"}, "ground truth"),
            (p, {"cmap": "magma", "vmin": 0, "vmax": 1}, "probability"),
            (error_overlay(p, e.target, e.fov, threshold), {},
             f"errors at {threshold:.2f}: TP white, FP red, FN blue"),
        ]
        for ax, (data, kw, name) in zip(axes[row], panels, strict=True):
            ax.imshow(np.asarray(data)[crop], **kw)
            label = titles[row] if titles else e.name
            ax.set_title(f"{label}: {name}" if name == "input" else name, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def describe_config(cfg: Any, fields: Sequence[str] = (
        "base_channels", "depth", "padding", "batch_norm", "loss", "augmentation", "optimizer",
        "lr", "patch_size", "batch_size", "bf16")) -> str:
    """A one-line summary of the fields that matter for a table row."""
    return ", ".join(f"{f}={getattr(cfg, f)}" for f in fields)


def describe_run_provenance(run: Any) -> str:
    """The code and data a run was made by, and when it finished (its ``metrics.json``)."""
    finished = run.metrics.get("finished_at")
    return describe(run.provenance) + (f", finished {finished}" if finished else "")


def describe_threshold(choice: dict[str, Any] | None, threshold: float) -> str:
    """How a run's threshold was chosen, in words, from ``metrics["threshold_choice"]``."""
    if not choice:  # a run written before the choice was recorded
        return f"{threshold:.3f}"
    if not choice.get("tuned"):
        return f"{threshold:.3f} (fixed)"
    n = choice[choice["images"]]["n_images"]
    where = {"validation": f"the {n} validation image{'s' if n != 1 else ''}",
             "training_set": f"all {n} training-set images (trained on or validation)"}
    return f"{threshold:.3f} (the F1 optimum on {where[choice['images']]}, not on the test set)"


def threshold_table(choice: dict[str, Any] | None) -> str:
    """Markdown table of a run's ``threshold_choice``: pooled optimum and per-image spread of
    each candidate set of images (``"validation"``, ``"training_set"``)."""
    sets = [k for k in ("validation", "training_set") if choice and k in choice]
    if not sets:
        return "No tuned threshold on record for this run."
    rows = []
    for k in sets:
        c = choice[k]
        t = [r["threshold"] for r in c.get("per_image", [])]
        f = [r["f1"] for r in c.get("per_image", [])]
        spread = (f"{min(t):.3f} to {max(t):.3f} (median {float(np.median(t)):.3f})"
                  if t else "not recorded")
        rows.append([k.replace("_", " ") + (" (used)" if k == choice["images"] else ""),
                     str(c["n_images"]), f"{c['threshold']:.3f}", f"{c['f1']:.4f}", spread,
                     f"{float(np.mean(f)):.4f}" if f else ""])
    return markdown_table(["images", "n", "pooled F1 optimum: threshold", "F1 there",
                           "per-image optima", "mean per-image best F1"], rows)


def _benchmark_folder(root: str | Path | None) -> Path:
    base = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    return base / "benchmarks" / "results"


def benchmark_results(prefix: str, root: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Every ``benchmarks/results/<prefix>*.json`` of this checkout, by file stem."""
    folder = _benchmark_folder(root)
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob(f"{prefix}*.json"))}


def benchmark_result(name: str, root: str | Path | None = None) -> dict[str, Any] | None:
    """``benchmarks/results/<name>.json`` of this checkout (measured by a benchmark script),
    or ``None`` when it has not been produced."""
    path = _benchmark_folder(root) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def result_status(result: Mapping[str, Any], dataset: str = "drive") -> str:
    """Whether a benchmark's results file was made by the current code on the current data:
    ``"current code"``, or a bold "older result" line naming the code it came from."""
    made = result.get("fingerprint")
    now = dataset_fingerprint(dataset)
    if is_current(made, now):
        return f"current code (`{now['code']}`)"
    origin = f"fingerprint `{made['code']}`" if made else (
        f"commit `{result.get('code', 'unknown')}`, before fingerprints were recorded")
    return (f"**older result**: made by {origin}; the current code is `{now['code']}`, so "
            "these numbers may differ from what it gives")


def plot_segments(
    examples: Sequence[Example], probs: Sequence[np.ndarray], threshold: float = 0.5,
    crop: tuple[slice, slice] | None = None,
) -> Figure:
    """ISBI 2012: per slice, the cells of the ground truth and of the prediction (connected
    components of the interior, 4-neighbourhood, as the challenge's evaluation), and the
    membrane probability. A merged pair of cells shows as one colour across a membrane."""
    if len(examples) != len(probs):
        raise ValueError(f"{len(examples)} examples for {len(probs)} probability maps")
    crop = crop or (slice(None), slice(None))
    fig, axes = plt.subplots(len(examples), 3, figsize=(12, 4.1 * len(examples)), squeeze=False)
    for row, (e, p) in enumerate(zip(examples, probs, strict=True)):
        gray = e.image[..., 0]
        truth = segment_labels(e.target.astype(np.float32))
        pred = segment_labels(np.asarray(p, np.float32), threshold=threshold)
        panels = [
            (instance_colours(truth[crop], gray[crop]), {},
             f"{e.name}: true cells ({truth.max()})"),
            (instance_colours(pred[crop], gray[crop]), {}, f"predicted cells ({pred.max()})"),
            (np.asarray(p)[crop], {"cmap": "magma", "vmin": 0, "vmax": 1},
             "membrane probability"),
        ]
        for ax, (data, kw, title) in zip(axes[row], panels, strict=True):
            ax.imshow(data, **kw)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


#: The per-seed columns of the time-to-quality benchmark (``benchmarks/drive_quality.py``).
QUALITY_METRICS = (("auc_roc", "AUC-ROC"), ("f1", "F1"), ("iou", "IoU"), ("sensitivity", "Se"),
                   ("specificity", "Sp"), ("accuracy", "Acc"))


def quality_seed_table(report: Mapping[str, Any]) -> str:
    """The time-to-quality results: one row per seed, then mean ± sd (test set, pooled)."""
    header = ["seed", *(name for _, name in QUALITY_METRICS), "threshold", "steps", "wall min",
              "normalised min", "matmul GFLOP/s"]
    rows: list[list[object]] = []
    for s in report["seeds"]:
        steps = s["steps"] if s.get("stopped_by", "steps") == "steps" else (
            f"{s['steps']:,} of {s['planned_steps']:,} (time)")  # the time guard stopped it
        rows.append([s["seed"], *(f"{s['test'][k]:.4f}" for k, _ in QUALITY_METRICS),
                     f"{s['threshold']:.3f}", steps, f"{s['wall_minutes']:.2f}",
                     f"{s['normalised_minutes']:.2f}", f"{s['matmul_gflops']['used']:.0f}"])
    summary = report["summary"]

    def mean_sd(key: str, spec: str) -> str:
        return f"{summary[key]['mean']:{spec}} ± {summary[key]['sd']:{spec}}"

    rows.append(["mean ± sd", *(mean_sd(k, ".4f") for k, _ in QUALITY_METRICS),
                 mean_sd("threshold", ".3f"), mean_sd("steps", ".0f"),
                 mean_sd("wall_minutes", ".2f"), mean_sd("normalised_minutes", ".2f"), ""])
    return markdown_table(header, rows, align="l" + "r" * (len(header) - 1))


def levers_table(report: Mapping[str, Any]) -> str:
    """The levers benchmark (``benchmarks/levers.py``): each arm on the 4 validation images,
    with its difference from the baseline of the same seed."""
    cells = sorted(report["cells"].values(), key=lambda c: (c["arm"] != "baseline", c["arm"],
                                                           c["seed"]))
    base = {c["seed"]: c for c in cells if c["arm"] == "baseline"}
    rows: list[list[object]] = []
    for c in cells:
        b = base.get(c["seed"])
        rows.append([c["arm"], c["seed"], c["steps"], f"{c['train_minutes']:.2f}",
                     f"{c['step_time_ratio']:.2f}", f"{c['val_auc_roc']:.4f}",
                     f"{c['val_auc_roc'] - b['val_auc_roc']:+.4f}" if b else "",
                     f"{c['val_f1']:.4f}", f"{c['val_f1'] - b['val_f1']:+.4f}" if b else "",
                     f"{c['eval_seconds_per_image']:.2f}", c["code"]])
    return markdown_table(["arm", "seed", "steps", "train min", "step-time ratio", "val AUC",
                           "ΔAUC", "val F1", "ΔF1", "eval s/image", "code"], rows,
                          align="lrrrrrrrrrl")


# -- chapter 6's tables ---------------------------------------------------------------------------
#: Other projects' published DRIVE figures, quoted and not reproduced (chapter 6 names their
#: sources): ``(who, conditions, values)``.
QUOTED_RESULTS: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("seed project", "as reported by the seed project", {"auc_roc": 0.939, "f1": 0.628}),
    ("orobix/retina-unet", "README: 48x48 patches, GPU", {"auc_roc": 0.9790, "f1": 0.8161}),
)


def quality_benchmarks(root: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The quality benchmarks (``benchmarks/results/drive_quality*.json``) measured on real
    DRIVE, by file stem; a file made on the synthetic stand-in is left out."""
    return {name: b for name, b in benchmark_results("drive_quality", root).items()
            if not b["data"]["synthetic"]}


def available_observer_metrics(examples: Sequence[Example]) -> SegmentationMetrics | None:
    """:func:`observer_metrics` when every image has a second observer, else ``None``."""
    if all(e.second_observer is not None for e in examples):
        return observer_metrics(examples)
    return None


def headline_row(run: RunResult, synthetic: bool = False) -> list[str]:
    """The comparison-table row of the book's run: profile, steps, training minutes and
    threshold, marked when the data was the synthetic stand-in."""
    test = run.metrics["test"]
    return run_row("this book's run", f"profile {run.config.profile}, {run.steps} steps, "
                   f"{run.train_minutes:.1f} min training, threshold {test['threshold']:.3f}"
                   + (" (SYNTHETIC data)" if synthetic else ""), test["pooled"])


def quality_benchmark_row(name: str, result: Mapping[str, Any]) -> list[str]:
    """The comparison-table row of one quality benchmark file (``name``: its stem): date, wall
    minutes, steps, width and threshold; marked when older code made it."""
    older = result_status(result).startswith("**older")
    images = result["config"].get("threshold_images", "validation").replace("_", " ")
    return run_row(
        f"quality benchmark ({name}.json" + (", older code)" if older else ")"),
        f"{result['date'][:10]}: {result['wall_minutes']:.1f} min wall, {result['steps']} "
        f"steps, base width {result['config']['base_channels']}, threshold "
        f"{result['threshold']:.3f} (F1 optimum on {images} images)",
        result["test_pooled"])


def drive_comparison_rows(
    run: RunResult, benches: Mapping[str, Mapping[str, Any]],
    observer: SegmentationMetrics | None = None, synthetic: bool = False,
) -> list[list[str]]:
    """The rows of chapter 6's comparison table, measured first: the book's run, each quality
    benchmark, the second observer (no AUC: a binary annotation has no ranking), then the
    quoted figures of :data:`QUOTED_RESULTS`."""
    rows = [headline_row(run, synthetic)]
    rows += [quality_benchmark_row(name, b) for name, b in benches.items()]
    if observer is not None:
        rows.append(run_row("second observer", "2nd_manual vs 1st_manual",
                            {**observer.as_dict(), "auc_roc": None}))
    rows += [quoted_row(who, conditions, **values) for who, conditions, values in QUOTED_RESULTS]
    return rows


def drive_comparison_table(
    run: RunResult, benches: Mapping[str, Mapping[str, Any]],
    observer: SegmentationMetrics | None = None, synthetic: bool = False,
) -> str:
    """Markdown: :func:`drive_comparison_rows` under :data:`TABLE_HEADER`."""
    return markdown_table(list(TABLE_HEADER),
                          drive_comparison_rows(run, benches, observer, synthetic),
                          align="llrrrrr")


def quality_benchmark_note(name: str, result: Mapping[str, Any]) -> str:
    """Markdown: one quality benchmark's date, status, command, its bar (from the file) and
    whether it passed, then its curve: test metrics of the weights saved at each validation
    pass against minutes of training."""
    bar = result["bar"]
    curve = markdown_table(
        ["step", "minutes of training", "test AUC-ROC", "test F1"],
        [[c["step"], f"{c['minutes']:.1f}", f"{c['auc_roc']:.4f}", f"{c['f1']:.4f}"]
         for c in result["curve"]])
    return (f"**{name}.json** (measured {result['date']}; {result_status(result)}): "
            f"`{result['command']}`; passed the bar (AUC >= {bar['auc_roc']}, F1 >= "
            f"{bar['f1']}, <= {bar['minutes']:g} min wall): "
            f"**{'yes' if result['passed'] else 'no'}**\n\n" + curve)


def time_to_quality_markdown(report: Mapping[str, Any]) -> str:
    """Markdown: the time-to-quality benchmark (``benchmarks/drive_quality.py --seeds 3``) as
    written: status, date, code, machine, profile and command, the per-seed table
    (:func:`quality_seed_table`) and whether the bars were met."""
    bar = report["bar"]
    overrides = f" with `{' '.join(report['overrides'])}`" if report["overrides"] else ""
    return (f"Status: {result_status(report)}.\n\n"
            f"**Measured {report['date'][:10]}** with code `{report['code']}` on "
            f"{report['machine']['cpu']} ({report['machine']['threads']} threads), profile "
            f"`{report['profile']}`{overrides}: `{report['command']}`\n\n"
            + quality_seed_table(report)
            + f"\n\nBars (mean AUC-ROC >= {bar['auc_roc']}, mean F1 >= {bar['f1']:.3f}, each "
            f"seed within {bar['normalised_minutes']:g} normalised minutes): "
            f"**{'met' if report['passed'] else 'not met'}**.")


def time_to_quality_curve(report: Mapping[str, Any]) -> str:
    """Markdown: the first seed's curve of the time-to-quality benchmark (each saved weights'
    test quality at the threshold they choose on the training-set images), or '' if none."""
    if not report["curve"]:
        return ""
    return (f"Seed {report['seeds'][0]['seed']}: test quality of the weights saved during "
            "training, each at the threshold its own weights choose on the training-set "
            "images.\n\n" + markdown_table(
                ["step", "minutes of training", "threshold", "test AUC-ROC", "test F1"],
                [[c["step"], f"{c['minutes']:.2f}", f"{c['threshold']:.3f}",
                  f"{c['auc_roc']:.4f}", f"{c['f1']:.4f}"] for c in report["curve"]]))


def levers_markdown(report: Mapping[str, Any]) -> str:
    """Markdown: the levers benchmark's rule, baseline steps and status over
    :func:`levers_table`."""
    return (f"Levers ({report['rule']}; baseline {report['steps']} steps; "
            f"`benchmarks/levers.py`; status: {result_status(report)}):\n\n"
            + levers_table(report))


def per_image_table(test_metrics: Mapping[str, Any]) -> str:
    """Markdown: each test image's AUC-ROC, F1, Se, Sp and accuracy (a run's
    ``metrics["test"]``, with its ``images`` and ``per_image``)."""
    keys = ("auc_roc", "f1", "sensitivity", "specificity", "accuracy")
    return markdown_table(
        ["image", "AUC-ROC", "F1", "Se", "Sp", "Acc"],
        [[name, *(f"{m[k]:.4f}" for k in keys)]
         for name, m in zip(test_metrics["images"], test_metrics["per_image"], strict=True)],
        align="lrrrrr")
