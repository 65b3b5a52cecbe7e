"""Figure data and figures of the results chapters."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from unet_book.results import (
    COLOURS,
    PROBS_FILE,
    TABLE_HEADER,
    available_observer_metrics,
    benchmark_result,
    benchmark_results,
    describe_threshold,
    drive_comparison_rows,
    drive_comparison_table,
    error_overlay,
    headline_row,
    levers_markdown,
    observer_metrics,
    per_image_table,
    plot_history,
    plot_predictions,
    plot_roc_pr,
    plot_segments,
    quality_benchmark_note,
    quality_benchmark_row,
    quality_benchmarks,
    quoted_row,
    rank_images,
    run_probabilities,
    run_row,
    threshold_table,
    time_to_quality_curve,
    time_to_quality_markdown,
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


# -- chapter 6's tables ---------------------------------------------------------------------------
@pytest.fixture
def drive_fingerprint(monkeypatch, small_data_root) -> dict:
    """The current fingerprint of the tiny DRIVE (what ``result_status`` compares with)."""
    from unet_train.provenance import dataset_fingerprint

    monkeypatch.setenv("UNET_DATA_DIR", str(small_data_root))
    return dataset_fingerprint("drive")


def _pooled(auc: float | None, f1: float) -> dict:
    return {"auc_roc": auc, "f1": f1, "sensitivity": 0.8, "specificity": 0.97, "accuracy": 0.955}


def _quality(fingerprint: dict | None = None, synthetic: bool = False, passed: bool = True,
             threshold_images: str | None = "training_set") -> dict:
    """A ``drive_quality*.json`` as ``benchmarks/drive_quality.py`` writes it."""
    config = {"base_channels": 16}
    if threshold_images:
        config["threshold_images"] = threshold_images
    return {"command": "python benchmarks/drive_quality.py", "date": "2026-12-02T03:26:29+00:00",
            "data": {"synthetic": synthetic}, "config": config, "wall_minutes": 28.46,
            "steps": 7913, "threshold": 0.44, "test_pooled": _pooled(0.9819, 0.8317),
            "bar": {"auc_roc": 0.981, "f1": 0.825, "minutes": 30.0}, "passed": passed,
            "curve": [{"step": 662, "minutes": 2.27, "auc_roc": 0.96372, "f1": 0.79290},
                      {"step": 1324, "minutes": 4.31, "auc_roc": 0.97376, "f1": 0.81105}],
            **({"fingerprint": fingerprint} if fingerprint else {})}


def _run(synthetic_profile: str = "cpu") -> SimpleNamespace:
    names = ["01_test", "02_test"]
    per_image = [_pooled(0.98, 0.82), _pooled(0.97, 0.79)]
    return SimpleNamespace(config=SimpleNamespace(profile=synthetic_profile), steps=2000,
                           train_minutes=10.55,
                           metrics={"test": {"threshold": 0.4567, "pooled": _pooled(0.98123,
                                                                                    0.8234),
                                             "images": names, "per_image": per_image}})


def test_quality_benchmarks_leave_out_the_synthetic_ones(tmp_path) -> None:
    folder = tmp_path / "benchmarks" / "results"
    folder.mkdir(parents=True)
    (folder / "drive_quality.json").write_text(json.dumps(_quality()))
    (folder / "drive_quality_syn.json").write_text(json.dumps(_quality(synthetic=True)))
    (folder / "levers.json").write_text(json.dumps({"cells": {}}))
    assert list(quality_benchmarks(tmp_path)) == ["drive_quality"]


def test_observer_metrics_only_when_every_image_has_a_second_observer() -> None:
    both = [_example(0), _example(1)]
    assert available_observer_metrics(both) == observer_metrics(both)
    assert available_observer_metrics([_example(0), _example(1, observer=False)]) is None


def test_the_headline_row_names_profile_steps_minutes_and_threshold() -> None:
    row = headline_row(_run())
    assert row == ["measured: this book's run",
                   "profile cpu, 2000 steps, 10.6 min training, threshold 0.457",
                   "0.9812", "0.8234", "0.8000", "0.9700", "0.9550"]
    assert headline_row(_run(), synthetic=True)[1].endswith("threshold 0.457 (SYNTHETIC data)")


def test_a_quality_benchmark_row_says_which_code_made_it(drive_fingerprint) -> None:
    current = quality_benchmark_row("drive_quality", _quality(drive_fingerprint))
    assert current[0] == "measured: quality benchmark (drive_quality.json)"
    assert current[1] == ("2026-12-02: 28.5 min wall, 7913 steps, base width 16, threshold "
                          "0.440 (F1 optimum on training set images)")
    assert current[2:4] == ["0.9819", "0.8317"]
    older = quality_benchmark_row("drive_quality_w24", _quality(threshold_images=None))
    assert older[0] == "measured: quality benchmark (drive_quality_w24.json, older code)"
    assert older[1].endswith("(F1 optimum on validation images)")


def test_the_comparison_rows_are_measured_then_quoted(drive_fingerprint) -> None:
    observer = observer_metrics([_example(0), _example(1)])
    rows = drive_comparison_rows(_run(), {"drive_quality": _quality(drive_fingerprint)},
                                 observer)
    assert [r[0] for r in rows] == [
        "measured: this book's run", "measured: quality benchmark (drive_quality.json)",
        "measured: second observer", "quoted: seed project", "quoted: orobix/retina-unet"]
    assert rows[2][2] == "n/a" and rows[2][3] == f"{observer.f1:.4f}"  # no AUC for a mask
    assert rows[3][2:] == ["0.9390", "0.6280", "n/a", "n/a", "n/a"]
    assert rows[4][1:4] == ["README: 48x48 patches, GPU", "0.9790", "0.8161"]
    without = drive_comparison_rows(_run(), {}, None)
    assert [r[0] for r in without] == ["measured: this book's run", "quoted: seed project",
                                       "quoted: orobix/retina-unet"]


def test_the_comparison_table_is_markdown_under_the_header(drive_fingerprint) -> None:
    lines = drive_comparison_table(_run(), {"drive_quality": _quality(drive_fingerprint)},
                                   synthetic=True).splitlines()
    assert lines[0] == "| " + " | ".join(TABLE_HEADER) + " |"
    assert lines[1] == "|:---|:---|---:|---:|---:|---:|---:|"
    assert len(lines) == 2 + 4
    assert "(SYNTHETIC data)" in lines[2]


def test_a_quality_benchmark_note_reads_its_bar_from_the_file(drive_fingerprint) -> None:
    note = quality_benchmark_note("drive_quality", _quality(drive_fingerprint))
    assert note.startswith("**drive_quality.json** (measured 2026-12-02T03:26:29+00:00; "
                           "current code (`")
    assert ("`python benchmarks/drive_quality.py`; passed the bar (AUC >= 0.981, F1 >= 0.825, "
            "<= 30 min wall): **yes**") in note
    table = note.split("\n\n")[1].splitlines()
    assert table[0] == "| step | minutes of training | test AUC-ROC | test F1 |"
    assert table[2:] == ["| 662 | 2.3 | 0.9637 | 0.7929 |", "| 1,324 | 4.3 | 0.9738 | 0.8111 |"]
    failed = {**_quality(drive_fingerprint, passed=False), "bar": {"auc_roc": 0.99, "f1": 0.9,
                                                                   "minutes": 15.0}}
    assert "(AUC >= 0.99, F1 >= 0.9, <= 15 min wall): **no**" in quality_benchmark_note(
        "x", failed)


def _time_to_quality(passed: bool = False, overrides: tuple[str, ...] = ()) -> dict:
    summary = {k: {"mean": m, "sd": 0.001} for k, m in [
        ("auc_roc", 0.98), ("f1", 0.827), ("iou", 0.70), ("sensitivity", 0.83),
        ("specificity", 0.97), ("accuracy", 0.955), ("threshold", 0.42), ("steps", 2800),
        ("wall_minutes", 8.4), ("normalised_minutes", 15.0)]}
    return {"command": "python benchmarks/drive_quality.py --seeds 3",
            "date": "2026-12-02T10:00:00+00:00", "code": "c041566c81", "profile": "cpu",
            "machine": {"cpu": "AMD EPYC", "threads": 2}, "overrides": list(overrides),
            "bar": {"auc_roc": 0.982, "f1": 0.83, "normalised_minutes": 15.0},
            "seeds": [_seed_row(0, 0.980, 0.826), _seed_row(1, 0.981, 0.828)],
            "summary": summary, "passed": passed,
            "curve": [{"step": 367, "minutes": 1.0, "threshold": 0.30999, "auc_roc": 0.95141,
                       "f1": 0.75608}]}


def test_the_time_to_quality_markdown_says_what_was_measured_and_the_bars(
        drive_fingerprint) -> None:
    text = time_to_quality_markdown(_time_to_quality())
    assert text.startswith("Status: **older result**: made by commit `c041566c81`")
    assert ("**Measured 2026-12-02** with code `c041566c81` on AMD EPYC (2 threads), profile "
            "`cpu`: `python benchmarks/drive_quality.py --seeds 3`") in text
    assert "| 0 | 0.9800 | 0.8260 |" in text and "| mean ± sd | 0.9800 ± 0.0010 |" in text
    assert text.endswith("Bars (mean AUC-ROC >= 0.982, mean F1 >= 0.830, each seed within 15 "
                         "normalised minutes): **not met**.")
    met = time_to_quality_markdown(_time_to_quality(passed=True, overrides=("lr=0.01", "ema=1")))
    assert "profile `cpu` with `lr=0.01 ema=1`: `python" in met and met.endswith("**met**.")


def test_the_time_to_quality_curve_is_the_first_seeds(drive_fingerprint) -> None:
    lines = time_to_quality_curve(_time_to_quality()).splitlines()
    assert lines[0].startswith("Seed 0: test quality of the weights saved during training")
    assert lines[-1] == "| 367 | 1.00 | 0.310 | 0.9514 | 0.7561 |"
    assert time_to_quality_curve({**_time_to_quality(), "curve": []}) == ""


def test_the_levers_markdown_puts_rule_steps_and_status_over_the_table(
        drive_fingerprint) -> None:
    cell = {"arm": "baseline", "seed": 0, "steps": 1500, "train_minutes": 3.0,
            "step_time_ratio": 1.0, "val_auc_roc": 0.98, "val_f1": 0.82,
            "eval_seconds_per_image": 1.0, "code": "abc"}
    text = levers_markdown({"rule": "val AUC on 4 images", "steps": 1500,
                            "cells": {"b/seed0": cell}, "fingerprint": drive_fingerprint})
    head, table = text.split("\n\n")
    assert head == ("Levers (val AUC on 4 images; baseline 1500 steps; `benchmarks/levers.py`; "
                    f"status: current code (`{drive_fingerprint['code']}`)):")
    assert table.splitlines()[2].startswith("| baseline | 0 | 1,500 |")


def test_the_per_image_table_has_a_row_per_test_image() -> None:
    lines = per_image_table(_run().metrics["test"]).splitlines()
    assert lines[0] == "| image | AUC-ROC | F1 | Se | Sp | Acc |"
    assert lines[2:] == ["| 01_test | 0.9800 | 0.8200 | 0.8000 | 0.9700 | 0.9550 |",
                         "| 02_test | 0.9700 | 0.7900 | 0.8000 | 0.9700 | 0.9550 |"]
    with pytest.raises(ValueError):
        per_image_table({"images": ["a"], "per_image": []})
