"""Time to quality on DRIVE: train a profile from scratch, several seeds, in a compute budget.

    UNET_DATA_DIR=../shared/data python benchmarks/drive_quality.py --seeds 3

Machines differ, so the budget is in **normalised minutes** (:mod:`unet_train.compute`): wall
minutes x (this machine's matmul GFLOP/s in the training dtype / 400). For each seed, one after
the other:

1. Measures the matmul rate and turns ``--normalised-minutes`` (default 15) into a wall-clock
   budget for this machine; ``--minutes`` sets a wall budget instead.
2. Calibrates the profile's step time (60 steps) and sets ``steps`` so that set-up,
   training, the threshold choice and the test evaluation fit the budget (``--reserve``
   normalised minutes are kept for all but training); the learning-rate schedule runs to its
   end.
3. Trains from scratch on DRIVE's training images (minus the profile's validation images) and
   evaluates on the 20 official test images inside the FOV against the first observer, pooled,
   at the threshold the profile's frozen rule chooses on training-set images (the F1 optimum
   over all 20 official training images); never on the test set. The matmul rate is measured
   again at the end; the higher of the two counts.

After the timed runs, the first seed's weight snapshots give a curve of test quality against
training minutes, each snapshot at the threshold chosen by the same rule on the training-set
images *with that snapshot's weights* (outside the budget).

Writes ``benchmarks/results/time_to_quality.json`` and ``.md`` (or ``--out``). Every
evaluation on the test set that this script makes is appended, with its purpose, to the
file's ``test_evaluations`` log. The bars: each seed within the budget, mean AUC-ROC >= 0.982
and mean F1 >= 0.830.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from unet_book.results import quality_seed_table
from unet_core.data.splits import load_data
from unet_train.atomic import write_json, write_text
from unet_train.checkpoint import load_checkpoint
from unet_train.compute import (
    REFERENCE_GFLOPS,
    code_version,
    matmul_gflops,
    normalised_minutes,
    training_dtype,
)
from unet_train.config import PROFILES, TrainConfig
from unet_train.devices import processor_name
from unet_train.evaluation import choose_threshold, evaluate
from unet_train.provenance import dataset_fingerprint
from unet_train.recipe import build_model
from unet_train.train import seconds_per_step, train

BAR = {"auc_roc": 0.982, "f1": 0.830, "normalised_minutes": 15.0}
METRICS = ("auc_roc", "f1", "iou", "sensitivity", "specificity", "accuracy")


def _parse_value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> int:
    args = _parse_args()
    overrides = {k: _parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    out_json = args.out.with_suffix(".json")
    log = json.loads(out_json.read_text()).get("test_evaluations", []) if out_json.exists() \
        else []
    seeds = []
    for i in range(args.seeds):
        seed = args.first_seed + i
        cfg = TrainConfig.from_profile(args.profile, dataset="drive", seed=seed,
                                       **{"keep_snapshots": i == 0, **overrides})
        row = _one_seed(cfg, args)
        seeds.append(row)
        log.append({"date": row["date"], "code": row["code"], "config_key": row["config_key"],
                    "seed": seed, "purpose": args.purpose})
        report = _report(args, seeds, log, curve=None)
        write_json(out_json, report)  # after every seed: a session can end mid-study
    curve = _snapshot_curve(seeds[0]) if seeds and not args.no_curve else []
    report = _report(args, seeds, log, curve)
    write_json(out_json, report)
    text = "\n".join(_markdown(report)) + "\n"
    write_text(args.out.with_suffix(".md"), text)
    print(text)
    return 0


def _one_seed(cfg: TrainConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Steps 1-3 for one seed: the budget, the calibrated steps, the run and its test metrics."""
    dtype = training_dtype(cfg)  # the precision this machine trains cfg in
    wall0 = time.perf_counter()
    rate0 = matmul_gflops(dtype)
    scale = rate0 / REFERENCE_GFLOPS  # normalised minutes per wall minute
    budget = args.minutes if args.minutes else args.normalised_minutes / scale
    reserve = args.reserve / scale
    step_s = seconds_per_step(cfg, steps=60, warmup=30)
    train_minutes = budget - reserve - (time.perf_counter() - wall0) / 60
    steps = max(1, int(train_minutes * 60 / step_s))
    cfg = TrainConfig.from_dict(cfg.to_dict() | {
        "steps": steps, "time_budget_min": train_minutes, "eval_every": max(1, steps // 8)})
    print(f"seed {cfg.seed}: matmul {rate0:.0f} GFLOP/s -> budget {budget:.2f} wall min; "
          f"calibrated {step_s:.3f} s/step -> {steps} steps in {train_minutes:.2f} min",
          flush=True)
    run_dir = args.run_dir_root / f"drive-quality-{cfg.key()}"
    result = train(cfg, run_dir, resume=False, progress=False)
    wall = (time.perf_counter() - wall0) / 60
    rate1 = matmul_gflops(dtype)
    rate = max(rate0, rate1)
    test = result.metrics["test"]["pooled"]
    row = {
        "seed": cfg.seed, "config_key": cfg.key(), "config": cfg.to_dict(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "code": code_version(),
        "fingerprint": result.provenance,
        "synthetic": result.synthetic, "steps": result.steps, "planned_steps": cfg.steps,
        "stopped_by": result.stopped_by,
        "calibrated_seconds_per_step": step_s, "train_minutes": result.train_minutes,
        "wall_minutes": wall, "budget_wall_minutes": budget,
        "matmul_gflops": {"start": rate0, "end": rate1, "used": rate},
        "normalised_minutes": normalised_minutes(wall, rate),
        "threshold": result.metrics["test"]["threshold"],
        "threshold_choice": result.metrics["threshold_choice"],
        "test": {k: test[k] for k in METRICS}, "run_dir": str(run_dir),
    }
    print(f"seed {cfg.seed}: {wall:.2f} wall min = {row['normalised_minutes']:.2f} normalised; "
          f"test AUC {test['auc_roc']:.4f}, F1 {test['f1']:.4f}", flush=True)
    return row


def _report(args: argparse.Namespace, seeds: list[dict[str, Any]], log: list[dict[str, Any]],
            curve: list[dict[str, Any]] | None) -> dict[str, Any]:
    summary = {k: _mean_sd([s["test"][k] for s in seeds]) for k in METRICS}
    for k in ("threshold", "wall_minutes", "normalised_minutes", "steps"):
        summary[k] = _mean_sd([s[k] for s in seeds])
    within = all(s["normalised_minutes"] <= BAR["normalised_minutes"] for s in seeds)
    passed = (bool(seeds) and not any(s["synthetic"] for s in seeds) and within
              and summary["auc_roc"]["mean"] >= BAR["auc_roc"]
              and summary["f1"]["mean"] >= BAR["f1"])
    return {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "code": code_version(),
        "fingerprint": dataset_fingerprint("drive"),
        "machine": {"cpu": processor_name(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "profile": args.profile, "overrides": args.set, "bar": BAR,
        "budget": {"normalised_minutes": args.normalised_minutes, "wall_minutes": args.minutes,
                   "reserve_normalised_minutes": args.reserve},
        "seeds": seeds, "summary": summary, "within_budget": within, "passed": passed,
        "curve": curve or [], "test_evaluations": log,
    }


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values) if values else float("nan"),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def _parse_args() -> argparse.Namespace:
    """The command line (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--seeds", type=int, default=3, help="seeds, trained one after another")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--normalised-minutes", type=float, default=BAR["normalised_minutes"],
                        help="budget per seed in normalised minutes (wall x GFLOP/s / 400)")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="a wall-clock budget per seed instead (0: use the normalised one)")
    parser.add_argument("--reserve", type=float, default=2.0,
                        help="normalised minutes kept for set-up, validation passes, the "
                             "threshold choice and the test evaluation")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="config overrides, e.g. --set lr=0.002 base_channels=24")
    parser.add_argument("--purpose", default="the recipe's final measurement",
                        help="why the test set is evaluated (logged in the results file)")
    parser.add_argument("--no-curve", action="store_true", help="skip the snapshot curve")
    parser.add_argument("--run-dir-root", type=Path,
                        default=Path(os.environ.get("UNET_RUNS_DIR", "runs")))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/time_to_quality"))
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    return args


def _snapshot_curve(first: dict[str, Any]) -> list[dict[str, Any]]:
    """Test AUC and F1 of every weight snapshot of the first seed, each at the threshold the
    frozen rule chooses on the training-set images with that snapshot's weights."""
    cfg = TrainConfig.from_dict(first["config"])
    data = load_data(cfg)
    model = build_model(cfg, data.in_channels)
    curve = []
    for snap in sorted((Path(first["run_dir"]) / "snapshots").glob("step*.pt")):
        state = load_checkpoint(snap)
        model.load_state_dict(state["model"])
        model.eval()
        threshold, _ = choose_threshold(model, data, cfg)
        pooled = evaluate(model, data.test, cfg, threshold)["pooled"]
        curve.append({"step": state["step"], "minutes": round(state["minutes"], 2),
                      "threshold": threshold, "auc_roc": pooled["auc_roc"], "f1": pooled["f1"]})
        print(f"  step {state['step']:6d} {state['minutes']:6.2f} min  threshold "
              f"{threshold:.3f}  AUC {pooled['auc_roc']:.4f}  F1 {pooled['f1']:.4f}", flush=True)
    return curve


def _markdown(report: dict[str, Any]) -> list[str]:
    """The report's Markdown: per seed, mean and sd, the bars, and the curve."""
    seeds = report["seeds"]
    lines = [
        f"# Time to quality on DRIVE ({report['date']}, code {report['code']})", "",
        f"Command: `{report['command']}`", "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['threads']} threads, torch "
        f"{report['machine']['torch']}. Profile `{report['profile']}`"
        + (f" with {' '.join(report['overrides'])}" if report["overrides"] else "") + ". "
        + ("SYNTHETIC stand-in data, not DRIVE. " if any(s["synthetic"] for s in seeds) else "")
        + "Test set: the 20 official DRIVE test images, inside the FOV, first observer, pooled; "
        "threshold: F1 optimum over the 20 official training images.", "",
        quality_seed_table(report),
    ]
    bar = report["bar"]
    lines += [
        "", f"Bars: mean AUC-ROC >= {bar['auc_roc']}, mean F1 >= {bar['f1']}, each seed within "
        f"{bar['normalised_minutes']:g} normalised minutes. Within budget: "
        f"{'yes' if report['within_budget'] else 'no'}. Passed: "
        f"{'yes' if report['passed'] else 'no'}.",
    ]
    if report["curve"]:
        lines += ["", "Seed 0, test quality against training minutes (each snapshot at the "
                  "threshold its own weights choose on the training-set images):", "",
                  "| step | training minutes | threshold | AUC-ROC | F1 |",
                  "|---:|---:|---:|---:|---:|",
                  *(f"| {c['step']} | {c['minutes']:.2f} | {c['threshold']:.3f} | "
                    f"{c['auc_roc']:.4f} | {c['f1']:.4f} |" for c in report["curve"])]
    lines += ["", "Test-set evaluations made by this benchmark (all of them):", "",
              "| date | code | config | seed | purpose |", "|---|---|---|---:|---|",
              *(f"| {e['date']} | {e['code']} | {e['config_key']} | {e['seed']} | "
                f"{e['purpose']} |" for e in report["test_evaluations"])]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
