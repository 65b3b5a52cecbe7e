"""Run one evidence study (unet_book.studies): the missing cells, resumably, one run folder each.

    python benchmarks/study.py drive_recipe              # train every missing cell
    python benchmarks/study.py drive_recipe --cells      # what is done, what is missing
    python benchmarks/study.py isbi_recipe --arms w0_10,w0_0 --seeds 0,1,2
    python benchmarks/study.py isbi_cv --folds 0,1       # some folds of a cross-validation
    python benchmarks/study.py isbi_cv --rescore         # score every cell again

(``make study NAME=drive_recipe``; ``make study NAME=drive_recipe CELLS=1`` lists;
``RESCORE=1`` rescores.) A cell is one (arm, seed), or (arm, seed, fold) in a cross-validated
study, trained for the study's steps (an equal-time arm: steps from the step-time ratio stored
in the results file, measured once, interleaved, the first time it is needed). After every
cell, ``benchmarks/results/studies/<name>.json`` is rewritten (atomically) with the cell: arm,
seed, fold, steps, wall and normalised minutes, the fingerprint of code and data, the machine,
the date, the test metrics (:mod:`unet_book.scoring`), the validation curve and, when the
failure rule (:func:`unet_book.studies.failure`) says so, why it failed. A cell is done when
the results file holds it for the *current* code and data; cells of other code stay in the
file as history. Run folders are ``$UNET_RUNS_DIR/study-<name>-<arm>-s<seed>[-f<fold>]-<key>``,
so a killed study resumes its cell from the last checkpoint; they keep ``model.pt`` and the
probability maps that ``--rescore`` reads. Ctrl-C (or SIGTERM) during a cell's training writes
its checkpoint and stops; during its final evaluation or scoring, the study records the cell
and then stops (exit code 128 + the signal's number either way).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from unet_book.scoring import evaluated_probabilities, score_cell
from unet_book.studies import (
    STUDIES,
    Study,
    current_cells,
    equal_time_steps,
    failure,
    get_study,
    load_results,
    result_fields,
    results_path,
)
from unet_core.data.splits import load_data
from unet_train.atomic import write_json
from unet_train.compute import (
    REFERENCE_GFLOPS,
    code_version,
    matmul_gflops,
    normalised_minutes,
    run_dtype,
    training_dtype,
)
from unet_train.config import TrainConfig
from unet_train.devices import cpu_kind, processor_name
from unet_train.faults import TrainingDiverged, TrainingInterrupted, signals_to_flag
from unet_train.identity import study_run_name
from unet_train.provenance import dataset_fingerprint
from unet_train.recipe import class_reweighting, instance_labels
from unet_train.runs import ENVIRONMENT, runs_dir
from unet_train.train import seconds_per_step, train


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _machine(gflops: float, dtype: torch.dtype) -> dict[str, Any]:
    return {"cpu": processor_name(), "cpu_kind": cpu_kind(), "threads": torch.get_num_threads(),
            "matmul_dtype": str(dtype).removeprefix("torch."), "matmul_gflops": round(gflops, 1)}


def _save(study: Study, results: dict[str, Any], directory: Path) -> None:
    results["study"] = study.name
    results["updated"] = _now()
    results["definition"] = {
        "title": study.title, "dataset": study.dataset, "base": dict(study.base),
        "steps": study.steps, "seeds": list(study.seeds), "folds": study.folds,
        "metric": study.metric, "secondary": list(study.secondary),
        "supersedes": list(study.supersedes),
        "arms": {a.name: {"label": a.label, "changes": dict(a.changes),
                          "equal_time_with": a.equal_time_with} for a in study.arms},
        "comparisons": [{"claim": c.claim, "statement": c.statement, "paper": c.paper,
                         "other": c.other} for c in study.comparisons],
        "notes": study.notes,
    }
    path = results_path(study.name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, results, indent=1)


def step_times(study: Study, results: dict[str, Any], arms: list[str], directory: Path,
               ) -> dict[str, float]:
    """Seconds per step of the arms that equal-time arms need, measured once (interleaved,
    the median of two rounds) and stored in the results file."""
    stored = results.setdefault("step_times", {})
    need = sorted({n for a in arms if (arm := study.arm(a)).equal_time_with
                   for n in (a, arm.equal_time_with)} - set(stored.get("seconds", {})))
    if not need:
        return stored.get("seconds", {})
    print(f"measuring step times of {', '.join(need)} (keep the machine quiet)", flush=True)
    rounds: dict[str, list[float]] = {n: [] for n in need}
    for _ in range(2):  # interleaved, so that a load change affects both alike
        for name in need:
            rounds[name].append(seconds_per_step(study.config(name, seed=0,
                                                              fold=study.fold_ids[0])))
    seconds = {**stored.get("seconds", {}), **{n: min(v) for n, v in rounds.items()}}
    stored.update({"seconds": seconds, "measured": _now(), "cpu": processor_name(),
                   "threads": torch.get_num_threads(), "code": code_version(),
                   "load_average_1min": round(os.getloadavg()[0], 2)})
    _save(study, results, directory)
    for name in need:
        print(f"  {name}: {seconds[name]:.3f} s/step", flush=True)
    return seconds


def cell_id(cell: dict[str, Any]) -> tuple[str, int, int | None]:
    return cell["arm"], cell["seed"], cell.get("fold")


def cell_table(study: Study, results: dict[str, Any], code: str, key: str) -> str:
    current = current_cells(results, code, key, study)
    done = {cell_id(c) for c in current}
    failed = {cell_id(c) for c in current if c.get("failed")}
    older = {cell_id(c) for c in results.get("cells", [])} - done
    columns = [(s, f) for s in study.seeds for f in study.fold_ids]
    total = len(study.arms) * len(columns)
    width = 9  # "missing" and "failed" fit, with room
    heads = [f"s{s}" + ("" if f is None else f"f{f}") for s, f in columns]
    lines = [f"study {study.name}: {len(done)} of {total} cells done by the current code "
             f"({code}, data {key}), {len(failed)} failed",
             f"{'arm':<30}" + "".join(f"{h:<{width}}" for h in heads)]
    for arm in study.arms:
        row = []
        for s, f in columns:
            ident = (arm.name, s, f)
            row.append("failed" if ident in failed else "done" if ident in done else
                       "older" if ident in older else "missing")
        lines.append(f"{arm.name:<30}" + "".join(f"{r:<{width}}" for r in row))
    return "\n".join(lines)


def reweighting_record(cfg: TrainConfig) -> dict[str, float] | None:
    """The class reweighting of a control arm, computed from its training labels."""
    if not cfg.class_reweight_w0:
        return None
    train = load_data(cfg).train
    record = class_reweighting([instance_labels(e, cfg) for e in train],
                               [e.fov for e in train], cfg)
    return {k: round(v, 6) for k, v in record.items()}


def score(cell: dict[str, Any], cfg: TrainConfig,
          computed: Mapping[str, Sequence[Any]] | None = None) -> None:
    """Score a finished cell from its run folder (:mod:`unet_book.scoring`; ``computed``: the
    probability maps its training already computed, written instead of predicted again) and
    apply the failure rule; the scores join the metrics training reported."""
    scored = score_cell(runs_dir() / cell["run"], cfg, cell["threshold"], computed=computed)
    cell["metrics"] = {**(cell.get("metrics") or {}), **scored["metrics"]}
    if "challenge" in scored:
        cell["challenge"] = scored["challenge"]
    cell["scored"] = _now()


def run_cell(study: Study, arm: str, seed: int, fold: int | None, steps: int, key: str,
             rate: Callable[[torch.dtype], float]) -> tuple[dict[str, Any], int | None]:
    """Train one cell and score it; its normalised minutes use the matmul rate (``rate``) of
    the precision the run trained in (its ``environment.json``). Returns the cell and the
    signal that arrived after its last step (``RunResult.late_signal``), if any: the caller
    records the cell, then stops."""
    cfg = study.config(arm, seed, steps, fold)
    run_dir = runs_dir() / study_run_name(study.name, arm, seed, fold, key)
    where = "" if fold is None else f" fold {fold}"
    print(f"[{_now()}] {study.name}: {arm} seed {seed}{where}, {steps} steps -> {run_dir}",
          flush=True)
    t0 = time.perf_counter()
    cell: dict[str, Any] = {"arm": arm, "seed": seed, "fold": fold, "steps": steps,
                            "config": cfg.to_dict(), "config_key": cfg.key(),
                            "run": run_dir.name}
    if (record := reweighting_record(cfg)) is not None:
        cell["class_reweighting"] = record
    try:
        result = train(cfg, run_dir, progress=False, log=lambda m: print("  " + m, flush=True))
    except TrainingDiverged as err:
        dtype = training_dtype(cfg)
        cell.update({"metrics": None, "error": str(err).split(";")[0], "minutes": None,
                     "fingerprint": dataset_fingerprint(cfg.dataset),
                     "machine": _machine(rate(dtype), dtype)})
        cell["failed"] = failure(cell)
        return cell, None
    wall = (time.perf_counter() - t0) / 60
    dtype = run_dtype(json.loads((result.run_dir / ENVIRONMENT).read_text()))
    gflops = rate(dtype)
    cell.update(result_fields(result))
    cell.update({"wall_minutes": round(wall, 5),
                 "normalised_minutes": round(normalised_minutes(result.train_minutes, gflops), 5),
                 "machine": _machine(gflops, dtype)})
    score(cell, cfg, evaluated_probabilities(result))  # each image predicted once per cell
    if reason := failure(cell):
        cell["failed"] = reason
    return cell, result.late_signal


def rescore(study: Study, directory: Path) -> int:
    """Score every cell of the results file again from its run folder (cells whose folder is
    not on this machine are kept as they are, and counted)."""
    results = load_results(study.name, directory)
    done = missing = 0
    for cell in results.get("cells", []):
        if cell.get("metrics") is None or not (runs_dir() / cell["run"] / "model.pt").exists():
            missing += cell.get("metrics") is not None
            continue
        score(cell, TrainConfig.from_dict(cell["config"]))
        cell.pop("failed", None)
        if reason := failure(cell):
            cell["failed"] = reason
        done += 1
        print(f"rescored {cell['run']}: {study.metric} = {cell['metrics'].get(study.metric)}",
              flush=True)
    _save(study, results, directory)
    print(f"{study.name}: {done} cells rescored, {missing} without a run folder here (kept)")
    return 0


def _integers(option: str, text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise ValueError(f"{option} expects comma-separated integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", help=f"the study: one of {', '.join(STUDIES)}")
    parser.add_argument("--cells", action="store_true", help="list done and missing cells")
    parser.add_argument("--arms", default="", help="comma-separated arms (default: all)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the "
                                                    "study's)")
    parser.add_argument("--folds", default="", help="comma-separated folds of a "
                        "cross-validated study (default: all)")
    parser.add_argument("--rescore", action="store_true",
                        help="score every cell again from its run folder (no training)")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="where the results files are (default benchmarks/results/studies)")
    args = parser.parse_args(argv)
    try:
        study = get_study(args.name)
        arms = [a for a in args.arms.split(",") if a] or [a.name for a in study.arms]
        for a in arms:
            study.arm(a)
        seeds = _integers("--seeds", args.seeds) if args.seeds else list(study.seeds)
        folds: list[int | None] = list(study.fold_ids)
        if args.folds:
            if not study.folds:
                raise ValueError(f"--folds: study {study.name!r} is not cross-validated")
            folds = list(_integers("--folds", args.folds))
            bad = [f for f in folds if f not in study.fold_ids]
            if bad:
                raise ValueError(f"--folds: {bad} not among the folds 0..{study.folds - 1}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    directory = args.results_dir or results_path(study.name).parent
    results = load_results(study.name, directory)
    fp = dataset_fingerprint(study.dataset)
    code, key = fp["code"], fp["key"]
    if args.cells:
        print(cell_table(study, results, code, key))
        return 0
    if args.rescore:
        return rescore(study, directory)
    if fp["data"]["source"] != "real":
        print(f"note: {study.dataset} is the synthetic stand-in here: these cells are not "
              "results on the real data", flush=True)
    # measured by each cell just after its training (a rate measured once for a study of
    # hours would put a moment's load, another process, into every cell after it)
    def rate(dtype: torch.dtype) -> float:
        gflops = matmul_gflops(dtype)
        print(f"matmul {gflops:.0f} GFLOP/s in {dtype} (a normalised minute is "
              f"{REFERENCE_GFLOPS:.0f} GFLOP/s)", flush=True)
        return gflops

    done = {cell_id(c) for c in current_cells(results, code, key, study)}
    todo = [(a, s, f) for s in seeds for f in folds for a in arms if (a, s, f) not in done]
    if not todo:
        print(cell_table(study, results, code, key))
        return 0
    seconds = step_times(study, results, [a for a, _, _ in todo], directory)
    # a signal between the cells' training (while a cell is scored, or after the last step of
    # its run) stops the study once that cell is recorded; one during training stops it at once
    with signals_to_flag() as caught:
        for arm, seed, fold in todo:
            steps = equal_time_steps(study, study.arm(arm), seconds)
            try:
                cell, late = run_cell(study, arm, seed, fold, steps, key, rate)
            except TrainingInterrupted as stop:  # the checkpoint is written: rerun to resume
                print(f"interrupted: {stop}", file=sys.stderr)
                return stop.exit_code
            cell.update({"date": _now(), "code_version": code_version()})
            results = load_results(study.name, directory)  # another process may have added cells
            results["cells"] = [c for c in results.get("cells", [])
                                if not (cell_id(c) == (arm, seed, fold)
                                        and c["fingerprint"]["code"] == code
                                        and c["fingerprint"]["key"] == key
                                        and c.get("config_key") == cell["config_key"])] + [cell]
            _save(study, results, directory)
            metric = (cell["metrics"] or {}).get(study.metric)
            failed = f" (failed: {cell['failed']})" if cell.get("failed") else ""
            print(f"  -> {study.metric} = {metric}{failed}", flush=True)
            if late is not None:  # it came during the cell's final evaluation, in train's handler
                caught.setdefault("signum", late)
            if "signum" in caught:
                name = signal.Signals(caught["signum"]).name
                print(f"interrupted: {name} received: stopped after this cell, which is "
                      "recorded. Run the same command again to go on.", file=sys.stderr)
                return 128 + caught["signum"]
    print(cell_table(study, results, code, key))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
