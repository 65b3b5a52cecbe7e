"""The book's experiments: notebook parameters, load-or-train, and runs with a time budget.

Notebooks never train directly: they build a :class:`~unet_core.config.TrainConfig` from their
papermill parameters (:func:`notebook_config`) and call :func:`load_or_train` or
:func:`train_for_minutes`. A finished run is found again by its directory name, which contains
the hash of its config, so rebuilding the book with nothing changed loads every run instead of
training it again, and a run killed mid-way resumes from its last checkpoint.

The profile comes from the ``UNET_PROFILE`` environment variable when a notebook does not set
it: CI and ``make test`` set ``UNET_PROFILE=smoke`` (seconds per run), the book and papermill
runs use the default ``cpu`` profile.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet_core.config import PROFILES, TrainConfig, check_names
from unet_core.curves import save_curves
from unet_core.provenance import dataset_fingerprint, describe
from unet_core.recipe import build_model
from unet_core.runs import CHECKPOINT, RunResult, default_run_name, finished_run, runs_dir
from unet_core.train import TrainingDiverged, seconds_per_step, train
from unet_core.validation import check_choice

PROFILE_ENV = "UNET_PROFILE"
#: Notebook parameters that are not TrainConfig fields.
NOTEBOOK_ONLY = ("run_name",)
#: Fields a time budget sets; they do not identify a budgeted run.
BUDGET_FIELDS = ("steps", "eval_every", "time_budget_min")


def default_profile(fallback: str = "cpu") -> str:
    """``$UNET_PROFILE`` if set (validated), else ``fallback``."""
    profile = os.environ.get(PROFILE_ENV, "").strip() or fallback
    check_choice(PROFILE_ENV, profile, tuple(PROFILES))
    return profile


def collect_parameters(
    namespace: Mapping[str, Any], before: Iterable[str], extra: Iterable[str] = ()
) -> dict[str, Any]:
    """The papermill parameters of a notebook, checked by name.

    ``before`` are the names that existed before the parameters cell. papermill injects its
    values as a cell of assignments after the parameters cell; every name defined since must
    be a ``TrainConfig`` field, ``run_name`` or one of the notebook's ``extra`` parameters.
    Anything else (a misspelt ``-p profil paper``) raises ``ValueError`` listing the valid
    parameters, instead of being silently ignored.
    """
    before, extra = set(before), tuple(extra)
    new = [k for k in namespace if k not in before and not k.startswith("_")]
    valid = set(extra) | set(TrainConfig.field_names()) | set(NOTEBOOK_ONLY)
    unknown = {k: namespace[k] for k in new if k not in valid}
    if unknown:
        try:
            check_names(unknown)
        except ValueError as err:
            more = ", ".join((*NOTEBOOK_ONLY, *extra))
            raise ValueError(f"{err}; this notebook also takes: {more}") from None
    return {k: namespace[k] for k in new if k in valid}


def notebook_config(params: Mapping[str, Any], **fixed: Any) -> TrainConfig:
    """A config from notebook parameters (names that are not config fields are skipped).

    ``profile`` picks the profile (default ``$UNET_PROFILE`` or ``cpu``), ``None`` values keep
    the profile's default, ``fixed`` are the notebook's own settings (parameters override
    them); the smoke profile keeps its own sizes and steps."""
    fields = set(TrainConfig.field_names())
    values = {k: v for k, v in params.items() if v is not None and k in fields}
    profile = values.pop("profile", None) or default_profile()
    overrides = {**fixed, **values}
    # the smoke profile keeps its tiny sizes: notebook-level sizes are for real profiles
    if profile == "smoke":
        for name in ("patch_size", "eval_tile", "steps", "base_channels", "depth",
                     "batch_size", "eval_every"):
            if name in fixed and name not in values:
                overrides.pop(name)
    return TrainConfig.from_profile(profile, **overrides)


# -- finding or training runs ------------------------------------------------------------------
def load_or_train(
    cfg: TrainConfig, run_name: str | None = None, *, progress: bool = True,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Load the finished run of ``cfg`` (``runs/<run_name>``, default named by the config's
    hash) or train it; an unfinished run resumes from its checkpoint."""
    run_dir = runs_dir() / (run_name or default_run_name(cfg))
    done = finished_run(run_dir, cfg, provenance=dataset_fingerprint(cfg.dataset))
    if done is not None:
        _loaded(done, log)
        return done
    return _train_with_curves(cfg, run_dir, progress=progress, log=log)


def _loaded(done: RunResult, log: Callable[[str], None]) -> None:
    finished = done.metrics.get("finished_at", "")
    log(f"loaded finished run {done.run_dir} ({done.steps} steps, {done.train_minutes:.1f} min "
        f"of training{', finished ' + finished if finished else ''}; "
        f"{describe(done.provenance)}); delete it to train again")


def _train_with_curves(cfg: TrainConfig, run_dir: Path, *, progress: bool,
                       log: Callable[[str], None]) -> RunResult:
    """:func:`unet_core.train.train`, then the run's ``curves.png``."""
    result = train(cfg, run_dir, progress=progress, log=log)
    save_curves(result.run_dir, result.history)
    return result


# -- runs with a time budget -------------------------------------------------------------------
def budgeted_run_name(cfg: TrainConfig, minutes: float) -> str:
    base = TrainConfig.from_dict({**cfg.to_dict(), "steps": 1, "eval_every": 0,
                                  "time_budget_min": 0.0})
    key = dataset_fingerprint(cfg.dataset)["key"]
    return f"{cfg.dataset}-{cfg.profile}-{base.key()}-{key}-{minutes:g}min"


def train_for_minutes(
    cfg: TrainConfig, minutes: float | None, run_name: str | None = None, *,
    evaluations: int = 6, progress: bool = True, log: Callable[[str], None] = print,
) -> RunResult:
    """Train ``cfg`` for about ``minutes`` of training time on this machine.

    The step time is measured first (a few steps, not kept) and ``steps`` set so that the
    learning-rate schedule ends within the budget; ``time_budget_min`` (1.2x the budget) caps
    the run if the machine slows down. The
    run is identified by the config *before* calibration plus the budget, so a rebuild finds
    it again. ``minutes=None`` keeps the config's fixed ``steps`` (the smoke profile).
    """
    if minutes is None:
        return load_or_train(cfg, run_name, progress=progress, log=log)
    if minutes <= 0:
        raise ValueError(f"minutes must be > 0 or None, got {minutes!r}")
    run_dir = runs_dir() / (run_name or budgeted_run_name(cfg, minutes))
    done = finished_run(run_dir, cfg, ignore=BUDGET_FIELDS,
                        provenance=dataset_fingerprint(cfg.dataset))
    if done is not None:
        _loaded(done, log)
        return done
    if (run_dir / CHECKPOINT).exists() and (run_dir / "config.json").exists():
        stored = json.loads((run_dir / "config.json").read_text())
        budget = {k: stored[k] for k in BUDGET_FIELDS}  # resume with the calibrated steps
    else:
        step_s = seconds_per_step(cfg)
        steps = max(1, int(minutes * 60 / step_s))
        budget = {"steps": steps, "eval_every": max(1, steps // evaluations),
                  "time_budget_min": 1.2 * float(minutes)}
        log(f"{step_s:.3f} s/step on this machine -> {steps} steps in {minutes:g} min")
    run_cfg = TrainConfig.from_dict({**cfg.to_dict(), **budget})
    return _train_with_curves(run_cfg, run_dir, progress=progress, log=log)


# -- the book's experiments --------------------------------------------------------------------
#: Minutes of training per ablation run in the book (the results chapter and the paper-vs-
#: implementation page must agree, so that the second finds the first's runs).
ABLATION_MINUTES = 1.5

#: The ISBI 2012 chapter: the paper's task with the paper's loss (Eq. 1 with the weight map of
#: Eq. 2), trained on slices 0-24, evaluated on the held-out slices 25-29.
ISBI_SETTINGS: dict[str, Any] = {
    "dataset": "isbi2012", "loss": "weighted_ce", "val_images": 0, "tune_threshold": False,
    "steps": 1200, "eval_every": 200,
}


def ablation_configs(base: TrainConfig) -> dict[str, TrainConfig]:
    """One config per deviation from the paper, each changing one field of ``base``.

    Valid padding keeps the *output* patch of ``base`` (the input grows by the context
    margin), and its evaluation tile is the smallest valid size at least as large as
    ``base``'s; everything else is ``base``.
    """
    def variant(**changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**base.to_dict(), **changes})

    configs = {"this project (same padding, albumentations, BCE+Dice, batch norm)": base}
    if base.padding == "same":
        valid = build_model(variant(padding="valid", patch_size=base.patch_size,
                                    eval_tile=base.eval_tile), 1)
        margin = valid.margin
        configs["paper: valid padding with crop-and-copy"] = variant(
            padding="valid", patch_size=valid.valid_input_size(base.patch_size + 2 * margin),
            eval_tile=valid.valid_input_size(base.eval_tile))
    configs["paper: elastic deformation (3x3 grid, sigma 10 px)"] = variant(augmentation="paper")
    configs["no augmentation"] = variant(augmentation="none")
    configs["paper: weighted cross-entropy (Eqs. 1-2)"] = variant(loss="weighted_ce")
    configs["paper: no batch norm"] = variant(batch_norm=False)
    return configs


@dataclass(frozen=True)
class AblationResult:
    """One row of the ablation table: the run, or why there is none (it diverged)."""

    label: str
    config: TrainConfig
    run: RunResult | None
    error: str = ""


def run_ablations(base: TrainConfig, minutes: float | None, *, progress: bool = False,
                  log: Callable[[str], None] = print) -> list[AblationResult]:
    """Train (or load) every :func:`ablation_configs` variant for ``minutes`` each.

    A variant whose loss diverges is a result too (the paper's setting may not survive this
    project's learning rate): it is reported with the error instead of stopping the others.
    """
    results = []
    for label, cfg in ablation_configs(base).items():
        try:
            results.append(AblationResult(label, cfg, train_for_minutes(
                cfg, minutes, progress=progress, log=log)))
        except TrainingDiverged as err:
            results.append(AblationResult(label, cfg, None, str(err).split(";")[0]))
    return results
