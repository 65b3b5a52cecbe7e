"""Scoring a study cell from what its run folder keeps, so a new metric never needs retraining.

A cell's run folder (``$UNET_RUNS_DIR/study-...``) holds its ``model.pt``; :func:`probabilities`
adds its validation and test probability maps as 16-bit PNGs (``probabilities/val`` and
``probabilities/test``, ``<image>_prob.png``, the encoding of ``predict``:
``round(p * 65535)``), written once and read back afterwards. A study's runner writes the
maps its training's final evaluation computed (:func:`evaluated_probabilities`: where they are
the maps ``model.pt`` gives here), so each image is predicted once per cell; otherwise they
are computed from ``model.pt``. :func:`score_cell` turns them into the cell's metrics:

* ISBI 2012 (:func:`isbi_scores`), with the challenge's instruments
  (:func:`unet_core.metrics.challenge_scores`, :func:`unet_core.metrics.warping_error`): the
  threshold is the one of 0.0, 0.1, ..., 1.0 with the best thinned V_rand on the cell's own
  validation slices; at that threshold, the test slices' thinned V_rand and V_info with their
  split and merge parts and the warping error. Beside them, labelled as chosen on the test
  slices, the leaderboard's best thinned V_rand over the thresholds, and, from training, the
  older instrument: the unthinned Rand error at the fixed threshold 0.5.
* DRIVE (:func:`drive_scores`): AUC, F1, IoU, sensitivity and specificity pooled over the
  FOVs of the test images, at the threshold the run chose on training images.

``make study NAME=... RESCORE=1`` (``benchmarks/study.py --rescore``) applies it to every cell
whose run folder is on this machine. Run folders are not committed: a fresh clone rescores
nothing and says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unet_core.data.splits import Example, load_data
from unet_core.metrics import challenge_scores, warping_error
from unet_train.atomic import write_image
from unet_train.config import TrainConfig
from unet_train.evaluation import evaluate, predict_probability
from unet_train.predict import encode_probability, read_probability
from unet_train.runs import ENVIRONMENT, RunResult, load_model

PROBABILITIES = "probabilities"
SPLITS = ("val", "test")
#: The challenge's parts, stored per cell at the validation-chosen threshold.
CHALLENGE_KEYS = ("v_rand", "v_info", "v_rand_split", "v_rand_merge", "v_info_split",
                  "v_info_merge")


def probability_path(run_dir: Path, split: str, name: str) -> Path:
    return run_dir / PROBABILITIES / split / f"{name}_prob.png"


def evaluated_probabilities(result: RunResult) -> dict[str, list[np.ndarray]] | None:
    """The maps a finished training's final evaluation computed (``result.probabilities``)
    where they are those :func:`probabilities` would compute from its ``model.pt``: the run
    evaluated on the CPU, where :func:`unet_train.runs.load_model` puts the model, with the
    same weights and inference placement. ``None`` otherwise (a GPU's maps differ from the
    CPU's in the last bits, more under autocast), or where the run evaluated nothing."""
    if result.probabilities is None:
        return None
    environment = json.loads((Path(result.run_dir) / ENVIRONMENT).read_text())
    return result.probabilities if environment.get("device") == "cpu" else None


def probabilities(run_dir: Path, cfg: TrainConfig, examples: Mapping[str, Sequence[Example]],
                  computed: Mapping[str, Sequence[np.ndarray]] | None = None,
                  ) -> dict[str, list[np.ndarray]]:
    """``{split: [probability map]}`` of the run's ``model.pt`` on ``examples[split]``: read
    from the stored PNGs where all are there, else taken from ``computed[split]`` (the same
    model's maps of these examples, in order: :func:`evaluated_probabilities`) or computed
    from ``model.pt``, and stored (atomically per file). The maps are those of the PNGs
    (rounded to 1/65535), so a rescore equals the first score."""
    out: dict[str, list[np.ndarray]] = {}
    model = None
    for split, items in examples.items():
        paths = [probability_path(run_dir, split, e.name) for e in items]
        if not all(p.exists() for p in paths):
            given = None if computed is None else computed.get(split)
            if given is not None and len(given) != len(items):
                raise ValueError(f"{len(given)} computed {split} maps for {len(items)} images")
            if given is None and model is None:
                model, _, _ = load_model(run_dir / "model.pt")
            for i, (e, path) in enumerate(zip(items, paths, strict=True)):
                prob = (given[i] if given is not None
                        else predict_probability(model, e.image, cfg))  # type: ignore[arg-type]
                encoded = encode_probability(prob)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_image(path, Image.fromarray(encoded))
        out[split] = [read_probability(p) for p in paths]
    return out


def isbi_scores(val_probs: Sequence[np.ndarray], val_targets: Sequence[np.ndarray],
                test_probs: Sequence[np.ndarray], test_targets: Sequence[np.ndarray],
                ) -> dict[str, Any]:
    """The challenge's scores of one ISBI 2012 cell (module docstring): ``metrics`` (flat,
    for the verdicts) and ``challenge`` (the threshold choice and the per-threshold curves)."""
    val = challenge_scores(list(val_probs), list(val_targets))
    threshold = float(val["threshold"])
    test = challenge_scores(list(test_probs), list(test_targets), threshold=threshold)
    best = challenge_scores(list(test_probs), list(test_targets))
    warping = [warping_error(p, t, threshold=threshold)
               for p, t in zip(test_probs, test_targets, strict=True)]
    metrics = {k: float(test[k]) for k in CHALLENGE_KEYS}
    metrics["warping_error"] = float(np.mean([w.error for w in warping]))
    metrics["v_rand_best_on_test"] = float(best["v_rand"])
    metrics["threshold_chosen_on_validation"] = threshold
    return {"metrics": metrics, "challenge": {
        "threshold": threshold, "threshold_rule": "best thinned V_rand on the validation slices",
        "validation_curve": val.get("curve"), "validation_v_rand": float(val["v_rand"]),
        "best_on_test_threshold": float(best["threshold"]),
        "warping": [{k: float(v) for k, v in w._asdict().items()} for w in warping]}}


def drive_scores(probs: Sequence[np.ndarray], examples: Sequence[Example], cfg: TrainConfig,
                 threshold: float) -> dict[str, Any]:
    """Pooled test metrics of a DRIVE cell at its threshold (as training reported them), and
    the share of the pixels *outside* the FOVs predicted vessel (``outside_fov_positive``),
    which the metrics never see but a reader's own photograph shows."""
    pooled = evaluate(None, examples, cfg, threshold, probs=list(probs))["pooled"]  # type: ignore[arg-type]
    metrics = {k: pooled[k] for k in ("auc_roc", "f1", "iou", "sensitivity", "specificity")}
    outside = [np.asarray(p)[~e.fov] for p, e in zip(probs, examples, strict=True)
               if e.fov is not None]
    if outside:
        pixels = np.concatenate(outside)
        metrics["outside_fov_positive"] = float(np.mean(pixels >= threshold))
    return {"metrics": metrics}


def score_cell(run_dir: Path, cfg: TrainConfig, threshold: float,
               data_root: str | Path | None = None,
               computed: Mapping[str, Sequence[np.ndarray]] | None = None) -> dict[str, Any]:
    """The scores of the cell trained in ``run_dir`` with ``cfg`` (its ``model.pt``; the
    probabilities stored, given in ``computed`` or computed by :func:`probabilities`)."""
    data = load_data(cfg, data_root)
    probs = probabilities(run_dir, cfg, {"val": data.val, "test": data.test}, computed)
    if cfg.dataset == "isbi2012":
        return isbi_scores(probs["val"], [e.target for e in data.val], probs["test"],
                           [e.target for e in data.test])
    return drive_scores(probs["test"], data.test, cfg, threshold)
