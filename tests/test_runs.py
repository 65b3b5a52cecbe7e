"""Run folders (unet_train.runs): the files a run writes, and how they are read back."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core.data.splits import load_data
from unet_train.checkpoint import save_checkpoint
from unet_train.config import TrainConfig
from unet_train.evaluation import predict_probability
from unet_train.identity import config_diff, default_run_name
from unet_train.provenance import dataset_fingerprint
from unet_train.runs import (
    HISTORY_FIELDS,
    finished_run,
    finite,
    load_model,
    read_history,
    runs_dir,
    write_history,
    write_metrics,
)
from unet_train.train import train


def smoke(**overrides) -> TrainConfig:
    base = {"patch_size": 32, "eval_tile": 32, "steps": 6, "eval_every": 3}
    return TrainConfig.from_profile("smoke", **(base | overrides))


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_data_root):
    """A finished 6-step smoke run (validation every 3 steps) and its result."""
    run_dir = tmp_path_factory.mktemp("runs") / "r"
    result = train(smoke(), run_dir, data_root=small_data_root, progress=False,
                   log=lambda _: None)
    return run_dir, result


def test_a_run_folder_holds_its_files(run, small_data_root):
    run_dir, result = run
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.json", "history.csv", "metrics.json", "checkpoint.pt", "model.pt"}
    assert not (run_dir / "snapshots").exists()  # only with keep_snapshots
    assert json.loads((run_dir / "config.json").read_text()) == smoke().to_dict()

    with (run_dir / "history.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == HISTORY_FIELDS
        rows = list(reader)
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert read_history(run_dir / "history.csv") == result.history  # exact: repr floats
    assert all(0 <= float(r["val_auc_roc"]) <= 1 and r["val_loss"] == "" for r in rows)

    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 6 and state["in_channels"] == 3
    assert state["config"] == smoke().to_dict()
    assert set(state) >= {"model", "optimizer", "scheduler", "rng", "history", "minutes"}
    assert state["history"] == result.history

    final = torch.load(run_dir / "model.pt", weights_only=True)
    assert set(final) == {"model", "config", "in_channels", "threshold", "format"}
    assert final["model"].keys() == state["model"].keys()
    assert all(torch.equal(final["model"][k], state["model"][k]) for k in state["model"])

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == result.metrics
    assert final["threshold"] == metrics["test"]["threshold"] == metrics["val"]["threshold"]
    data = load_data(smoke(), small_data_root)
    assert metrics["dataset"] == "drive" and metrics["synthetic"] == data.synthetic
    assert metrics["steps"] == 6 and metrics["stopped_by"] == "steps"
    assert metrics["train_minutes"] == pytest.approx(state["minutes"]) and state["minutes"] > 0
    assert metrics["test"]["images"] == [e.name for e in data.test]
    assert metrics["val"]["images"] == [e.name for e in data.val]


def test_load_model_gives_back_the_trained_model(run, small_data_root):
    run_dir, result = run
    model, cfg, threshold = load_model(run_dir / "model.pt")
    assert cfg == smoke() and threshold == result.metrics["test"]["threshold"]
    assert not model.training and model.in_channels == 3 and model.out_channels == 1
    stored = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(v, stored[k]) for k, v in model.state_dict().items())
    image = load_data(cfg, small_data_root).test[0].image
    again, _, _ = load_model(run_dir / "model.pt")
    assert np.array_equal(predict_probability(model, image, cfg),
                          predict_probability(again, image, cfg))


def test_load_model_reads_a_checkpoint_and_refuses_other_files(run, tmp_path):
    run_dir, _ = run
    model, cfg, threshold = load_model(run_dir / "checkpoint.pt")  # no threshold stored
    assert cfg == smoke() and threshold == cfg.threshold == 0.5
    save_checkpoint(tmp_path / "weights.pt", {"model": model.state_dict(), "in_channels": 3})
    with pytest.raises(ValueError, match="weights.pt is not a unet_core model file: it has no "
                                         "'config' entry"):
        load_model(tmp_path / "weights.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_model(tmp_path / "missing.pt")


def test_finished_run_reads_the_run_back(run):
    run_dir, result = run
    done = finished_run(run_dir, smoke())
    assert done is not None
    assert (done.run_dir, done.config, done.steps, done.stopped_by) == (
        run_dir, smoke(), 6, "steps")
    assert done.metrics == result.metrics and done.synthetic == result.synthetic
    assert done.history == result.history
    assert done.train_minutes == pytest.approx(result.train_minutes)
    # Device and threads never change a result.
    assert finished_run(run_dir, smoke(device="cpu", threads=1)) is not None


def test_finished_run_refuses_another_config_and_ignores_unfinished_runs(run, tmp_path):
    run_dir, _ = run
    with pytest.raises(ValueError, match=r"another config \(lr, seed differ\)"):
        finished_run(run_dir, smoke(lr=0.5, seed=3))
    assert finished_run(run_dir, smoke(lr=0.5, seed=3), ignore=("lr", "seed")) is not None
    assert finished_run(tmp_path / "nothing", smoke()) is None
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "model.pt").unlink()
    assert finished_run(unfinished, smoke()) is None


def test_config_diff():
    a = smoke().to_dict()
    assert config_diff(a, a) == []
    b = a | {"lr": 1.0, "seed": 9, "device": "cuda", "threads": 3}
    assert config_diff(a, b) == ["lr", "seed"]
    assert config_diff(a, b, ignore=["seed"]) == ["lr"]
    assert config_diff(a, {k: v for k, v in a.items() if k != "w0"}) == ["w0"]


def test_metrics_json_has_no_nan(tmp_path):
    metrics = {"a": float("nan"), "b": [1.0, float("inf"), {"c": -float("inf")}], "d": "x",
               "e": 2}
    assert finite(metrics) == {"a": None, "b": [1.0, None, {"c": None}], "d": "x", "e": 2}
    write_metrics(tmp_path, metrics)
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == finite(metrics)
    assert math.isnan(metrics["a"])  # the caller's dict is left alone


def test_history_round_trip(tmp_path):
    history = [{"step": 3, "minutes": 0.5, "loss": 0.25, "lr": 1e-3},
               {"step": 6, "minutes": 1.0, "loss": 0.125, "lr": 5e-4, "val_auc_roc": 0.75,
                "val_f1": 0.5, "extra": 1.0}]
    write_history(tmp_path / "h.csv", history)
    back = read_history(tmp_path / "h.csv")
    assert back == [history[0], {k: v for k, v in history[1].items() if k != "extra"}]
    assert read_history(tmp_path / "missing.csv") == []


def test_runs_dir_and_run_names(monkeypatch, tmp_path):
    monkeypatch.delenv("UNET_RUNS_DIR", raising=False)
    assert runs_dir() == Path("runs")
    monkeypatch.setenv("UNET_RUNS_DIR", str(tmp_path))
    assert runs_dir() == tmp_path
    cfg = smoke()
    key = dataset_fingerprint("drive")["key"]
    assert default_run_name(cfg) == f"drive-smoke-{cfg.key()}-{key}"
    assert default_run_name(smoke(seed=1)) != default_run_name(cfg)
    assert default_run_name(smoke(device="cpu", threads=2)) == default_run_name(cfg)
