"""The training loop (unet_train.train): steps, validation rows, exact resume, divergence, the
time budget (smoke-sized). The run folder's files are tested in test_runs.py, the metrics and
threshold in test_evaluation.py, the model / optimiser / sampler in test_recipe.py, the splits
in test_splits.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import unet_train.recipe as recipe_module
import unet_train.train as train_module
from unet_core.data.splits import load_data
from unet_train.config import TrainConfig
from unet_train.evaluation import evaluate
from unet_train.faults import TrainingDiverged
from unet_train.recipe import build_model, build_optimizer, build_scheduler
from unet_train.runs import load_model
from unet_train.train import train


@pytest.fixture
def data_root(small_data_root) -> Path:
    return small_data_root


def smoke(**overrides) -> TrainConfig:
    base = {"patch_size": 32, "eval_tile": 32, "steps": 6, "eval_every": 3}
    return TrainConfig.from_profile("smoke", **(base | overrides))


def run(cfg: TrainConfig, run_dir: Path, data_root: Path, **kwargs):
    return train(cfg, run_dir, data_root=data_root, progress=False, log=lambda _: None, **kwargs)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def _spy_losses(monkeypatch) -> list[float]:
    """Record the loss of every training step."""
    losses: list[float] = []
    real = train_module.train_step

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        loss = out[0] if isinstance(out, tuple) else out  # a StepResult or the loss
        losses.append(loss.item())
        return out

    monkeypatch.setattr(train_module, "train_step", spy)
    return losses


def _schedule(cfg: TrainConfig) -> list[float]:
    """The learning rate after each of ``cfg.steps`` steps, from a schedule of its own."""
    opt = build_optimizer(cfg, build_model(cfg, 3))
    sched = build_scheduler(cfg, opt)
    lrs = []
    for _ in range(cfg.steps):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_history_rows_are_the_validation_passes(tmp_path, data_root, monkeypatch):
    """One row per ``eval_every`` steps: the mean training loss since the last row, the
    learning rate, and the validation metrics of the weights at that step."""
    losses = _spy_losses(monkeypatch)
    cfg = smoke(keep_snapshots=True)
    result = run(cfg, tmp_path / "r", data_root)
    assert result.steps == 6 and result.stopped_by == "steps" and result.resumed_from is None
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert [r["step"] for r in result.history] == [3, 6]
    lrs = _schedule(cfg)
    data = load_data(cfg, data_root)
    snapshots = sorted((tmp_path / "r" / "snapshots").iterdir())
    assert [p.name for p in snapshots] == ["step0000003.pt", "step0000006.pt"]
    for row, chunk, snap in zip(result.history, (losses[:3], losses[3:]), snapshots,
                                strict=True):
        step = int(row["step"])
        assert row["loss"] == pytest.approx(np.mean(chunk), rel=1e-12)
        assert row["lr"] == pytest.approx(lrs[step - 1], rel=1e-12)
        state = torch.load(snap, weights_only=True)
        assert state["step"] == step and 0 < state["minutes"] <= result.train_minutes
        model = build_model(cfg, data.in_channels)
        model.load_state_dict(state["model"])
        val = evaluate(model.eval(), data.val, cfg, cfg.threshold)["pooled"]
        assert row["val_auc_roc"] == pytest.approx(val["auc_roc"], abs=1e-9)
        assert row["val_f1"] == pytest.approx(val["f1"], abs=1e-9)
    # The last snapshot holds the final weights.
    last = torch.load(snapshots[-1], weights_only=True)["model"]
    assert all(torch.equal(v, _weights(tmp_path / "r")[k]) for k, v in last.items())
    # Steps were taken: the weights moved away from their initialisation.
    torch.manual_seed(cfg.seed)
    init = build_model(cfg, 3).state_dict()
    assert not torch.equal(init["head.weight"], last["head.weight"])


@pytest.mark.parametrize("eval_every, steps", [(0, [5]), (2, [2, 4, 5]), (4, [4, 5])])
def test_validation_every_eval_every_steps_and_at_the_end(tmp_path, data_root, eval_every,
                                                           steps):
    result = run(smoke(steps=5, eval_every=eval_every), tmp_path / "r", data_root)
    assert [int(r["step"]) for r in result.history] == steps
    with (tmp_path / "r" / "history.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == steps
    assert result.steps == 5


@pytest.mark.parametrize("augmentation", ["paper", "albumentations"])
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path, data_root, augmentation):
    cfg = smoke(augmentation=augmentation, dropout=0.3)
    whole = run(cfg, tmp_path / "whole", data_root)
    killed = run(cfg, tmp_path / "killed", data_root, stop_after=4)  # dies after step 4
    assert killed.stopped_by == "stop_after" and killed.steps == 4 and killed.metrics == {}
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["step"] == 3
    # Killed: no final evaluation, no model file.
    assert not (tmp_path / "killed" / "model.pt").exists()
    assert not (tmp_path / "killed" / "metrics.json").exists()
    resumed = run(cfg, tmp_path / "killed", data_root)
    assert resumed.resumed_from == 3 and resumed.steps == 6
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = list(csv.DictReader((tmp_path / "killed" / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == [3, 6]
    # The same losses and validation metrics as the uninterrupted run, row by row.
    for mine, theirs in zip(resumed.history, whole.history, strict=True):
        assert {k: v for k, v in mine.items() if k != "minutes"} == {
            k: v for k, v in theirs.items() if k != "minutes"}
    assert resumed.metrics["test"] == whole.metrics["test"]


def test_different_seed_gives_different_weights(tmp_path, data_root):
    run(smoke(seed=1), tmp_path / "s1", data_root)
    run(smoke(seed=2), tmp_path / "s2", data_root)
    run(smoke(seed=1), tmp_path / "s1again", data_root)
    a, b, c = (_weights(tmp_path / n) for n in ("s1", "s2", "s1again"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)  # same seed: the same weights


def test_resume_refuses_a_different_config(tmp_path, data_root):
    run(smoke(), tmp_path / "r", data_root, stop_after=3)
    with pytest.raises(ValueError, match="lr differ"):
        run(smoke(lr=0.5), tmp_path / "r", data_root)
    # Without resume, the run starts over with the new config.
    result = run(smoke(lr=0.5), tmp_path / "r", data_root, resume=False)
    assert result.resumed_from is None and result.steps == 6
    assert json.loads((tmp_path / "r" / "config.json").read_text())["lr"] == 0.5


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_root, monkeypatch):
    real = recipe_module.make_loss

    def poisoned(name, **kwargs):
        loss = real(name, **kwargs)
        calls = {"n": 0}

        def forward(*args, **kw):
            calls["n"] += 1
            value = loss(*args, **kw)
            return value * float("nan") if calls["n"] == 5 else value

        return forward

    monkeypatch.setattr(recipe_module, "make_loss", poisoned)  # build() makes the loss
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 5.*step 3"):
        run(smoke(), tmp_path / "r", data_root)
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "r" / "model.pt").exists()


def test_time_budget_stops_early(tmp_path, data_root):
    result = run(smoke(steps=10_000, time_budget_min=0.002), tmp_path / "r", data_root)
    assert result.stopped_by == "time" and 0 < result.steps < 10_000
    assert result.train_minutes >= 0.002
    # The final state is checkpointed and evaluated, even between validation passes.
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert state["step"] == result.steps
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["steps"] == result.steps and metrics["stopped_by"] == "time"
    assert (tmp_path / "r" / "model.pt").exists()


def test_fixed_threshold_is_kept(tmp_path, data_root):
    result = run(smoke(tune_threshold=False, threshold=0.3), tmp_path / "r", data_root)
    assert result.metrics["threshold_choice"] == {
        "tuned": False, "images": "validation", "threshold": 0.3}
    assert result.metrics["test"]["threshold"] == 0.3
    assert load_model(tmp_path / "r" / "model.pt")[2] == 0.3


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
    """Each setting trains, and its metrics are those of the final model on its test images."""
    result = run(smoke(**overrides), tmp_path / "r", data_root)
    assert result.steps == 6 and [int(r["step"]) for r in result.history] == [3, 6]
    assert all(np.isfinite(r["loss"]) for r in result.history)
    model, cfg, threshold = load_model(tmp_path / "r" / "model.pt")
    assert cfg == smoke(**overrides)
    assert model.out_channels == (2 if cfg.loss == "weighted_ce" else 1)
    test = load_data(cfg, data_root).test
    assert result.metrics["test"] == evaluate(model, test, cfg, threshold)
    if cfg.dataset == "isbi2012":
        assert len(result.metrics["test"]["per_image"]) == 5  # held-out slices
        assert set(result.metrics["test"]["isbi"]) == {
            "pixel_error", "rand_error", "variation_of_information"}


@pytest.mark.parametrize("compile_net", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_weight_average_and_compile_resume_to_the_same_weights(tmp_path, data_root,
                                                                compile_net):
    """A killed run with a weight average (and, slow, a compiled step) resumes bit for bit."""
    cfg = smoke(ema_decay=0.9, compile=compile_net)
    whole = run(cfg, tmp_path / "whole", data_root)
    run(cfg, tmp_path / "killed", data_root, stop_after=4)
    resumed = run(cfg, tmp_path / "killed", data_root)
    assert resumed.resumed_from == 3
    for name in ("whole", "killed"):
        state = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)
        assert state["ema"]["updates"] == 6
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema"):
        left = a[part] if part == "model" else a[part]["state"]
        right = b[part] if part == "model" else b[part]["state"]
        for k in left:
            assert torch.equal(left[k], right[k]), (part, k)
    assert resumed.metrics["test"] == whole.metrics["test"]
    # model.pt holds the average, not the last weights.
    model, _, _ = load_model(tmp_path / "whole" / "model.pt")
    saved = model.state_dict()
    assert all(torch.equal(saved[k], a["ema"]["state"][k]) for k in saved)
    assert any(not torch.equal(saved[k], a["model"][k]) for k in saved
               if saved[k].is_floating_point())


def test_weight_average_follows_the_formula():
    from unet_train.ema import WeightAverage

    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(0.0)
    avg = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(1.0)
    avg.update(net)  # d = min(0.5, 1/10) = 0.1: 0 + 0.9 * (1 - 0)
    assert torch.allclose(avg.state["weight"], torch.full((1, 2), 0.9))
    avg.update(net)  # d = min(0.5, 2/11): 0.9 + (1 - 2/11) * 0.1
    assert torch.allclose(avg.state["weight"], torch.full((1, 2), 0.9 + (9 / 11) * 0.1))
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(net, decay=1.0)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        TrainConfig(ema_decay=1.5)
