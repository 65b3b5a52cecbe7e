"""Notebook parameters, load-or-train and time-budgeted runs (smoke-sized, synthetic data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unet_book.experiments import (
    HEADLINE_CELL,
    HEADLINE_SETTINGS,
    ISBI_CELL,
    ISBI_SETTINGS,
    ChapterParameters,
    collect_parameters,
    default_profile,
    load_or_train,
    notebook_config,
    study_cell_settings,
    train_for_minutes,
)
from unet_book.studies import get_study
from unet_train.config import TrainConfig
from unet_train.identity import budgeted_run_name
from unet_train.runs import finished_run


@pytest.fixture
def data_root(small_data_root) -> Path:
    return small_data_root


@pytest.fixture
def env(monkeypatch, tmp_path, data_root) -> Path:
    monkeypatch.setenv("UNET_DATA_DIR", str(data_root))
    monkeypatch.setenv("UNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("UNET_PROFILE", raising=False)
    return tmp_path / "runs"


def smoke(**overrides) -> TrainConfig:
    base = {"patch_size": 32, "eval_tile": 32, "steps": 4, "eval_every": 2}
    return TrainConfig.from_profile("smoke", **(base | overrides))


QUIET = {"progress": False, "log": lambda _: None}


# -- parameters ---------------------------------------------------------------------------------
def test_collect_parameters_keeps_fields_extras_and_run_name():
    before = {"np", "plt"}
    namespace = {"np": 1, "plt": 2, "profile": "smoke", "lr": 0.1, "run_name": "x",
                 "ablation_minutes": 2.0, "_hidden": 3}
    got = collect_parameters(namespace, before, extra=["ablation_minutes"])
    assert got == {"profile": "smoke", "lr": 0.1, "run_name": "x", "ablation_minutes": 2.0}


@pytest.mark.parametrize("name, hint", [("profil", "'profile'"), ("learning_rat", None),
                                        ("bse_channels", "'base_channels'")])
def test_misspelt_parameter_is_an_error_listing_the_valid_ones(name, hint):
    with pytest.raises(ValueError) as info:
        collect_parameters({"profile": None, name: 1}, set(), extra=["ablation_minutes"])
    message = str(info.value)
    assert repr(name) in message
    assert "valid parameters:" in message and "patch_size" in message
    assert "ablation_minutes" in message and "run_name" in message
    if hint:
        assert f"did you mean {hint}" in message


def test_default_profile_reads_the_environment(monkeypatch):
    monkeypatch.delenv("UNET_PROFILE", raising=False)
    assert default_profile() == "cpu"
    monkeypatch.setenv("UNET_PROFILE", "smoke")
    assert default_profile() == "smoke"
    monkeypatch.setenv("UNET_PROFILE", "fast")
    with pytest.raises(ValueError, match="UNET_PROFILE.*paper.*cpu.*smoke"):
        default_profile()


def test_notebook_config_none_keeps_profile_values(monkeypatch):
    monkeypatch.delenv("UNET_PROFILE", raising=False)
    cfg = notebook_config({"profile": None, "steps": None, "lr": 0.01, "run_name": "r",
                           "ablation_minutes": 3})
    assert cfg.profile == "cpu" and cfg.steps == TrainConfig.from_profile(
        "cpu").steps and cfg.lr == 0.01


def test_notebook_config_parameters_override_fixed_settings():
    cfg = notebook_config({"profile": "cpu", "steps": 10}, **ISBI_SETTINGS)
    assert cfg.dataset == "isbi2012" and cfg.loss == "weighted_ce" and cfg.steps == 10
    assert cfg.val_images == 2 and cfg.w0 == 10.0


@pytest.mark.parametrize(("cell", "settings", "params"), [
    (HEADLINE_CELL, HEADLINE_SETTINGS, {"profile": None, "dataset": "drive", "steps": None}),
    (ISBI_CELL, ISBI_SETTINGS, {"profile": None, "w0": 10.0, "steps": None}),
])
def test_the_books_live_runs_are_study_cells(monkeypatch, cell, settings, params):
    """Chapters 5 and 7 train, with their default parameters, exactly the config of a cell of
    a committed study (seed 0), so the chapters can set the run beside the cell's record."""
    monkeypatch.delenv("UNET_PROFILE", raising=False)
    study, arm = cell
    cfg = notebook_config(params, **settings)
    assert cfg == get_study(study).config(arm, seed=0)
    assert cfg.key() == get_study(study).config(arm, seed=0).key()
    assert cfg.tta == "none" and cfg.steps == get_study(study).steps
    assert notebook_config({**params, "seed": 2}, **settings) == get_study(study).config(
        arm, seed=2)


def test_study_cell_settings_hold_only_what_differs_from_the_profile():
    assert HEADLINE_SETTINGS == {"steps": get_study("drive_outside_fov_2x").steps,
                                 "eval_every": get_study("drive_outside_fov_2x").steps // 5,
                                 "tta": "none", "outside_fov": "background"}
    assert study_cell_settings("drive_recipe", "no_batch_norm")["batch_norm"] is False
    with pytest.raises(ValueError, match="its arms: cpu"):
        study_cell_settings("drive_recipe", "bn")


def test_smoke_profile_keeps_its_own_sizes():
    cfg = notebook_config({"profile": "smoke"}, **ISBI_SETTINGS)
    assert cfg.steps == TrainConfig.from_profile("smoke").steps
    assert cfg.dataset == "isbi2012"


# -- load or train ------------------------------------------------------------------------------
def test_load_or_train_trains_once_then_loads(env):
    cfg = smoke()
    first = load_or_train(cfg, **QUIET)
    model_file = Path(first.run_dir) / "model.pt"
    mtime = model_file.stat().st_mtime_ns
    messages: list[str] = []
    second = load_or_train(cfg, progress=False, log=messages.append)
    assert second.run_dir == first.run_dir and Path(first.run_dir).parent == env
    assert model_file.stat().st_mtime_ns == mtime  # not trained again
    assert messages and messages[0].startswith("loaded finished run")
    assert second.metrics == json.loads((Path(first.run_dir) / "metrics.json").read_text())
    assert [h["step"] for h in second.history] == [2.0, 4.0]
    assert second.config.key() == cfg.key()


def test_a_named_run_with_another_config_is_refused(env):
    load_or_train(smoke(), "mine", **QUIET)
    with pytest.raises(ValueError, match="mine.*another config.*seed"):
        load_or_train(smoke(seed=5), "mine", **QUIET)


def test_unfinished_run_is_not_taken_for_finished(env):
    assert finished_run(env / "nothing-here", smoke()) is None


# -- time budget --------------------------------------------------------------------------------
def test_budgeted_run_name_ignores_the_budget_fields():
    a = budgeted_run_name(smoke(steps=5), 2.0)
    b = budgeted_run_name(smoke(steps=900, eval_every=7, time_budget_min=1.0), 2.0)
    assert a == b and a.endswith("-2min")
    assert budgeted_run_name(smoke(), 3.0) != a
    assert budgeted_run_name(smoke(lr=0.1), 2.0) != a


def test_train_for_minutes_calibrates_then_loads(env):
    cfg = smoke(steps=1000)
    result = train_for_minutes(cfg, 0.02, evaluations=2, **QUIET)
    assert result.run_dir.name == budgeted_run_name(cfg, 0.02)
    assert 1 <= result.steps and result.config.time_budget_min == pytest.approx(0.024)
    assert result.config.eval_every == max(1, result.config.steps // 2)
    again = train_for_minutes(cfg, 0.02, evaluations=2, **QUIET)
    assert again.steps == result.steps and again.config.steps == result.config.steps


def test_train_for_minutes_without_budget_uses_fixed_steps(env):
    result = train_for_minutes(smoke(), None, **QUIET)
    assert result.steps == 4


@pytest.mark.parametrize("minutes", [0, -1.0])
def test_train_for_minutes_rejects_a_non_positive_budget(env, minutes):
    with pytest.raises(ValueError, match="minutes must be > 0"):
        train_for_minutes(smoke(), minutes, **QUIET)


def test_chapter_parameters_check_every_name_defined_after_them() -> None:
    namespace: dict[str, object] = {"json": object(), "chapter_started": 1.0}
    namespace["parameters"] = parameters = ChapterParameters(namespace)
    namespace.update(profile="smoke", seed=3, run_name="r")  # the parameters cell
    assert parameters.values == {"profile": "smoke", "seed": 3, "run_name": "r"}
    cfg = parameters.config(steps=5)
    assert (cfg.profile, cfg.seed) == ("smoke", 3)
    namespace["profil"] = "paper"  # papermill's injected cell with a misspelt name
    with pytest.raises(ValueError, match="unknown parameter.*'profil'.*did you mean 'profile'"):
        parameters.config()
