"""The evidence studies (unet_book.studies) and their runner (benchmarks/study.py)."""

from __future__ import annotations

import collections
import hashlib
import json
import math
import re
import shutil
import signal

import numpy as np
import pytest

import unet_train.train as train_module
from unet_book import evidence, scoring, studies
from unet_book.studies import (
    STUDIES,
    Arm,
    Comparison,
    Study,
    arm_summary,
    current_cells,
    equal_time_steps,
    paired_differences,
    verdict,
    verdicts,
)
from unet_core.data.splits import load_data
from unet_train import evaluation
from unet_train.config import TrainConfig
from unet_train.runs import ENVIRONMENT, RunResult


# -- the verdict rule ---------------------------------------------------------------------------
def test_three_seeds_need_t_4_30() -> None:
    """With 3 seeds the half-width is t(0.975, 2) = 4.303 standard errors."""
    diffs = {0: 0.010, 1: 0.012, 2: 0.014}
    result, mean, sd, low, high = verdict(diffs)
    assert result == "supported" and mean == pytest.approx(0.012)
    assert sd == pytest.approx(0.002)
    assert high - mean == pytest.approx(4.3027 * 0.002 / math.sqrt(3), rel=1e-4)
    assert verdict({s: -d for s, d in diffs.items()})[0] == "contradicted"
    assert verdict({0: 0.01, 1: -0.002, 2: 0.004})[0] == "undecided"


def test_lower_is_better_metrics_flip_the_side() -> None:
    assert verdict({0: -0.02, 1: -0.03, 2: -0.025}, direction=-1)[0] == "supported"
    assert verdict({0: -0.02, 1: -0.03, 2: -0.025}, direction=1)[0] == "contradicted"


@pytest.mark.parametrize("diffs", [{}, {0: 0.1}, {0: 0.1, 1: 0.2}])
def test_fewer_than_three_seeds_are_incomplete(diffs) -> None:  # noqa: ANN001
    assert verdict(diffs)[0] == "incomplete"


def _cell(arm: str, seed: int, value: float, code: str = "c", key: str = "k") -> dict:
    return {"arm": arm, "seed": seed, "metrics": {"auc_roc": value},
            "fingerprint": {"code": code, "key": key}}


def test_pairs_are_by_seed_and_other_code_is_history() -> None:
    cells = [_cell("a", 0, 0.9), _cell("b", 0, 0.8), _cell("a", 1, 0.91), _cell("b", 2, 0.7),
             _cell("a", 2, 0.95, code="old")]
    now = current_cells({"cells": cells}, "c", "k")
    assert len(now) == 4
    assert paired_differences(now, "a", "b", "auc_roc") == {0: pytest.approx(0.1)}
    assert arm_summary(now, "a", "auc_roc") == (2, pytest.approx(0.905), pytest.approx(
        math.sqrt(0.00005)))
    study = Study("t", "t", "drive", {"profile": "smoke"}, (Arm("a", "A"), Arm("b", "B")),
                  (Comparison("C0", "a vs b", "a", "b"),), steps=4)
    (v,) = verdicts(study, now)
    assert v.verdict == "incomplete" and v.n == 1 and v.seeds == (0,)


def test_no_verdict_until_every_planned_cell_has_run() -> None:
    """The stopping rule: a clear interval from a partly run study is still incomplete; a
    failed cell counts as run (it is never paired); a cross-validation plans seed x fold."""
    study = Study("t", "t", "drive", {"profile": "smoke"}, (Arm("a", "A"), Arm("b", "B")),
                  (Comparison("C0", "a vs b", "a", "b"),), steps=4, seeds=(0, 1, 2, 3))
    cells = [_cell(arm, s, v + 0.01 * s) for s in range(3) for arm, v in (("a", .9), ("b", .8))]
    assert verdict(paired_differences(cells, "a", "b", "auc_roc"))[0] == "supported"
    (v,) = verdicts(study, cells)
    assert (v.verdict, v.n, v.run, v.planned) == ("incomplete", 3, 3, 4)
    assert evidence.samples_text(v) == "3 (interim: 3 of 4 run)"
    failed = [*cells, _cell("a", 3, 0.5), {**_cell("b", 3, 0.9), "failed": "diverged"}]
    (v,) = verdicts(study, failed)
    assert (v.verdict, v.n, v.run, v.planned) == ("supported", 3, 4, 4)
    assert evidence.samples_text(v) == "3"
    cv = Study("cv", "cv", "isbi2012", {"profile": "smoke"}, study.arms, study.comparisons,
               steps=4, seeds=(0, 1), folds=3)
    assert studies.planned_samples(cv) == {(s, f) for s in (0, 1) for f in range(3)}
    (v,) = verdicts(cv, [])
    assert (v.verdict, evidence.samples_text(v)) == ("incomplete", "0 (of 6 planned)")
    folded = [{**_cell(arm, s, v + 0.01 * s + 0.002 * f), "fold": f}
              for s in (0, 1) for f in range(3) for arm, v in (("a", .9), ("b", .8))]
    (v,) = verdicts(cv, folded[:-1])
    assert (v.verdict, v.n, v.run, v.planned) == ("incomplete", 5, 5, 6)
    (v,) = verdicts(cv, folded)
    assert (v.verdict, v.n) == ("supported", 6)


def test_equal_time_steps_follow_the_stored_ratio() -> None:
    study = STUDIES["drive_recipe"]
    arm = study.arm("valid_padding_equal_time")
    steps = equal_time_steps(study, arm, {"cpu": 0.15, "valid_padding_equal_time": 0.6})
    assert steps == round(study.steps * 0.15 / 0.6)
    assert equal_time_steps(study, study.arm("cpu"), {}) == study.steps
    with pytest.raises(ValueError, match="no stored step time for valid_padding_equal_time"):
        equal_time_steps(study, arm, {"cpu": 0.15})


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_declared_cell_is_a_valid_config(name) -> None:  # noqa: ANN001
    study = STUDIES[name]
    names = [a.name for a in study.arms]
    assert len(set(names)) == len(names)
    for comp in study.comparisons:
        assert {comp.paper, comp.other} <= set(names)
    assert study.metric in studies.DIRECTION and len(study.seeds) * max(1, study.folds) >= 3
    for arm in study.arms:
        cfg = study.config(arm, seed=1, fold=study.fold_ids[-1])
        assert cfg.seed == 1 and cfg.dataset == study.dataset
        assert (cfg.cv_folds, cfg.cv_fold) == ((study.folds, study.folds - 1) if study.folds
                                               else (0, 0))
        assert cfg.train_start == (1 if arm.image_per_seed else 0)
        assert cfg.steps == study.steps and cfg.eval_every == study.steps // study.evaluations
        for field, value in arm.changes.items():
            if field != "profile":
                assert getattr(cfg, field) == value
    with pytest.raises(ValueError, match="has no arm 'nope'; its arms: "):
        study.arm("nope")


# -- the runner -----------------------------------------------------------------------------------
@pytest.fixture
def smoke_study(monkeypatch, tmp_path, small_data_root) -> Study:
    monkeypatch.setenv("UNET_DATA_DIR", str(small_data_root))
    monkeypatch.setenv("UNET_RUNS_DIR", str(tmp_path / "runs"))
    study = Study(
        "smoke_test", "smoke", "drive",
        {"profile": "smoke", "patch_size": 32, "eval_tile": 32},
        (Arm("plain", "plain"), Arm("noaug", "no augmentation", {"augmentation": "none"}),
         Arm("same_time", "equal time", {"base_channels": 8}, equal_time_with="plain")),
        (Comparison("C0", "plain vs noaug", "plain", "noaug"),), steps=4, seeds=(0, 1, 2),
        evaluations=2)
    monkeypatch.setitem(STUDIES, "smoke_test", study)
    return study


def test_runner_trains_missing_cells_records_them_and_resumes(benchmark_script, smoke_study,
                                                              tmp_path, monkeypatch,
                                                              capsys) -> None:
    runner = benchmark_script("study")
    # the machine's rate as load comes and goes; a measurement beyond one per cell trained
    # (none before the first, none when there is nothing to do) would exhaust it
    rates = iter([200.0, 300.0])
    monkeypatch.setattr(runner, "matmul_gflops", lambda dtype: next(rates))
    out_dir = tmp_path / "results"
    args = ["smoke_test", "--results-dir", str(out_dir)]
    assert runner.main([*args, "--seeds", "0", "--arms", "plain,same_time"]) == 0
    results = json.loads((out_dir / "smoke_test.json").read_text())
    cells = results["cells"]
    assert [(c["arm"], c["seed"]) for c in cells] == [("plain", 0), ("same_time", 0)]
    seconds = results["step_times"]["seconds"]
    assert set(seconds) == {"plain", "same_time"}
    assert cells[1]["steps"] == max(1, round(4 * seconds["plain"] / seconds["same_time"]))
    # measured again for each cell, after its training
    assert [c["machine"]["matmul_gflops"] for c in cells] == [200.0, 300.0]
    assert [c["normalised_minutes"] for c in cells] == [
        pytest.approx(c["minutes"] * g / 400, abs=1e-4)
        for c, g in zip(cells, (200, 300), strict=True)]
    for c in cells:
        assert c["fingerprint"]["data"]["source"] == "real" and c["fingerprint"]["code"]
        assert c["machine"]["matmul_gflops"] > 0 and c["date"] and c["minutes"] > 0
        assert 0 <= c["metrics"]["auc_roc"] <= 1 and 0 <= c["metrics"]["outside_fov_positive"] <= 1
        every = max(1, c["steps"] // 2)  # two validation passes per cell
        passes = list(range(every, c["steps"] + 1, every))
        assert [h["step"] for h in c["curve"]] == passes + [c["steps"]] * (passes[-1] != c["steps"])
    assert results["definition"]["arms"]["same_time"]["equal_time_with"] == "plain"
    capsys.readouterr()
    assert runner.main([*args, "--cells"]) == 0
    table = capsys.readouterr().out
    assert "2 of 9 cells done" in table and "missing" in table
    starts = [[m.start() for m in re.finditer(r"\S+", line)][1:]
              for line in table.splitlines()[1:]]
    assert all(row == starts[0] for row in starts)  # each status under its cell's heading
    before = (out_dir / "smoke_test.json").read_text()
    assert runner.main([*args, "--seeds", "0", "--arms", "plain"]) == 0  # nothing to do
    assert json.loads((out_dir / "smoke_test.json").read_text())["cells"] == json.loads(
        before)["cells"]


def test_a_signal_during_a_cells_final_evaluation_stops_the_study_after_recording_it(
        benchmark_script, smoke_study, tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C after a cell's last step (while it is evaluated) is not lost: the cell is
    recorded, the next is not started, and the exit code is 128 + SIGINT."""
    real = train_module.choose_threshold
    sent: list[int] = []

    def interrupted_once(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if not sent:
            sent.append(1)
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "choose_threshold", interrupted_once)
    runner = benchmark_script("study")
    out_dir = tmp_path / "results"
    code = runner.main(["smoke_test", "--results-dir", str(out_dir), "--seeds", "0",
                        "--arms", "plain,noaug"])
    assert code == 128 + signal.SIGINT and sent == [1]
    cells = json.loads((out_dir / "smoke_test.json").read_text())["cells"]
    assert [(c["arm"], c["seed"], c["steps"]) for c in cells] == [("plain", 0, 4)]
    assert 0 <= cells[0]["metrics"]["auc_roc"] <= 1
    err = capsys.readouterr().err
    assert "SIGINT received: stopped after this cell, which is recorded" in err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_runner_refuses_unknown_names(benchmark_script, smoke_study, tmp_path, capsys) -> None:
    runner = benchmark_script("study")
    assert runner.main(["nosuch", "--cells"]) == 2
    assert "unknown study 'nosuch'; the studies: " in capsys.readouterr().err
    assert runner.main(["smoke_test", "--arms", "plain,bogus"]) == 2
    assert "has no arm 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize(("one", "two", "expected"), [
    ("supported", "supported", "supported"),
    ("supported", "undecided", "budget-dependent"),
    ("supported", "incomplete", "supported"),
    ("incomplete", "contradicted", "contradicted"),
    ("incomplete", "incomplete", "incomplete"),
])
def test_budget_verdict(one, two, expected) -> None:  # noqa: ANN001
    assert studies.budget_verdict(one, two) == expected


def test_doubled_studies_keep_their_arms_at_twice_the_steps() -> None:
    for name, double in STUDIES.items():
        if double.doubles is None:
            continue
        base = STUDIES[double.doubles]
        assert name == f"{base.name}_2x" and double.steps == 2 * base.steps
        assert {a.name for a in double.arms} <= {a.name for a in base.arms}
        assert double.comparisons and all(c in base.comparisons for c in double.comparisons)


def test_the_valid_padding_arm_feeds_a_valid_tile_with_the_cpu_output() -> None:
    """The valid arm's 316-pixel input is a valid size whose output (132) covers the cpu
    arm's 128-pixel patch, with less than one pooling step to spare."""
    from unet_core.model import UNet
    study = STUDIES["drive_recipe"]
    base, valid = study.config("cpu", 0), study.config("valid_padding", 0)
    net = UNet(3, 1, valid.base_channels, valid.depth, "valid")
    assert net.is_valid_size(valid.patch_size) and net.is_valid_size(valid.eval_tile)
    assert base.patch_size <= net.output_size(valid.patch_size) < base.patch_size + 2 ** base.depth


def test_a_cross_validated_study_needs_a_fold_and_pairs_by_seed_and_fold() -> None:
    study = STUDIES["isbi_cv"]
    with pytest.raises(ValueError, match="has 5 folds; got fold=None"):
        study.config("w0_10", seed=0)
    with pytest.raises(ValueError, match="has no folds; got fold=1"):
        STUDIES["drive_augmentation"].config("cpu", seed=0, fold=1)
    cells = [{"arm": a, "seed": s, "fold": f, "metrics": {"v_rand": v}}
             for a, s, f, v in [("w0_10", 0, 0, 0.9), ("w0_0", 0, 0, 0.8), ("w0_10", 0, 1, 0.7),
                                ("w0_0", 0, 1, 0.75), ("w0_10", 1, 0, 0.5)]]
    diffs = studies.paired_differences(cells, "w0_10", "w0_0", "v_rand")
    assert diffs == pytest.approx({(0, 0): 0.1, (0, 1): -0.05})


def _curve(losses, aucs):  # noqa: ANN001, ANN202
    return [{"step": 100 * (i + 1), "loss": x, "val_auc_roc": a}
            for i, (x, a) in enumerate(zip(losses, aucs, strict=True))]


@pytest.mark.parametrize(("cell", "reason"), [
    ({"curve": _curve([0.9, 0.5, 0.3], [0.8, 0.9, 0.95])}, None),
    ({"error": "non-finite loss at step 7"}, "training stopped: non-finite loss at step 7"),
    ({"curve": _curve([0.918, 1.022, 1.056], [0.77, 0.5, 0.5])}, "the training loss rose"),
    ({"curve": _curve([0.9, float("nan")], [0.8, 0.8])}, "non-finite"),
    ({"curve": _curve([0.9, 0.5], [0.8, 0.55])}, "validation AUC 0.550 < 0.6"),
])
def test_the_failure_rule(cell, reason) -> None:  # noqa: ANN001
    found = studies.failure(cell)
    assert (found is None) if reason is None else (reason in found)


def test_failed_cells_are_never_paired_nor_averaged() -> None:
    cells = [{"arm": "a", "seed": s, "metrics": {"auc_roc": 0.9 + s / 100}} for s in range(3)]
    cells += [{"arm": "b", "seed": s, "metrics": {"auc_roc": 0.8}} for s in range(3)]
    cells[1]["failed"] = "the training loss rose"
    assert sorted(studies.paired_differences(cells, "a", "b", "auc_roc")) == [0, 2]
    assert studies.arm_summary(cells, "a", "auc_roc")[0] == 2


def test_the_old_c4_collapse_is_the_one_failed_cell_of_the_older_studies() -> None:
    failed = [(name, c["arm"], c["seed"]) for name in ("drive_recipe", "drive_recipe_2x",
                                                       "isbi_recipe", "isbi_recipe_2x")
              for c in studies.load_results(name)["cells"] if studies.failure(c)]
    assert failed == [("isbi_recipe", "paper_w16_equal_time", 1)]


@pytest.fixture
def smoke_cv_study(monkeypatch, tmp_path, small_data_root) -> Study:
    monkeypatch.setenv("UNET_DATA_DIR", str(small_data_root))
    monkeypatch.setenv("UNET_RUNS_DIR", str(tmp_path / "runs"))
    study = Study(
        "smoke_cv", "smoke cross-validation", "isbi2012",
        {"profile": "smoke", "dataset": "isbi2012", "patch_size": 32, "eval_tile": 64,
         "isbi_gap": 1, "loss": "weighted_ce", "tune_threshold": False},
        (Arm("w0_10", "w0 = 10", {"w0": 10.0}),
         Arm("control", "uniform", {"w0": 0.0, "class_reweight_w0": 10.0})),
        (Comparison("C2", "w0 vs control", "w0_10", "control"),), steps=3, seeds=(0,),
        folds=3, metric="v_rand", evaluations=1)
    monkeypatch.setitem(STUDIES, "smoke_cv", study)
    return study


def test_cross_validated_cells_are_scored_with_the_challenges_instruments_and_rescored(
        benchmark_script, smoke_cv_study, tmp_path, capsys) -> None:
    runner = benchmark_script("study")
    out_dir = tmp_path / "results"
    args = ["smoke_cv", "--results-dir", str(out_dir)]
    assert runner.main([*args, "--folds", "1"]) == 0
    cells = json.loads((out_dir / "smoke_cv.json").read_text())["cells"]
    assert [(c["arm"], c["seed"], c["fold"]) for c in cells] == [("w0_10", 0, 1),
                                                                  ("control", 0, 1)]
    for c in cells:
        m = c["metrics"]
        assert 0 <= m["v_rand"] <= 1 and 0 <= m["v_info"] <= 1 and m["warping_error"] >= 0
        assert m["v_rand_best_on_test"] >= m["v_rand"] - 1e-12  # chosen on the test slices
        assert m["threshold_chosen_on_validation"] in [round(0.1 * k, 1) for k in range(11)]
        assert c["config"]["cv_folds"] == 3 and c["config"]["cv_fold"] == 1
        assert c["run"].endswith(f"-f1-{c['fingerprint']['key']}")
        stored = sorted((tmp_path / "runs" / c["run"] / "probabilities").rglob("*_prob.png"))
        assert [p.parent.name for p in stored].count("test") == 3  # fold 1 of 10 slices
    assert "class_reweighting" in cells[1] and cells[1]["class_reweighting"]["factor"] > 1
    assert "class_reweighting" not in cells[0]
    capsys.readouterr()
    assert runner.main([*args, "--cells"]) == 0
    assert "2 of 6 cells done" in capsys.readouterr().out
    assert runner.main([*args, "--rescore"]) == 0
    again = json.loads((out_dir / "smoke_cv.json").read_text())["cells"]
    assert [c["metrics"] for c in again] == [c["metrics"] for c in cells]
    assert "2 cells rescored, 0 without a run folder" in capsys.readouterr().out
    assert runner.main(["smoke_cv", "--folds", "x"]) == 2
    assert "--folds expects comma-separated integers, got 'x'" in capsys.readouterr().err
    assert runner.main(["smoke_cv", "--folds", "7", "--cells"]) == 2
    assert "--folds: [7] not among the folds 0..2" in capsys.readouterr().err


def test_a_cell_of_a_changed_recipe_is_history() -> None:
    study = STUDIES["isbi_cv"]
    cfg = study.config("paper_w16_equal_time", 0, 500, 0)
    cell = {"arm": "paper_w16_equal_time", "seed": 0, "fold": 0, "steps": 500,
            "config_key": cfg.key(), "fingerprint": {"code": "c", "key": "k"}}
    assert studies.as_defined(study, cell)
    older = {**cell, "config_key": study.config("paper_w16_equal_time", 0, 500, 0).key()[:-1]}
    assert not studies.as_defined(study, older)
    assert not studies.as_defined(study, {**cell, "arm": "gone"})
    results = {"cells": [cell, older]}
    assert studies.current_cells(results, "c", "k", study) == [cell]
    assert len(studies.current_cells(results, "c", "k")) == 2


def test_a_cell_predicts_each_image_once_and_scores_as_its_model_would(
        benchmark_script, smoke_cv_study, tmp_path, monkeypatch) -> None:
    """The runner scores a cell from the maps its training's final evaluation computed (on
    the CPU: the maps ``model.pt`` gives), not from a second prediction; scoring the cell
    again from ``model.pt`` alone gives the same stored maps and the same metrics."""
    runner = benchmark_script("study")
    real = evaluation.predict_probability
    calls: dict[str, collections.Counter[str]] = {"training": collections.Counter(),
                                                  "scoring": collections.Counter()}

    def spy(counter: collections.Counter[str]):  # noqa: ANN202
        def predict(model, image, cfg, placement=None):  # noqa: ANN001, ANN202
            counter[hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()] += 1
            return real(model, image, cfg, placement)
        return predict

    monkeypatch.setattr(evaluation, "predict_probability", spy(calls["training"]))
    monkeypatch.setattr(train_module, "predict_probability", spy(calls["training"]))
    monkeypatch.setattr(scoring, "predict_probability", spy(calls["scoring"]))
    out_dir = tmp_path / "results"
    assert runner.main(["smoke_cv", "--results-dir", str(out_dir), "--folds", "1",
                        "--arms", "w0_10"]) == 0
    (cell,) = json.loads((out_dir / "smoke_cv.json").read_text())["cells"]
    cfg = TrainConfig.from_dict(cell["config"])
    test = load_data(cfg).test
    assert len(test) == 3
    assert [calls["training"][hashlib.sha1(e.image.tobytes()).hexdigest()] for e in test] == [
        1, 1, 1]
    assert not calls["scoring"]  # the scoring predicted nothing: it wrote the run's maps
    stored = tmp_path / "runs" / cell["run"] / scoring.PROBABILITIES
    first = {p.relative_to(stored): p.read_bytes() for p in sorted(stored.rglob("*_prob.png"))}
    assert sorted({p.parent.name for p in first}) == ["test", "val"]
    shutil.rmtree(stored)
    again = dict(cell)
    runner.score(again, cfg)  # from model.pt alone
    assert sum(calls["scoring"].values()) == len(first)
    assert {p.relative_to(stored): p.read_bytes()
            for p in sorted(stored.rglob("*_prob.png"))} == first
    assert again["metrics"] == cell["metrics"]


def test_only_maps_evaluated_on_the_cpu_stand_for_the_models(tmp_path) -> None:
    maps = {"val": [], "test": [np.zeros((4, 4), np.float32)]}
    result = RunResult(tmp_path, TrainConfig(), 1, 0.1, {}, [], True, probabilities=maps)
    for device, expected in (("cpu", maps), ("cuda", None), ("mps", None)):
        (tmp_path / ENVIRONMENT).write_text(json.dumps({"device": device}))
        assert scoring.evaluated_probabilities(result) is expected
    assert scoring.evaluated_probabilities(
        RunResult(tmp_path, TrainConfig(), 1, 0.1, {}, [], True)) is None
