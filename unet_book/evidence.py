"""The studies' results as the book shows them: tables, verdicts, curves, and their provenance.

The chapters never train a study: they read ``benchmarks/results/studies/<name>.json``
(:mod:`unet_book.studies`) and show the cells made by the *current* code on the *current*
data (their fingerprints, :mod:`unet_train.provenance`). When only cells of other code exist,
they are shown marked as older results, with the code they came from; they are never shown as
current. Used in chapters 6, 7, 9 and 10.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from unet_book.studies import (
    CLAIMS,
    DIRECTION,
    MIN_VALIDATION_AUC,
    STUDIES_DIR,
    Claim,
    Study,
    Verdict,
    arm_summary,
    as_defined,
    budget_verdict,
    cell_metrics,
    failure,
    get_study,
    load_results,
    source_digest,
    verdicts,
)
from unet_book.tables import markdown_table
from unet_train.provenance import dataset_fingerprint, is_current

METRIC_NAMES = {"auc_roc": "AUC-ROC", "f1": "F1", "iou": "IoU",
                "outside_fov_positive": "share of outside-FOV pixels above the threshold",
                "rand_error": "Rand error (unthinned, at 0.5)",
                "variation_of_information": "VI (bits, unthinned, at 0.5)",
                "pixel_error": "pixel error", "val_auc_roc": "validation AUC-ROC",
                "val_f1": "validation F1", "v_rand": "V_rand (thinned)",
                "v_info": "V_info (thinned)", "v_rand_split": "V_rand split",
                "v_rand_merge": "V_rand merge", "v_info_split": "V_info split",
                "v_info_merge": "V_info merge", "warping_error": "warping error",
                "v_rand_best_on_test": "V_rand (thinned), best threshold chosen on the test "
                                       "slices"}


@dataclass(frozen=True)
class StudyView:
    """A study's cells as the book uses them."""

    study: Study
    cells: list[dict[str, Any]]  # the cells shown: the current code's, else the latest older
    current: bool  # whether ``cells`` are the current code's on the current data
    code: str  # the current code fingerprint
    data_key: str
    source: str  # "real" or "synthetic": the data the book would use now
    older: int  # cells of other code or data in the file
    step_times: dict[str, Any] = field(default_factory=dict)  # the equal-time ratio's record


def study_view(name: str, directory: Path = STUDIES_DIR, as_recorded: bool = False,
               ) -> StudyView:
    """The cells of study ``name`` to show (module docstring), each with the verdict of the
    failure rule (:func:`~unet_book.studies.failure`): a cell recorded before the rule
    existed is judged by it here, so a collapsed run is never averaged. Cells whose config is
    no longer the one the study defines (:func:`~unet_book.studies.as_defined`) are history,
    unless ``as_recorded`` (a superseded study, shown as it was measured)."""
    study = get_study(name)
    results = load_results(name, directory)
    fp = dataset_fingerprint(study.dataset)
    cells = [c if c.get("failed") or not (reason := failure(c)) else {**c, "failed": reason}
             for c in results.get("cells", [])]
    now = [c for c in cells if is_current(c["fingerprint"], fp)
           and (as_recorded or as_defined(study, c))]
    if now:
        return StudyView(study, now, True, fp["code"], fp["key"], fp["data"]["source"],
                         len(cells) - len(now), results.get("step_times") or {})
    latest = max((c["fingerprint"]["code"] for c in cells), default=None,
                 key=lambda code: max(c["date"] for c in cells
                                      if c["fingerprint"]["code"] == code))
    shown = [c for c in cells if c["fingerprint"]["code"] == latest]
    return StudyView(study, shown, False, fp["code"], fp["key"], fp["data"]["source"],
                     len(cells) - len(shown), results.get("step_times") or {})


def _fmt(value: float | None, digits: int = 4, sign: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _equal_time(view: StudyView) -> str:
    """Where an equal-time arm's steps came from: the step times stored with the study."""
    if not any(a.equal_time_with for a in view.study.arms):
        return ""
    record = view.step_times
    seconds = record.get("seconds") or {}
    if not seconds:
        return " (equal-time arms: their step-time ratio is not measured yet)"
    times = ", ".join(f"{arm} {t:.3f} s" for arm, t in seconds.items())
    return (f" (equal-time arms: steps from the step times {times}, measured on "
            f"{record.get('cpu', '?')} on {record.get('measured', '?')[:10]})")


def provenance_note(view: StudyView) -> str:
    """Markdown: which cells are shown, made by which code, when, on what, at what budget."""
    study, cells = view.study, view.cells
    total = cell_count(study)
    if not cells:
        return (f"**Study `{study.name}` has no cells yet** (`make study NAME={study.name}`); "
                f"its {total} cells are missing.")
    codes = sorted({c["fingerprint"]["code"] for c in cells})
    dates = sorted(c["date"] for c in cells)
    data = cells[0]["fingerprint"]["data"]
    kind = "real" if data["source"] == "real" else "SYNTHETIC stand-in"
    walls = [c["minutes"] for c in cells if c.get("minutes")]
    norm = [c["normalised_minutes"] for c in cells if c.get("normalised_minutes")]
    text = (f"Study `{study.name}`: {len(cells)} of {total} cells; code "
            f"`{', '.join(codes)}` on {kind} {study.dataset} data (`{data['digest']}`), "
            f"trained {dates[0][:16]} to {dates[-1][:16]} on {_machines(cells)}; "
            f"{study.steps} steps per cell{_equal_time(view)}, {np.median(walls):.1f} min "
            f"of training per cell (median; {np.median(norm):.1f} normalised minutes).")
    if not view.current:
        text = (f"**Older result**: these cells were made by code `{', '.join(codes)}`, on "
                f"other data or with another recipe than the study defines today; the current "
                f"code is `{view.code}` (data key `{view.data_key}`). "
                f"Rerun `make study NAME={study.name}` to refresh them. " + text)
    elif view.source == "synthetic":
        text += (f" This build has only the synthetic stand-in for {study.dataset}; the cells "
                 "shown were made on the real data by the current code.")
    return text


def cell_count(study: Study) -> int:
    """The cells a study declares: arms x seeds (x folds)."""
    return len(study.arms) * len(study.seeds) * max(1, study.folds)


def failure_rule() -> str:
    """Markdown: the failure rule with its numbers (:func:`~unet_book.studies.failure`)."""
    return ("**The failure rule**, fixed before the runs: a cell has failed when its training "
            "stopped on a non-finite loss, when its last logged training loss is not below its "
            "first, or when its last validation AUC is below "
            f"{MIN_VALIDATION_AUC} (no usable ranking of the pixels, e.g. a constant output).")


def failed_note(view: StudyView) -> str:
    """Markdown: the failed cells (:func:`~unet_book.studies.failure`) and why, or ''."""
    failed = [c for c in view.cells if c.get("failed")]
    if not failed:
        return ""
    items = "; ".join(f"`{c['arm']}` seed {c['seed']}"
                      + ("" if c.get("fold") is None else f" fold {c['fold']}")
                      + f": {c['failed']}" for c in failed)
    return (f"**{len(failed)} failed cell(s)**, by the failure rule fixed before the runs, "
            f"shown here and never averaged or paired: {items}.")


def reweighting_note(view: StudyView, arm: str = "membrane_reweighted") -> str:
    """Markdown: the control arm's membrane factor and loss shares, from its cells' records
    (computed from each cell's training labels), or ''."""
    records = [c["class_reweighting"] for c in view.cells
               if c["arm"] == arm and c.get("class_reweighting")]
    if not records:
        return ""
    factor = [r["factor"] for r in records]
    target = [r["share_target"] for r in records]
    balanced = [r["share_balanced"] for r in records]
    return (f"The control `{arm}`: the class-balance weight of the membranes times "
            f"{min(factor):.2f} to {max(factor):.2f} (per fold, from its training labels), "
            f"which moves the membranes' share of the summed loss weight from "
            f"{100 * np.mean(balanced):.0f} % (class balance alone) to "
            f"{100 * min(target):.1f}-{100 * max(target):.1f} %, the share the weight map "
            f"with $w_0 = 10$ gives them on the same labels ({len(records)} cells).")


def redefined_note(name: str, arm: str, directory: Path = STUDIES_DIR) -> str:
    """Markdown: the cells of ``arm`` trained with an earlier recipe than the study defines
    today (history, not averaged), how many failed and with which learning rate, or ''."""
    study = get_study(name)
    old = [c for c in load_results(name, directory).get("cells", [])
           if c["arm"] == arm and not as_defined(study, c)]
    if not old:
        return ""
    failed = [c for c in old if c.get("failed") or failure(c)]
    rates = sorted({c["config"]["lr"] for c in old})
    now = study.config(arm, study.seeds[0], fold=study.fold_ids[0]).lr
    return (f"The arm `{arm}` was first trained with learning rate "
            f"{', '.join(f'{r:g}' for r in rates)}: {len(failed)} of its {len(old)} cells "
            f"failed by the failure rule; it now trains with {now:g} (the `paper` profile's "
            f"rate over the mean weight of its weighted loss), and those cells are kept as "
            f"history only.")


def superseded_note(claim: Claim, view: StudyView) -> str:
    """Markdown: why an older study's verdict on ``claim`` no longer stands."""
    return (f"**Superseded** (study `{view.study.name}`, kept for the record): this verdict "
            f"on {claim.key} is replaced by the study `{claim.study}` above, because "
            f"{claim.why_superseded}.")


def _minutes(cells: Sequence[dict[str, Any]]) -> str:
    """Mean training minutes per cell, wall and normalised (wall x the machine's matmul
    GFLOP/s / 400): cells of one arm may come from machines of different speeds."""
    wall = [c["minutes"] for c in cells if c.get("minutes")]
    norm = [c["normalised_minutes"] for c in cells if c.get("normalised_minutes")]
    if not wall:
        return ""
    return f"{np.mean(wall):.1f}" + (f" ({np.mean(norm):.1f})" if norm else "")


def _machines(cells: Sequence[dict[str, Any]]) -> str:
    """The CPUs the cells ran on, shortened to vendor and family (``AMD EPYC``)."""
    names = sorted({" ".join(c["machine"]["cpu"].replace("(R)", "").split()[:2])
                    for c in cells if c.get("machine")})
    return ", ".join(names)


def arms_table(view: StudyView, metrics: Sequence[str] | None = None) -> str:
    """Markdown: per arm, the number of seeds and mean ± sd of each metric, steps, minutes
    (wall and normalised) and the machines the cells ran on."""
    study = view.study
    metrics = list(metrics or (study.metric, *study.secondary))
    rows = []
    for arm in study.arms:
        mine = [c for c in view.cells if c["arm"] == arm.name]
        row: list[Any] = [arm.label]
        n = 0
        for m in metrics:
            n_m, mean, sd = arm_summary(view.cells, arm.name, m)
            n = max(n, n_m)
            row.append("" if mean is None else
                       f"{mean:.4f}" + ("" if sd is None else f" ± {sd:.4f}"))
        steps = sorted({c["steps"] for c in mine})
        failed = [c for c in mine if c.get("failed") or c.get("metrics") is None]
        row[1:1] = [f"{n}" + (f" (+{len(failed)} failed)" if failed else "")]
        row += [", ".join(map(str, steps)) or "", _minutes(mine), _machines(mine)]
        rows.append(row)
    header = ["arm", "cells", *(f"{METRIC_NAMES.get(m, m)}, mean ± sd" for m in metrics),
              "steps", "minutes, wall (normalised)", "machine"]
    return markdown_table(header, rows, align="l" + "r" * (len(header) - 2) + "l")


def samples_text(v: Verdict) -> str:
    """The paired samples of a verdict, with how many of the planned ones have run while the
    study is partly run (the stopping rule: its verdict is then incomplete)."""
    if v.planned and not v.run:
        return f"0 (of {v.planned} planned)"
    if v.planned and v.run < v.planned:
        return f"{v.n} (interim: {v.run} of {v.planned} run)"
    return f"{v.n}"


def comparison_rows(view: StudyView, claims: Sequence[str] | None = None,
                    metric: str | None = None) -> list[Verdict]:
    found = verdicts(view.study, view.cells, metric)
    return [v for v in found if claims is None or v.comparison.claim in claims]


def comparisons_table(view: StudyView, claims: Sequence[str] | None = None,
                      metric: str | None = None) -> str:
    """Markdown: per comparison, n, the mean paired difference (the paper's arm minus the
    other), its 95 % interval and the verdict."""
    rows = []
    for v in comparison_rows(view, claims, metric):
        better = "higher" if DIRECTION[v.metric] > 0 else "lower"
        rows.append([v.comparison.claim, v.comparison.statement, samples_text(v),
                     _fmt(v.mean, sign=True) + ("" if v.sd is None else f" (sd {v.sd:.4f})"),
                     "n/a" if v.low is None else f"[{v.low:+.4f}, {v.high:+.4f}]",
                     f"**{v.verdict}**", f"{METRIC_NAMES.get(v.metric, v.metric)} ({better} "
                     "is the paper's side)"])
    pairs = "pairs (seed, fold)" if view.study.folds else "seeds"
    return markdown_table(["claim", "comparison (the paper's arm first)", pairs,
                           "mean difference", "95 % interval", "verdict", "metric"], rows,
                          align="llrrrll")


def plot_curves(view: StudyView, arms: Sequence[str] | None = None,
                metric: str = "val_auc_roc", ax: plt.Axes | None = None) -> plt.Figure:
    """The validation metric against steps: per arm, the mean over its seeds (line) and the
    range (band)."""
    study = view.study
    arms = list(arms or [a.name for a in study.arms])
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
    else:
        fig = ax.figure
    for name in arms:
        curves = [c["curve"] for c in view.cells if c["arm"] == name and c.get("curve")]
        curves = [[h for h in cv if metric in h] for cv in curves]
        curves = [cv for cv in curves if cv]
        if not curves:
            continue
        steps = sorted({h["step"] for cv in curves for h in cv})
        table = np.full((len(curves), len(steps)), np.nan)
        for i, cv in enumerate(curves):
            for h in cv:
                table[i, steps.index(h["step"])] = h[metric]
        mean = np.nanmean(table, axis=0)
        line, = ax.plot(steps, mean, marker="o", ms=3, lw=1.5,
                        label=f"{study.arm(name).label} ({len(curves)} seeds)")
        ax.fill_between(steps, np.nanmin(table, 0), np.nanmax(table, 0), alpha=0.15,
                        color=line.get_color())
    ax.set_xlabel("training step")
    ax.set_ylabel(METRIC_NAMES.get(metric, metric))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no cells yet", transform=ax.transAxes, ha="center", va="center",
                color="0.4")
    return fig


def claims_table(views: dict[str, StudyView]) -> str:
    """Markdown: every comparison of every claim, its verdict at the study's steps and at
    twice them (C1, C2), and the overall verdict (:func:`~unet_book.studies.budget_verdict`)."""
    rows = []
    for claim in CLAIMS.values():
        doubled = views.get(claim.doubled) if claim.doubled else None
        for v in comparison_rows(views[claim.study], claims=(claim.key,)):
            twice = None if doubled is None else next(
                (w for w in comparison_rows(doubled, claims=(claim.key,))
                 if w.comparison == v.comparison), None)
            overall = v.verdict if twice is None else budget_verdict(v.verdict, twice.verdict)
            rows.append([claim.key, claim.section, v.comparison.statement,
                         f"`{claim.study}`", samples_text(v), v.verdict,
                         "not run at twice the steps" if claim.doubled is None else
                         "n/a" if twice is None else f"{twice.verdict} ({twice.n} seeds)",
                         f"**{overall}**"])
    return markdown_table(["claim", "section", "comparison (the paper's arm first)", "study",
                           "paired samples", "verdict", "at twice the steps", "overall"],
                          rows, align="llllrlll")


GPU_CELL = "gpu_paper_isbi.json"  # written by benchmarks/gpu_paper_isbi.py on a CUDA machine


def gpu_cell_note(directory: Path = STUDIES_DIR) -> str:
    """Markdown: the stated GPU cell beside C4 (the ``paper`` profile at full width on ISBI
    2012, one seed, a time budget; outside the verdicts), or that there is none. A cell made
    from other sources than the current ones is marked with the code version it came from."""
    path = directory / GPU_CELL
    if not path.exists():
        return ("**No GPU cell yet.** The paper's recipe at full width (64 channels) needs a "
                "CUDA machine; none has run `bash benchmarks/gpu_check.sh DATA_DIR` "
                "(`benchmarks/gpu_paper_isbi.py`) for this project so far.")
    cell = json.loads(path.read_text())
    dev = cell.get("device", {})
    where = dev.get("gpu") or dev.get("device", "?")
    m = cell.get("metrics") or {}
    data = cell["fingerprint"]["data"]
    kind = "real" if data["source"] == "real" else "SYNTHETIC stand-in"
    text = (f"GPU cell, outside the verdicts (one seed, a time budget, another machine): "
            f"{cell.get('label', cell['arm'])}, seed {cell['seed']}, {cell['steps']} steps in "
            f"{cell['minutes']:.1f} min of training on {where} ({dev.get('precision', '?')}, "
            f"torch {dev.get('torch', '?')}), {kind} ISBI 2012 data, slices 25-29 held out: "
            + (f"thinned V_rand {_fmt(m['v_rand'])} at the threshold chosen on the validation "
               f"slices, warping error {_fmt(m.get('warping_error'), 6)}, " if "v_rand" in m
               else "") +
            f"Rand error (unthinned, at 0.5) {_fmt(m.get('rand_error'))}, VI "
            f"{_fmt(m.get('variation_of_information'))} bits, pixel error "
            f"{_fmt(m.get('pixel_error'))}; {cell['date']}, sources "
            f"`{cell['source_digest']}` (code version `{cell.get('code_version', '?')}`).")
    if cell.get("quick"):
        text = "**A dry run, not a result** (`--quick`: 4 steps at width 8). " + text
    if cell["source_digest"] != (current := source_digest()):
        text = (f"**Older result**: made from other sources than the current ones "
                f"(`{current}`). " + text)
    return text


def show_markdown(*parts: str) -> None:
    """Display each non-empty Markdown part (a note that does not apply is ``""``)."""
    for part in parts:
        if part:
            display(Markdown(part))


def view_line(view: StudyView) -> str:
    """One line: how many cells a study shows and whose they are."""
    if not view.cells:
        return f"{view.study.name}: no cells yet"
    whose = "the current code" if view.current else "OLDER code (marked where shown)"
    return (f"{view.study.name}: {len(view.cells)} cells by {whose}; {view.older} cells of "
            "other code or data kept in the file as history")


def live_cell_note(run: Any, study_name: str, arm: str, directory: Path = STUDIES_DIR) -> str:
    """Markdown: a chapter's live run beside the study's record of the same cell and the
    spread of that arm over its seeds (the study's metric, and F1 or the secondary metric).

    The live run is the cell when its config is the cell's config (same key); otherwise, as
    under the smoke profile or with a changed parameter, the note names the fields in which
    it differs and shows only the arm's spread."""
    view = study_view(study_name, directory)
    study, seed = view.study, run.config.seed
    cell_cfg = study.config(arm, seed=seed)
    shown = [study.metric, *(("f1",) if study.dataset == "drive" else study.secondary[:1])]
    summaries = [(m, *arm_summary(view.cells, arm, m)) for m in shown]
    spread = [f"{METRIC_NAMES[m]} {_fmt(mean)} ± {_fmt(sd)}" for m, n, mean, sd in summaries
              if n]
    if spread:
        arm_text = (f"The arm `{arm}` over its {summaries[0][1]} seeds in the study: "
                    f"{', '.join(spread)}"
                    + ("" if view.current else " (**older result**, other code or data)") + ".")
    else:
        arm_text = f"The study has no cells of the arm `{arm}` yet."
    if run.config.key() != cell_cfg.key():
        ours, theirs = run.config.to_dict(), cell_cfg.to_dict()
        fields = [f"{k}={ours[k]!r} (cell: {theirs[k]!r})" for k in ours
                  if ours[k] != theirs.get(k)]
        return (f"This run is not the cell (`{arm}`, seed {seed}) of the study "
                f"`{study_name}`: it differs in {', '.join(fields)}. {arm_text}")
    live = cell_metrics(run.metrics)
    values = ", ".join(f"{METRIC_NAMES[m]} **{_fmt(live.get(m))}**" for m in shown)
    text = (f"This run is the cell (`{arm}`, seed {seed}) of the study `{study_name}`, "
            f"config `{cell_cfg.key()}`, trained again by this build: {values}. ")
    record = [c for c in view.cells if c["arm"] == arm and c["seed"] == seed]
    if record:
        c = record[-1]
        where = " ".join(c["machine"]["cpu"].replace("(R)", "").split()[:2])
        diffs = ", ".join(
            f"{METRIC_NAMES[m]} {_fmt(c['metrics'].get(m))} (this build minus the record "
            f"{_fmt(live[m] - c['metrics'][m], sign=True)})" for m in shown
            if live.get(m) is not None and c["metrics"].get(m) is not None)
        text += (f"The study's record of the same cell ({where}, {c['date'][:10]}, code "
                 f"`{c['fingerprint']['code']}`): {diffs}. The two are two trainings of one "
                 "config by one code; they need not agree bit for bit"
                 + (" (`deterministic` is off)" if not run.config.deterministic else "")
                 + ". ")
    return text + arm_text


#: The FOV rule of ``drive_outside_fov`` (its notes): the outside share that keeps the change.
OUTSIDE_FOV_TARGET = 0.01


def fov_rule_note(view: StudyView) -> str:
    """Markdown: the decision of ``drive_outside_fov``'s rule, fixed before the runs: keep the
    loss that counts outside-FOV pixels as background when its AUC verdict is not
    *contradicted* and its share of outside-FOV test pixels above the threshold is under
    :data:`OUTSIDE_FOV_TARGET` in every seed."""
    rows = comparison_rows(view)
    arm = rows[0].comparison.paper if rows else "outside_background"
    shares = [c["metrics"]["outside_fov_positive"] for c in view.cells
              if c["arm"] == arm and c.get("metrics") and not c.get("failed")]
    others = [c["metrics"]["outside_fov_positive"] for c in view.cells
              if c["arm"] != arm and c.get("metrics") and not c.get("failed")
              and "outside_fov_positive" in c["metrics"]]
    complete = len(shares) == len(view.study.seeds) and rows and rows[0].verdict != "incomplete"
    if not complete:
        return (f"**The rule has not decided yet**: {len(shares)} of {len(view.study.seeds)} "
                "seeds of the changed arm, and the comparison is incomplete.")
    verdict = rows[0].verdict
    under = max(shares) < OUTSIDE_FOV_TARGET
    kept = verdict != "contradicted" and under
    spread = (f"{100 * min(shares):.3f} % to {100 * max(shares):.3f} % of the outside-FOV "
              f"test pixels above the threshold over {len(shares)} seeds")
    if others:
        spread += (f" (with the FOV ignored: {100 * min(others):.1f} % to "
                   f"{100 * max(others):.1f} %)")
    return (f"**{'Kept' if kept else 'Not kept'}**: the AUC verdict inside the FOV is "
            f"*{verdict}* and the change gives {spread}, "
            f"{'under' if under else 'not under'} the {100 * OUTSIDE_FOV_TARGET:g} % of the "
            "rule.")


def arm_pairs_table(pairs: Sequence[tuple[str, str]], metrics: Sequence[str],
                    directory: Path = STUDIES_DIR) -> str:
    """Markdown: one row per ``(study, arm)``: its cells, steps and mean ± sd of ``metrics``
    (an arm set beside its counterpart in another study)."""
    rows = []
    for name, arm in pairs:
        view = study_view(name, directory)
        mine = [c for c in view.cells if c["arm"] == arm]
        row: list[Any] = [f"`{name}`, arm `{arm}`", str(len(mine))]
        for m in metrics:
            _, mean, sd = arm_summary(view.cells, arm, m)
            row.append("n/a" if mean is None else
                       f"{mean:.4f}" + ("" if sd is None else f" ± {sd:.4f}"))
        row.append(", ".join(map(str, sorted({c["steps"] for c in mine}))))
        rows.append(row)
    header = ["study and arm", "cells", *(f"{METRIC_NAMES.get(m, m)}, mean ± sd"
                                         for m in metrics), "steps"]
    return markdown_table(header, rows, align="lr" + "r" * len(metrics) + "r")
