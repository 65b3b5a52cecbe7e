"""Chapter 9's table (unet_book.paper_table): the paper's choices, ours, the measured effect."""

from __future__ import annotations

import json

import pytest
from scipy import stats

from unet_book.evidence import study_view
from unet_book.paper_table import (
    HEADER,
    MEASURED_STUDIES,
    THRESHOLD_EFFECT,
    paper_vs_implementation_rows,
    paper_vs_implementation_table,
    parameter_counts,
    study_effect,
    throughput_effect,
)
from unet_train.config import TrainConfig
from unet_train.provenance import dataset_fingerprint


def _cell(arm: str, seed: int, auc: float, fp: dict) -> dict:
    return {"arm": arm, "seed": seed, "steps": 1000, "minutes": 2.0, "normalised_minutes": 4.0,
            "fingerprint": fp, "machine": {"cpu": "test CPU"}, "date": "2026-12-02 10:00 UTC",
            "metrics": {"auc_roc": auc, "f1": auc - 0.15},
            "curve": [{"step": 1000, "val_auc_roc": auc}]}


def _views(folder, fp: dict) -> dict:
    """``drive_recipe`` with three seeds of ``no_batch_norm`` (0.950, 0.951, 0.952) and of
    ``cpu`` (0.960, 0.962, 0.964); the other measured studies have no cells."""
    cells = [_cell("no_batch_norm", s, 0.95 + 0.001 * s, fp) for s in range(3)]
    cells += [_cell("cpu", s, 0.96 + 0.002 * s, fp) for s in range(3)]
    (folder / "drive_recipe.json").write_text(json.dumps({"cells": cells}))
    return {name: study_view(name, folder) for name in MEASURED_STUDIES}


@pytest.fixture
def views(tmp_path, monkeypatch, small_data_root):
    monkeypatch.setenv("UNET_DATA_DIR", str(small_data_root))
    return _views(tmp_path, dataset_fingerprint("drive"))


def test_a_measured_comparison_reads_as_claim_verdict_and_interval(views) -> None:
    half = stats.t.ppf(0.975, 2) * 0.001 / 3 ** 0.5  # differences -0.010, -0.011, -0.012
    assert study_effect(views, "drive_recipe", "no_batch_norm", "cpu") == (
        "claim C5: **contradicted**; paper minus ours -0.0110 AUC-ROC over 3 paired samples, "
        f"95 % interval [{-0.011 - half:+.4f}, {-0.011 + half:+.4f}] (`drive_recipe`)")


def test_a_comparison_without_cells_says_not_yet_measured(views) -> None:
    assert study_effect(views, "drive_recipe", "sgd", "cpu") == (
        "not yet measured (cells of `drive_recipe` missing)")
    assert study_effect(views, "isbi_cv", "w0_10", "w0_0", "v_rand") == (
        "not yet measured (cells of `isbi_cv` missing)")


def test_cells_of_older_code_are_marked(tmp_path, monkeypatch, small_data_root) -> None:
    monkeypatch.setenv("UNET_DATA_DIR", str(small_data_root))
    old = {**dataset_fingerprint("drive"), "code": "0123456789ab"}
    views = _views(tmp_path, old)
    effect = study_effect(views, "drive_recipe", "no_batch_norm", "cpu")
    assert effect.startswith("claim C5: **contradicted**")
    assert effect.endswith("(`drive_recipe`) (older code)")


def _formula(cin: int, cout: int, base: int, depth: int) -> int:
    """Parameters of a U-Net without normalisation, counted by hand: double 3x3 convolutions
    with biases down and up, 2x2 up-convolutions, a 1x1 output convolution."""
    def double(a: int, b: int) -> int:
        return 9 * a * b + b + 9 * b * b + b

    widths = [base * 2 ** k for k in range(depth + 1)]
    n = sum(double(a, b) for a, b in zip([cin, *widths[:-1]], widths, strict=True))
    for w in reversed(widths[1:]):
        n += 4 * w * (w // 2) + w // 2 + double(w, w // 2)
    return n + base * cout + cout


def test_parameter_counts_are_the_paper_network_and_ours() -> None:
    paper = TrainConfig.from_profile("paper")
    plain = TrainConfig.from_profile("cpu", batch_norm=False)
    paper_n, plain_n = parameter_counts(paper, plain)
    assert paper_n == _formula(1, 2, 64, 4) == 31_030_658  # Fig. 1's network
    assert plain_n == _formula(3, 1, plain.base_channels, plain.depth)
    _, with_bn = parameter_counts(paper, TrainConfig.from_profile("cpu", batch_norm=True))
    assert with_bn > plain_n  # batch norm's scales and shifts


def test_throughput_effect_quotes_bf16_channels_last_at_both_widths() -> None:
    assert throughput_effect(None) == (
        "benchmarks/results/throughput.json not produced in this checkout")
    rows = [{"width": w, "padding": "same", "phase": "training", "mode": mode, "speedup_vs_fp32": s}
            for w, mode, s in [(64, "bf16+channels_last", 2.5), (16, "bf16+channels_last", 3.0),
                               (64, "bf16", 9.9), (16, "bf16", 9.9)]]
    assert throughput_effect({"speedups_vs_fp32": rows, "date": "2026-12-01T10:00"}) == (
        "training throughput x2.50 at width 64, x3.00 at width 16 "
        "(benchmarks/results/throughput.json, measured 2026-12-01)")
    assert throughput_effect({"speedups_vs_fp32": rows}).endswith(
        "measured at an earlier commit)")


def test_the_rows_give_each_choice_the_paper_ours_and_the_effect(views) -> None:
    cfg, paper = TrainConfig.from_profile("cpu"), TrainConfig.from_profile("paper")
    rows = paper_vs_implementation_rows(cfg, paper, views)
    assert all(len(row) == len(HEADER) for row in rows)
    by_choice = {row[0]: row for row in rows}
    assert len(by_choice) == len(rows) == 16
    assert by_choice["normalisation"][3].startswith("claim C5: **contradicted**")
    assert by_choice["augmentation (Sec. 3.1)"][3] == (
        "not yet measured (cells of `drive_augmentation` missing)")
    paper_n, ours_n = parameter_counts(paper, cfg)
    assert by_choice["width (Fig. 1)"][1:3] == [
        f"64 channels at the first level ({paper_n:,} parameters)",
        f"{cfg.base_channels} channels ({ours_n:,} parameters)"]
    assert by_choice["precision"][3].startswith("benchmarks/results/throughput.json not")
    assert by_choice["threshold"][2:] == ["maximises F1 on the training set images",
                                          THRESHOLD_EFFECT]
    fixed = TrainConfig.from_profile("cpu", tune_threshold=False, threshold=0.4)
    assert paper_vs_implementation_rows(fixed, paper, views)[-1][2] == "0.4"


def test_the_table_is_markdown_with_a_row_per_choice(views) -> None:
    cfg, paper = TrainConfig.from_profile("cpu"), TrainConfig.from_profile("paper")
    lines = paper_vs_implementation_table(cfg, paper, views).splitlines()
    assert lines[0] == "| " + " | ".join(HEADER) + " |"
    assert lines[1] == "|:---|:---|:---|:---|"
    assert len(lines) == 2 + 16
    assert lines[2].startswith("| padding (Sec. 2) | unpadded 3x3 convolutions")
