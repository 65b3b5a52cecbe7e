"""The book's experiments: notebook parameters, load-or-train, and runs with a time budget.

Notebooks never train directly: they build a :class:`~unet_train.config.TrainConfig` from their
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
from pathlib import Path
from typing import Any

from unet_book.studies import get_study
from unet_core.validation import check_choice
from unet_train.config import PROFILES, TrainConfig, check_names
from unet_train.curves import save_curves
from unet_train.identity import BUDGET_FIELDS, budgeted_run_name, default_run_name
from unet_train.provenance import dataset_fingerprint, describe
from unet_train.runs import CHECKPOINT, RunResult, finished_run, runs_dir
from unet_train.train import seconds_per_step, train

PROFILE_ENV = "UNET_PROFILE"
#: Notebook parameters that are not TrainConfig fields.
NOTEBOOK_ONLY = ("run_name",)


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


def notebook_config(params: Mapping[str, Any] | None = None, /, **fixed: Any) -> TrainConfig:
    """A config from notebook parameters (names that are not config fields are skipped).

    ``profile`` picks the profile (default ``$UNET_PROFILE`` or ``cpu``), ``None`` values keep
    the profile's default, ``fixed`` are the notebook's own settings (parameters override
    them); the smoke profile keeps its own sizes and steps."""
    fields = set(TrainConfig.field_names())
    values = {k: v for k, v in (params or {}).items() if v is not None and k in fields}
    profile = values.pop("profile", None) or default_profile()
    overrides = {**fixed, **values}
    # the smoke profile keeps its tiny sizes: notebook-level sizes are for real profiles
    if profile == "smoke":
        for name in ("patch_size", "eval_tile", "steps", "base_channels", "depth",
                     "batch_size", "eval_every"):
            if name in fixed and name not in values:
                overrides.pop(name)
    return TrainConfig.from_profile(profile, **overrides)


class ChapterParameters:
    """A chapter's papermill parameters in one object. Made in the cell before the parameters
    cell (it remembers the names defined so far); after it, :meth:`config` checks every name
    defined since (papermill's injected ones included: a misspelt ``-p profil paper`` is an
    error that lists the valid names) and builds the config::

        parameters = ChapterParameters(globals())
        # %% tags=["parameters"]
        profile = None
        # %%
        cfg = parameters.config(**HEADLINE_SETTINGS)
    """

    def __init__(self, namespace: Mapping[str, Any], extra: Iterable[str] = ()) -> None:
        self._namespace = namespace
        self._before = set(namespace)
        self._extra = tuple(extra)

    @property
    def values(self) -> dict[str, Any]:
        """The parameters (:func:`collect_parameters`), this object itself left out."""
        names = {k for k, v in self._namespace.items() if isinstance(v, ChapterParameters)}
        return collect_parameters(self._namespace, self._before | names, self._extra)

    def config(self, **fixed: Any) -> TrainConfig:
        """:func:`notebook_config` of the parameters, over the chapter's ``fixed`` settings."""
        return notebook_config(self.values, **fixed)


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
    log(f"loaded finished run {done.run_dir.name} of the runs folder ({done.steps} steps, "
        f"{done.train_minutes:.1f} min "
        f"of training{', finished ' + finished if finished else ''}; "
        f"{describe(done.provenance)}); delete it to train again")


def _train_with_curves(cfg: TrainConfig, run_dir: Path, *, progress: bool,
                       log: Callable[[str], None]) -> RunResult:
    """:func:`unet_train.train.train`, then the run's ``curves.png``."""
    result = train(cfg, run_dir, progress=progress, log=log)
    save_curves(result.run_dir, result.history)
    return result


# -- runs with a time budget -------------------------------------------------------------------
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
def study_cell_settings(study: str, arm: str) -> dict[str, Any]:
    """The settings that make a notebook's run one cell of a study: the fields in which the
    cell's config differs from its profile's defaults (the seed is left to the notebook, whose
    default, 0, is the study's first seed).

    The book's live runs are cells of the committed studies, so that a chapter can set the run
    it trained beside the study's record of the same cell and the spread over its seeds."""
    cfg = get_study(study).config(arm, seed=0)
    default = TrainConfig.from_profile(cfg.profile)
    return {name: getattr(cfg, name) for name in TrainConfig.field_names()
            if name not in ("profile", "seed") and getattr(cfg, name) != getattr(default, name)}


#: The study cell of the book's headline run (chapters 5, 6, 8, 9): the ``cpu`` profile at
#: 2000 steps with test-time augmentation off and the loss also counting the pixels outside
#: the FOV as background (kept by the rule of ``drive_outside_fov``), the arm
#: ``outside_background`` of ``drive_outside_fov_2x``; with the FOV ignored it is the ``cpu``
#: arm of ``drive_recipe_2x``.
HEADLINE_CELL: tuple[str, str] = ("drive_outside_fov_2x", "outside_background")
HEADLINE_SETTINGS: dict[str, Any] = study_cell_settings(*HEADLINE_CELL)

#: The ISBI 2012 chapter: the paper's task with the paper's loss (Eq. 1 with the weight map of
#: Eq. 2): the arm ``w0_10`` of ``isbi_recipe`` (slices 0-20 train, 21-22 validate, 23-24 are
#: the gap, 25-29 are held out).
ISBI_CELL: tuple[str, str] = ("isbi_recipe", "w0_10")
ISBI_SETTINGS: dict[str, Any] = study_cell_settings(*ISBI_CELL)
