"""Training runs: artifacts, exact resume, divergence, config checks (smoke-sized)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core.config import TrainConfig
from unet_core.data.splits import load_data
from unet_core.evaluation import predict_probability
from unet_core.metrics import best_threshold
from unet_core.runs import load_model
from unet_core.train import TrainingDiverged, train


@pytest.fixture
def data_root(small_data_root) -> Path:
    return small_data_root


def smoke(**overrides) -> TrainConfig:
    base = {"patch_size": 32, "eval_tile": 32, "steps": 6, "eval_every": 3}
    return TrainConfig.from_profile("smoke", **(base | overrides))


def run(cfg: TrainConfig, run_dir: Path, data_root: Path, **kwargs):
    return train(cfg, run_dir, data_root=data_root, progress=False, log=lambda _: None, **kwargs)


def test_run_writes_its_artifacts(tmp_path, data_root):
    result = run(smoke(), tmp_path / "r", data_root)
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.json", "history.csv", "metrics.json", "checkpoint.pt", "model.pt"} <= files
    assert result.steps == 6 and result.stopped_by == "steps"
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    pooled = metrics["test"]["pooled"]
    assert set(pooled) >= {"auc_roc", "auc_pr", "f1", "iou", "accuracy", "sensitivity",
                           "specificity"}
    assert 0.0 <= pooled["auc_roc"] <= 1.0
    assert len(metrics["test"]["per_image"]) == 2
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == smoke().to_dict()
    # Checkpoints hold only tensors and plain types.
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 6 and set(state) >= {"model", "optimizer", "scheduler", "rng"}


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.parametrize("augmentation", ["paper", "albumentations"])
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, data_root, augmentation):
    cfg = smoke(augmentation=augmentation, dropout=0.3)
    run(cfg, tmp_path / "whole", data_root)
    killed = run(cfg, tmp_path / "killed", data_root, stop_after=4)  # dies after step 4
    assert killed.stopped_by == "stop_after"
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["step"] == 3
    resumed = run(cfg, tmp_path / "killed", data_root)
    assert resumed.resumed_from == 3 and resumed.steps == 6
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = list(csv.DictReader((tmp_path / "killed" / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == [3, 6]


def test_different_seed_gives_different_weights(tmp_path, data_root):
    run(smoke(seed=1), tmp_path / "s1", data_root)
    run(smoke(seed=2), tmp_path / "s2", data_root)
    a, b = _weights(tmp_path / "s1"), _weights(tmp_path / "s2")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_different_config(tmp_path, data_root):
    run(smoke(), tmp_path / "r", data_root, stop_after=3)
    with pytest.raises(ValueError, match="lr differ"):
        run(smoke(lr=0.5), tmp_path / "r", data_root)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_root, monkeypatch):
    import unet_core.train as train_module

    real = train_module.make_loss

    def poisoned(name, **kwargs):
        loss = real(name, **kwargs)
        calls = {"n": 0}

        def forward(*args, **kw):
            calls["n"] += 1
            value = loss(*args, **kw)
            return value * float("nan") if calls["n"] == 5 else value

        return forward

    monkeypatch.setattr(train_module, "make_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 5.*step 3"):
        run(smoke(), tmp_path / "r", data_root)
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_time_budget_stops_early(tmp_path, data_root):
    result = run(smoke(steps=10_000, time_budget_min=0.002), tmp_path / "r", data_root)
    assert result.stopped_by == "time" and 0 < result.steps < 10_000
    assert (tmp_path / "r" / "model.pt").exists()


def test_tuned_threshold_is_stored_with_the_model(tmp_path, data_root):
    result = run(smoke(tune_threshold=True), tmp_path / "r", data_root)
    _, _, threshold = load_model(tmp_path / "r" / "model.pt")
    assert threshold == result.metrics["test"]["threshold"]
    assert result.metrics["val"]["threshold"] == threshold


@pytest.mark.parametrize("images", ["validation", "training_set"])
def test_threshold_is_the_f1_optimum_of_the_chosen_images(tmp_path, data_root, images):
    result = run(smoke(threshold_images=images), tmp_path / "r", data_root)
    model, cfg, threshold = load_model(tmp_path / "r" / "model.pt")
    data = load_data(cfg, data_root)
    chosen = {"validation": data.val, "training_set": [*data.train, *data.val]}[images]
    probs = [predict_probability(model, e.image, cfg) for e in chosen]
    best = best_threshold(probs, [e.target for e in chosen], [e.fov for e in chosen])
    choice = result.metrics["threshold_choice"]
    assert threshold == pytest.approx(best.threshold) == choice["threshold"]
    assert {k: choice[images][k] for k in ("threshold", "f1", "n_images")} == pytest.approx(
        {"threshold": best.threshold, "f1": best.value, "n_images": len(chosen)})
    per_image = choice[images]["per_image"]
    assert [r["name"] for r in per_image] == [e.name for e in chosen]
    for r, p, e in zip(per_image, probs, chosen, strict=True):
        assert r["threshold"] == pytest.approx(best_threshold(p, e.target, e.fov).threshold)
    # The validation optimum is always on record, so a report can compare the two rules.
    assert choice["validation"]["n_images"] == len(data.val) == 1
    assert (images == "training_set") == ("training_set" in choice)
    assert len(chosen) == {"validation": 1, "training_set": 3}[images]


def test_fixed_threshold_is_kept(tmp_path, data_root):
    result = run(smoke(tune_threshold=False, threshold=0.3), tmp_path / "r", data_root)
    assert result.metrics["threshold_choice"] == {
        "tuned": False, "images": "validation", "threshold": 0.3}
    assert result.metrics["test"]["threshold"] == 0.3


def test_model_file_round_trip(tmp_path, data_root):
    run(smoke(tune_threshold=False), tmp_path / "r", data_root)
    model, cfg, threshold = load_model(tmp_path / "r" / "model.pt")
    assert cfg == smoke(tune_threshold=False) and threshold == pytest.approx(0.5)
    prob = predict_probability(model, np.random.default_rng(0).random((50, 41, 3),
                                                                      dtype=np.float32), cfg)
    assert prob.shape == (50, 41) and prob.min() >= 0 and prob.max() <= 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"padding": "valid", "patch_size": 44, "eval_tile": 52},
        {"loss": "weighted_ce", "augmentation": "paper", "tune_threshold": True},
        {"dataset": "isbi2012", "loss": "weighted_ce", "channels": "gray"},
    ],
    ids=["valid", "weighted_ce", "isbi"],
)
def test_other_settings_train(tmp_path, data_root, overrides):
    result = run(smoke(**overrides), tmp_path / "r", data_root)
    assert result.steps == 6
    assert np.isfinite(result.history[-1]["loss"])
    if overrides.get("dataset") == "isbi2012":
        isbi = result.metrics["test"]["isbi"]
        assert 0 <= isbi["pixel_error"] <= 1 and 0 <= isbi["rand_error"] <= 1
        assert len(result.metrics["test"]["per_image"]) == 5  # held-out slices


def test_bad_patch_size_is_named(tmp_path, data_root):
    with pytest.raises(ValueError, match="patch_size 30 is not valid"):
        run(smoke(patch_size=30), tmp_path / "r", data_root)


def test_snapshots_are_kept_on_request(tmp_path, data_root):
    run(smoke(keep_snapshots=True), tmp_path / "r", data_root)
    snaps = sorted(p.name for p in (tmp_path / "r" / "snapshots").iterdir())
    assert snaps == ["step0000003.pt", "step0000006.pt"]
    state = torch.load(tmp_path / "r" / "snapshots" / snaps[-1], weights_only=True)
    assert torch.equal(state["model"]["head.weight"], _weights(tmp_path / "r")["head.weight"])


def test_weight_maps_balance_the_training_set(data_root):
    from unet_core.data.splits import load_data
    from unet_core.recipe import loss_weight_maps

    cfg = smoke(dataset="isbi2012", loss="weighted_ce", w0=0.0)
    examples = load_data(cfg, data_root).train
    maps = loss_weight_maps(examples, cfg)
    membrane = np.concatenate([e.target.ravel() for e in examples])
    weights = np.concatenate([m.ravel() for m in maps])
    # Set-wide balance: both classes carry the same total weight, the mean weight is 1.
    assert weights[membrane].sum() == pytest.approx(weights[~membrane].sum(), rel=1e-5)
    assert weights.mean() == pytest.approx(1.0, rel=1e-5)
    assert len(np.unique(np.round(weights, 5))) == 2  # one weight per class, every image
