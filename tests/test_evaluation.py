"""Evaluating a trained model (unet_train.evaluation): probabilities, metrics, the threshold.

Every number a run writes to ``metrics.json`` is recomputed here independently from the run's
``model.pt`` and the images (scikit-learn on the pixels inside the FOV), and the threshold is
recomputed by :func:`choose_threshold`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
)

from unet_core.data.splits import ISBI_TEST_SLICES, load_data
from unet_core.metrics import best_threshold, rand_error, variation_of_information
from unet_core.tiling import predict_tiled
from unet_train.config import TrainConfig
from unet_train.evaluation import choose_threshold, evaluate, predict_probability
from unet_train.recipe import build_model
from unet_train.runs import load_model
from unet_train.train import train


def smoke(**overrides) -> TrainConfig:
    base = {"patch_size": 32, "eval_tile": 32, "steps": 6, "eval_every": 3}
    return TrainConfig.from_profile("smoke", **(base | overrides))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small_data_root):
    """Finished smoke runs by ``threshold_images``, trained on first use."""
    done: dict[str, Path] = {}

    def get(images: str = "validation") -> Path:
        if images not in done:
            run_dir = tmp_path_factory.mktemp(f"run-{images}")
            train(smoke(threshold_images=images), run_dir, data_root=small_data_root,
                  progress=False, log=lambda _: None)
            done[images] = run_dir
        return done[images]

    return get


def _reference(probs, examples, threshold: float) -> dict[str, float]:
    """The pixel metrics of a set inside the FOV, by scikit-learn."""
    scores = np.concatenate([p[e.fov] for p, e in zip(probs, examples, strict=True)])
    labels = np.concatenate([e.target[e.fov] for e in examples])
    tn, fp, fn, tp = confusion_matrix(labels, scores >= threshold, labels=[False, True]).ravel()
    return {
        "auc_roc": roc_auc_score(labels, scores),
        "auc_pr": average_precision_score(labels, scores),
        "f1": 2 * tp / (2 * tp + fp + fn),
        "iou": tp / (tp + fp + fn),
        "accuracy": (tp + tn) / labels.size,
        "sensitivity": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "precision": tp / (tp + fp),
    }


def test_metrics_json_equals_metrics_recomputed_from_the_model(runs, small_data_root):
    run_dir = runs()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model, cfg, threshold = load_model(run_dir / "model.pt")
    data = load_data(cfg, small_data_root)
    for split, examples in (("test", data.test), ("val", data.val)):
        section = metrics[split]
        assert section["threshold"] == threshold
        assert section["images"] == [e.name for e in examples]
        probs = [predict_probability(model, e.image, cfg) for e in examples]
        assert section["pooled"] == pytest.approx(_reference(probs, examples, threshold),
                                                  abs=1e-9)
        assert len(section["per_image"]) == len(examples)
        for got, p, e in zip(section["per_image"], probs, examples, strict=True):
            assert got == pytest.approx(_reference([p], [e], threshold), abs=1e-9)
        mean = {k: np.mean([m[k] for m in section["per_image"]]) for k in section["mean"]}
        assert section["mean"] == pytest.approx(mean, abs=1e-12)
    # Two test images: pooled is not the mean of the per-image values.
    assert metrics["test"]["pooled"]["auc_roc"] != pytest.approx(
        metrics["test"]["mean"]["auc_roc"], abs=1e-9)


@pytest.mark.parametrize("images", ["validation", "training_set"])
def test_metrics_json_threshold_is_what_choose_threshold_recomputes(runs, small_data_root,
                                                                     images):
    run_dir = runs(images)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model, cfg, threshold = load_model(run_dir / "model.pt")
    assert cfg.threshold_images == images and cfg.tune_threshold
    data = load_data(cfg, small_data_root)
    again, choice = choose_threshold(model, data, cfg)
    assert threshold == again == metrics["test"]["threshold"] == metrics["val"]["threshold"]
    assert metrics["threshold_choice"] == choice
    # ... and is the pooled F1 optimum of the chosen images, found independently by sklearn.
    chosen = {"validation": data.val, "training_set": [*data.train, *data.val]}[images]
    probs = [predict_probability(model, e.image, cfg) for e in chosen]
    scores = np.concatenate([p[e.fov] for p, e in zip(probs, chosen, strict=True)])
    labels = np.concatenate([e.target[e.fov] for e in chosen])
    precision, recall, candidates = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[:-1]
    k = len(f1) - 1 - int(np.argmax(f1[::-1]))  # ties go to the highest threshold
    assert threshold == pytest.approx(float(candidates[k]))
    assert choice[images]["f1"] == pytest.approx(f1[k])
    assert choice[images]["f1"] == pytest.approx(_reference(probs, chosen, threshold)["f1"])
    assert choice[images]["n_images"] == len(chosen)


def test_choose_threshold_fixed_validation_and_training_set(runs, small_data_root):
    model, cfg, _ = load_model(runs() / "model.pt")
    data = load_data(cfg, small_data_root)
    val_probs = [predict_probability(model, e.image, cfg) for e in data.val]
    train_probs = [predict_probability(model, e.image, cfg) for e in data.train]

    fixed_cfg = dataclasses.replace(cfg, tune_threshold=False, threshold=0.3)
    assert choose_threshold(model, data, fixed_cfg) == (
        0.3, {"tuned": False, "images": "validation", "threshold": 0.3})

    t, choice = choose_threshold(model, data, cfg)
    best = best_threshold(val_probs, [e.target for e in data.val], [e.fov for e in data.val])
    assert t == best.threshold and "training_set" not in choice
    assert choice["validation"]["f1"] == pytest.approx(best.value)
    assert [r["name"] for r in choice["validation"]["per_image"]] == ["23_training"]

    both = [*data.train, *data.val]
    t, choice = choose_threshold(model, data, dataclasses.replace(
        cfg, threshold_images="training_set"))
    best = best_threshold([*train_probs, *val_probs], [e.target for e in both],
                          [e.fov for e in both])
    assert t == best.threshold == choice["training_set"]["threshold"]
    assert [r["name"] for r in choice["training_set"]["per_image"]] == [e.name for e in both]
    for r, p, e in zip(choice["training_set"]["per_image"], [*train_probs, *val_probs], both,
                       strict=True):
        assert r["threshold"] == best_threshold(p, e.target, e.fov).threshold
    # The validation optimum is on record too, so a report can compare the two rules.
    assert choice["validation"]["threshold"] == best_threshold(
        val_probs, [e.target for e in data.val], [e.fov for e in data.val]).threshold


def test_choose_threshold_never_looks_at_the_test_set_and_uses_given_probabilities(
        runs, small_data_root):
    model, cfg, threshold = load_model(runs() / "model.pt")
    data = load_data(cfg, small_data_root)
    without_test = dataclasses.replace(data, test=[])
    assert choose_threshold(model, without_test, cfg)[0] == threshold
    # Given validation probabilities are used as they are (not predicted again).
    e = data.val[0]
    perfect = [np.where(e.target, 0.9, 0.2).astype(np.float32)]
    t, choice = choose_threshold(model, data, cfg, val_probs=perfect)
    assert t == pytest.approx(0.9) and choice["validation"]["f1"] == 1.0


def test_evaluate_counts_only_fov_pixels_and_uses_given_probabilities(small_data_root):
    cfg = smoke()
    data = load_data(cfg, small_data_root)
    model = build_model(cfg, data.in_channels).eval()
    perfect = [e.target.astype(np.float32) for e in data.test]
    result = evaluate(model, data.test, cfg, 0.5, probs=perfect)
    for key in ("auc_roc", "auc_pr", "f1", "iou", "accuracy", "sensitivity", "specificity"):
        assert result["pooled"][key] == 1.0, key
    # Wrong everywhere outside the FOV: nothing changes.
    wrong_outside = [np.where(e.fov, p, 1.0 - p) for p, e in zip(perfect, data.test,
                                                                strict=True)]
    assert evaluate(model, data.test, cfg, 0.5, probs=wrong_outside) == result
    # Without probabilities the model's are computed.
    probs = [predict_probability(model, e.image, cfg) for e in data.test]
    assert evaluate(model, data.test, cfg, 0.4) == evaluate(model, data.test, cfg, 0.4, probs)
    assert evaluate(model, data.test, cfg, 0.4)["pooled"] == pytest.approx(
        _reference(probs, data.test, 0.4), abs=1e-9)
    assert "isbi" not in result


def test_evaluate_isbi_adds_the_segmentation_errors(small_data_root):
    cfg = smoke(dataset="isbi2012", loss="weighted_ce", channels="gray")
    data = load_data(cfg, small_data_root)
    model = build_model(cfg, data.in_channels).eval()
    probs = [predict_probability(model, e.image, cfg) for e in data.test]
    threshold = float(np.median(np.concatenate([p.ravel() for p in probs])))
    result = evaluate(model, data.test, cfg, threshold)
    targets = [e.target for e in data.test]
    wrong = [np.mean((p >= threshold) != t) for p, t in zip(probs, targets, strict=True)]
    isbi = result["isbi"]
    assert isbi["pixel_error"] == pytest.approx(np.mean(wrong), abs=1e-12)
    assert isbi["rand_error"] == pytest.approx(np.mean(
        [rand_error(p, t, threshold=threshold) for p, t in zip(probs, targets, strict=True)]))
    assert isbi["variation_of_information"] == pytest.approx(np.mean(
        [variation_of_information(p, t, threshold=threshold).total
         for p, t in zip(probs, targets, strict=True)]))
    # No FOV: every pixel counts.
    scores = np.concatenate([p.ravel() for p in probs])
    labels = np.concatenate([t.ravel() for t in targets])
    assert result["pooled"]["auc_roc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)
    assert len(result["per_image"]) == ISBI_TEST_SLICES


@pytest.mark.parametrize("loss, tta", [("bce_dice", "none"), ("weighted_ce", "flips")])
def test_predict_probability_is_the_foreground_probability_of_the_tiled_logits(loss, tta):
    cfg = smoke(loss=loss, tta=tta, bf16=False)
    model = build_model(cfg, 3).eval()
    image = np.random.default_rng(0).random((50, 41, 3), dtype=np.float32)
    prob = predict_probability(model, image, cfg)
    assert prob.shape == (50, 41) and prob.dtype == np.float32
    assert prob.min() >= 0 and prob.max() <= 1
    logits = predict_tiled(model, torch.from_numpy(image).permute(2, 0, 1), cfg.eval_tile,
                           tta=tta)
    want = (torch.sigmoid(logits[0]) if loss == "bce_dice"
            else torch.softmax(logits, dim=0)[1]).numpy()
    np.testing.assert_allclose(prob, want, atol=1e-6)
