"""unet_book.checks: the chapters' named checks pass on what they should and fail, with a
sentence, on what they should not."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from unet_book.checks import (
    TRAINED_DRIVE_AUC_FLOOR,
    check_config_round_trip,
    check_f1_is_harmonic_mean,
    check_made_by_current_code,
    check_run_finished,
    check_trained_quality,
)
from unet_train.config import TrainConfig
from unet_train.provenance import code_fingerprint
from unet_train.runs import RunResult


def _result(tmp_path: Path, cfg: TrainConfig, **changes) -> RunResult:
    base = RunResult(tmp_path, cfg, cfg.steps, 1.0, {"test": {"pooled": {"auc_roc": 0.98}}},
                     [], False, provenance={"code": code_fingerprint()})
    return replace(base, **changes)


def test_a_finished_run_passes_and_a_short_one_fails(tmp_path) -> None:
    cfg = TrainConfig.from_profile("cpu", steps=10)
    check_run_finished(_result(tmp_path, cfg), cfg)
    check_run_finished(_result(tmp_path, cfg, steps=4, stopped_by="time"), cfg)
    with pytest.raises(AssertionError, match="stopped at step 4 of 10"):
        check_run_finished(_result(tmp_path, cfg, steps=4, stopped_by="stop_after"), cfg)


def test_older_code_is_caught(tmp_path) -> None:
    cfg = TrainConfig.from_profile("cpu")
    check_made_by_current_code(_result(tmp_path, cfg))
    with pytest.raises(AssertionError, match="made by code 000000000000"):
        check_made_by_current_code(_result(tmp_path, cfg, provenance={"code": "0" * 12}))


def test_f1_must_be_the_harmonic_mean() -> None:
    check_f1_is_harmonic_mean({"f1": 0.8, "precision": 0.8, "sensitivity": 0.8})
    with pytest.raises(AssertionError, match="not the harmonic mean"):
        check_f1_is_harmonic_mean({"f1": 0.7, "precision": 0.8, "sensitivity": 0.8})


def test_quality_is_checked_only_for_a_real_trained_drive_model(tmp_path) -> None:
    cpu = TrainConfig.from_profile("cpu")
    low = {"test": {"pooled": {"auc_roc": TRAINED_DRIVE_AUC_FLOOR - 0.1}}}
    with pytest.raises(AssertionError, match="is not above"):
        check_trained_quality(_result(tmp_path, cpu, metrics=low), cpu)
    check_trained_quality(_result(tmp_path, cpu, metrics=low, synthetic=True), cpu)
    smoke = TrainConfig.from_profile("smoke")
    check_trained_quality(_result(tmp_path, smoke, metrics=low), smoke)


def test_the_stored_config_must_read_back(tmp_path) -> None:
    cfg = TrainConfig.from_profile("smoke")
    (tmp_path / "config.json").write_text(json.dumps(cfg.to_dict()))
    check_config_round_trip(tmp_path, cfg)
    (tmp_path / "config.json").write_text(json.dumps({**cfg.to_dict(), "lr": 0.5}))
    with pytest.raises(AssertionError, match="reads as config"):
        check_config_round_trip(tmp_path, cfg)
