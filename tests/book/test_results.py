"""Figure data and figures of the results chapters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from unet_book.results import (
    COLOURS,
    PROBS_FILE,
    benchmark_result,
    benchmark_results,
    describe_threshold,
    error_overlay,
    observer_metrics,
    plot_history,
    plot_predictions,
    plot_roc_pr,
    plot_segments,
    quoted_row,
    rank_images,
    run_probabilities,
    run_row,
    threshold_table,
)
from unet_core.data.splits import Example, load_data


def _example(seed: int, size: int = 24, observer: bool = True) -> Example:
    rng = np.random.default_rng(seed)
    target = rng.random((size, size)) < 0.3
    fov = np.zeros((size, size), bool)
    fov[2:-2, 2:-2] = True
    second = target ^ (rng.random((size, size)) < 0.1)
    return Example(f"im{seed}", rng.random((size, size, 3)).astype(np.float32), target, fov,
                   second if observer else None)


def test_error_overlay_colours_each_outcome():
    prob = np.array([[0.9, 0.9], [0.1, 0.1]])
    target = np.array([[True, False], [True, False]])
    fov = np.array([[True, True], [True, False]])
    out = error_overlay(prob, target, fov, threshold=0.5)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert tuple(out[0, 0]) == COLOURS["tp"] and tuple(out[0, 1]) == COLOURS["fp"]
    assert tuple(out[1, 0]) == COLOURS["fn"] and tuple(out[1, 1]) == COLOURS["outside"]


def test_error_overlay_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"prob \(2, 2\) and target \(3, 3\)"):
        error_overlay(np.zeros((2, 2)), np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="fov"):
        error_overlay(np.zeros((2, 2)), np.zeros((2, 2), bool), np.ones((3, 2), bool))


def test_observer_metrics_match_sklearn_inside_the_fov():
    examples = [_example(1), _example(2)]
    got = observer_metrics(examples)
    y = np.concatenate([e.target[e.fov] for e in examples])
    p = np.concatenate([e.second_observer[e.fov] for e in examples])
    assert got.f1 == pytest.approx(f1_score(y, p))
    assert got.sensitivity == pytest.approx(recall_score(y, p))
    assert got.specificity == pytest.approx(recall_score(~y, ~p))


def test_observer_metrics_name_the_image_without_observer():
    with pytest.raises(ValueError, match="im3"):
        observer_metrics([_example(1), _example(3, observer=False)])


def test_rank_images_best_first():
    ranked = rank_images(["a", "b", "c"], [{"f1": 0.5}, {"f1": 0.9}, {"f1": 0.7}])
    assert [n for n, _ in ranked] == ["b", "c", "a"] and ranked[0][1] == 0.9
    with pytest.raises(ValueError, match="2 names for 1"):
        rank_images(["a", "b"], [{"f1": 1.0}])


def test_rows_say_where_numbers_come_from():
    row = run_row("run", "cond", {"auc_roc": 0.98, "f1": 0.8, "sensitivity": 0.7,
                                  "specificity": 0.99, "accuracy": 0.96})
    assert row[0] == "measured: run" and row[2:4] == ["0.9800", "0.8000"]
    q = quoted_row("them", "their GPU", auc_roc=0.979, f1=0.8161)
    assert q[0] == "quoted: them" and q[2:4] == ["0.9790", "0.8161"] and q[4] == "n/a"
    assert run_row("obs", "", {"auc_roc": None, "f1": 0.79})[2] == "n/a"


def test_plot_history_draws_the_values():
    history = [{"step": 1, "minutes": 0.5, "loss": 1.0, "val_auc_roc": 0.9, "val_f1": 0.7},
               {"step": 2, "minutes": 1.0, "loss": 0.5, "val_auc_roc": 0.95, "val_f1": 0.75}]
    fig = plot_history(history)
    loss_ax, val_ax = fig.axes
    assert list(loss_ax.lines[0].get_ydata()) == [1.0, 0.5]
    assert [list(line.get_ydata()) for line in val_ax.lines] == [[0.9, 0.95], [0.7, 0.75]]
    with pytest.raises(ValueError, match="history is empty"):
        plot_history([])


def test_plot_roc_pr_has_a_curve_per_run_and_the_observer():
    examples = [_example(1), _example(2)]
    probs = [np.clip(e.target + np.random.default_rng(0).normal(0, 0.3, e.target.shape), 0, 1)
             for e in examples]
    fig = plot_roc_pr({"run": (probs, [e.target for e in examples], [e.fov for e in examples])},
                      observer_metrics(examples))
    roc, pr = fig.axes[:2]
    assert [line.get_label() for line in roc.lines] == ["run", "2nd observer"]
    obs = observer_metrics(examples)
    assert roc.lines[1].get_xdata()[0] == pytest.approx(1 - obs.specificity)
    assert pr.lines[1].get_xdata()[0] == pytest.approx(obs.sensitivity)


def test_plot_predictions_shows_four_panels_per_image():
    examples = [_example(1), _example(2)]
    probs = [e.target.astype(np.float32) for e in examples]
    fig = plot_predictions(examples, probs, 0.5, crop=(slice(0, 10), slice(0, 12)))
    assert len(fig.axes) == 8
    assert fig.axes[3].images[0].get_array().shape == (10, 12, 3)
    with pytest.raises(ValueError, match="2 examples for 1"):
        plot_predictions(examples, probs[:1], 0.5)


def test_plot_segments_counts_cells():
    target = np.zeros((20, 20), bool)
    target[:, 10] = True  # one membrane: two cells
    e = Example("s", np.zeros((20, 20, 1), np.float32), target, None)
    fig = plot_segments([e], [np.zeros((20, 20), np.float32)])  # no membrane: one cell
    titles = [ax.get_title() for ax in fig.axes]
    assert "true cells (2)" in titles[0] and "predicted cells (1)" in titles[1]


def _choice(images="training_set"):
    per = [{"name": f"{i}_training", "threshold": t, "f1": f}
           for i, (t, f) in enumerate([(0.2, 0.80), (0.8, 0.84), (0.5, 0.82)])]
    return {"tuned": True, "images": images, "threshold": 0.45,
            "validation": {"threshold": 0.8, "f1": 0.84, "n_images": 1, "per_image": per[1:2]},
            "training_set": {"threshold": 0.45, "f1": 0.83, "n_images": 3, "per_image": per}}


def test_describe_threshold_names_the_images():
    assert describe_threshold(_choice(), 0.45) == (
        "0.450 (the F1 optimum on all 3 training-set images (trained on or validation), "
        "not on the test set)")
    assert "the 1 validation image," in describe_threshold(_choice("validation"), 0.8)
    assert describe_threshold({"tuned": False}, 0.5) == "0.500 (fixed)"
    assert describe_threshold(None, 0.5) == "0.500"


def test_threshold_table_has_a_row_per_candidate_set():
    lines = threshold_table(_choice()).splitlines()
    assert len(lines) == 4  # header, rule, two sets
    assert lines[2].split("|")[1:5] == [" validation ", " 1 ", " 0.800 ", " 0.8400 "]
    row = lines[3].split("|")
    assert row[1].strip() == "training set (used)"
    assert row[5].strip() == "0.200 to 0.800 (median 0.500)"
    assert row[6].strip() == "0.8200"
    assert threshold_table({"tuned": False}) == "No tuned threshold on record for this run."


def test_benchmark_result_reads_the_results_file(tmp_path):
    assert benchmark_result("drive_quality", tmp_path) is None
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.json").write_text(json.dumps({"a": 1}))
    assert benchmark_result("x", tmp_path) == {"a": 1}
    (tmp_path / "benchmarks" / "results" / "x_w24.json").write_text(json.dumps({"b": 2}))
    (tmp_path / "benchmarks" / "results" / "y.json").write_text(json.dumps({"c": 3}))
    assert benchmark_results("x", tmp_path) == {"x": {"a": 1}, "x_w24": {"b": 2}}


def test_run_probabilities_are_cached(smoke_drive_run):
    run = smoke_drive_run
    test = load_data(run.config).test
    probs = run_probabilities(run, test)
    assert [p.shape for p in probs] == [e.target.shape for e in test]
    assert (Path(run.run_dir) / "curves.png").stat().st_size > 1000  # the run's figure
    cache = Path(run.run_dir) / PROBS_FILE
    assert cache.exists()
    mtime = cache.stat().st_mtime_ns
    again = run_probabilities(run, test)
    assert cache.stat().st_mtime_ns == mtime
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(probs, again, strict=True))


def _seed_row(seed: int, auc: float, f1: float) -> dict:
    test = {"auc_roc": auc, "f1": f1, "iou": f1 / (2 - f1), "sensitivity": 0.8,
            "specificity": 0.97, "accuracy": 0.95}
    return {"seed": seed, "test": test, "threshold": 0.45, "steps": 3000, "wall_minutes": 7.0,
            "normalised_minutes": 14.0, "matmul_gflops": {"used": 800.0}}


def test_quality_seed_table_lists_each_seed_then_mean_and_sd():
    from unet_book.results import quality_seed_table

    report = {"seeds": [_seed_row(0, 0.982, 0.830), _seed_row(1, 0.984, 0.834)],
              "summary": {k: {"mean": m, "sd": sd} for k, m, sd in [
                  ("auc_roc", 0.983, 0.0014), ("f1", 0.832, 0.0028), ("iou", 0.71, 0.0),
                  ("sensitivity", 0.8, 0.0), ("specificity", 0.97, 0.0),
                  ("accuracy", 0.95, 0.0), ("threshold", 0.45, 0.0), ("steps", 3000, 0.0),
                  ("wall_minutes", 7.0, 0.0), ("normalised_minutes", 14.0, 0.0)]}}
    lines = quality_seed_table(report).splitlines()
    assert len(lines) == 2 + 2 + 1
    assert lines[2].startswith("| 0 | 0.9820 | 0.8300 |")
    assert lines[-1].startswith("| mean ± sd | 0.9830 ± 0.0014 | 0.8320 ± 0.0028 |")


def test_levers_table_gives_each_arm_its_difference_from_the_same_seeds_baseline():
    from unet_book.results import levers_table

    def cell(arm, auc, f1):
        return {"arm": arm, "seed": 0, "steps": 1500, "train_minutes": 3.0,
                "step_time_ratio": 1.0, "val_auc_roc": auc, "val_f1": f1,
                "eval_seconds_per_image": 1.0, "code": "abc"}

    table = levers_table({"cells": {"g/seed0": cell("green", 0.9830, 0.8200),
                                    "b/seed0": cell("baseline", 0.9817, 0.8184)}})
    rows = table.splitlines()[2:]
    assert rows[0].startswith("| baseline |")  # the baseline first
    assert "| 0.9830 | +0.0013 | 0.8200 | +0.0016 |" in rows[1]
