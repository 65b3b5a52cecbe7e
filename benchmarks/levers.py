"""Levers of the ``cpu`` recipe, measured on DRIVE training images only (never the test set).

    UNET_DATA_DIR=../shared/data python benchmarks/levers.py --steps 1500

Every arm trains from scratch on 16 of the 20 official training images and is scored on the
other 4 (``val_images=4``, the last four of the official training set), inside the FOV,
pooled: AUC-ROC, and F1 at the F1-optimal threshold *of those 4 validation images* (the same
optimistic rule for every arm, so arms compare; it is not a test result). The test images are
never loaded into a metric: a run stops after its last step without the final evaluation.

``equal_time`` arms get their steps from a step-time ratio measured here against the baseline
(:func:`unet_train.train.seconds_per_step`, 40 steps each on this machine), so that an arm that
costs more per step trains fewer steps. An arm's row records its steps, training minutes and
the machine's bf16 matmul rate; cells already in the results file are kept (``--arms`` reruns
named ones). Writes ``benchmarks/results/levers.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from unet_book.results import levers_table
from unet_core.data.splits import load_data
from unet_core.metrics import best_threshold, segmentation_metrics
from unet_train.atomic import write_json, write_text
from unet_train.checkpoint import load_checkpoint
from unet_train.compute import code_version, machine_summary
from unet_train.config import TrainConfig
from unet_train.evaluation import predict_probability
from unet_train.recipe import build_model
from unet_train.train import seconds_per_step, train

#: arm name -> (config overrides, equal_time). The baseline is the ``cpu`` profile.
ARMS: dict[str, tuple[dict[str, Any], bool]] = {
    "baseline": ({}, False),
    "green": ({"channels": "green"}, False),
    "green_clahe": ({"channels": "green_clahe"}, False),
    "loss_bce": ({"loss": "bce"}, False),
    "lr_6e-3": ({"lr": 6e-3}, False),
    "lr_1.5e-3": ({"lr": 1.5e-3}, False),
    "width_24_equal_time": ({"base_channels": 24}, True),
    "batch_16_equal_time": ({"batch_size": 16}, True),
    "patch_96_batch_14": ({"patch_size": 96, "batch_size": 14}, True),
    "tta_none": ({"tta": "none"}, False),
    "ema": ({"ema_decay": 0.999}, False),
    "compile": ({"compile": True}, False),
}
VAL_IMAGES = 4


def main() -> int:
    args = _parse_args()
    out = args.out
    report = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(
        ".json").exists() else {"cells": {}}
    report.update({"steps": args.steps, "val_images": VAL_IMAGES,
                   "rule": "val AUC-ROC and F1 at the val-optimal threshold; 4 val images"})
    base_cfg = _config({}, args.steps, args.seed)
    base_s: float | None = None
    for arm in args.arms:
        key = f"{arm}/seed{args.seed}"
        if key in report["cells"] and not args.force:
            print(f"{key}: done, kept", flush=True)
            continue
        overrides, equal_time = ARMS[arm]
        steps = args.steps
        ratio = 1.0
        if equal_time:
            base_s = base_s or seconds_per_step(base_cfg)
            ratio = seconds_per_step(_config(overrides, args.steps, args.seed)) / base_s
            steps = max(1, round(args.steps / ratio))
        cfg = _config(overrides, steps, args.seed)
        cell = _run_arm(arm, cfg, args)
        cell.update({"step_time_ratio": ratio, "overrides": overrides})
        report["cells"][key] = cell
        report["machine"] = machine_summary()
        report["fingerprint"] = cell["fingerprint"]  # of the latest cell
        write_json(out.with_suffix(".json"), report)
        write_text(out.with_suffix(".md"), _markdown(report))
        print(f"{key}: {steps} steps, {cell['train_minutes']:.2f} min, val AUC "
              f"{cell['val_auc_roc']:.4f}, F1 {cell['val_f1']:.4f}", flush=True)
    print(_markdown(report))
    return 0


def _config(overrides: dict[str, Any], steps: int, seed: int) -> TrainConfig:
    return TrainConfig.from_profile("cpu", dataset="drive", val_images=VAL_IMAGES, seed=seed,
                                    steps=steps, eval_every=0, **overrides)


def _run_arm(arm: str, cfg: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``cfg`` (no test evaluation) and score its last weights on the 4 val images."""
    run_dir = Path(os.environ.get("UNET_RUNS_DIR", "runs")) / f"levers-{arm}-{cfg.key()}"
    wall0 = time.perf_counter()
    result = train(cfg, run_dir, resume=True, stop_after=cfg.steps, progress=False)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    data = load_data(cfg)
    model = build_model(cfg, data.in_channels)
    model.load_state_dict(state["ema"]["state"] if "ema" in state else state["model"])
    model.eval()
    t0 = time.perf_counter()
    probs = [predict_probability(model, e.image, cfg) for e in data.val]
    eval_s = (time.perf_counter() - t0) / len(data.val)
    targets, fovs = [e.target for e in data.val], [e.fov for e in data.val]
    best = best_threshold(probs, targets, fovs)
    m = segmentation_metrics(probs, targets, fovs, threshold=best.threshold)
    return {"arm": arm, "seed": cfg.seed, "steps": cfg.steps, "train_minutes": result.train_minutes,
            "wall_minutes": (time.perf_counter() - wall0) / 60,
            "eval_seconds_per_image": eval_s, "val_auc_roc": m.auc_roc, "val_f1": m.f1,
            "val_threshold": best.threshold, "synthetic": data.synthetic,
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "code": code_version(),
            "fingerprint": result.provenance}


def _markdown(report: dict[str, Any]) -> str:
    return "\n".join([
        "# Levers of the cpu recipe (validation images only)", "",
        f"{report['rule']}; baseline {report['steps']} steps; machine: "
        f"{report.get('machine', {})}.", "", levers_table(report)]) + "\n"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500, help="baseline steps per arm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS),
                        metavar="ARM", help=f"arms to run (default all): {', '.join(ARMS)}")
    parser.add_argument("--force", action="store_true", help="rerun arms already recorded")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/levers"))
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(main())
