"""A run's identity: the config, code and data that made it, as keys and folder names.

One module owns what names a run, so that every place that finds a run finds the same one:

* :func:`config_key`: a short hash of the config fields that change what a run computes.
  Fields that never do (:data:`RESULT_NEUTRAL`: where it runs, how often it checkpoints) are
  left out, so are :data:`ADDED_FIELDS` at the value that reproduces the runs made before they
  existed (an old run folder keeps its name) and fields without effect in the config
  (:data:`ONLY_WITH`: the deformation tile without the paper's deformation);
* :func:`default_run_name`: ``<dataset>-<profile>-<config key>-<provenance key>``, the
  provenance key (:func:`unet_train.provenance.dataset_fingerprint`) naming the code and the
  data, so a run made by other code, or on other data, is never served as this one;
* :func:`budgeted_run_name`: a run trained for a time budget, named by its config before the
  steps were calibrated, and the budget;
* :func:`study_run_name`: a study cell's folder;
* :func:`config_diff`: the fields in which two stored configs differ, as resuming checks them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.augment import PAPER_ELASTIC
from unet_train.provenance import dataset_fingerprint

if TYPE_CHECKING:
    from unet_train.config import TrainConfig

#: Fields that never change what a run computes: where it runs and how often it checkpoints.
RESULT_NEUTRAL: tuple[str, ...] = ("device", "threads", "checkpoint_every", "memory_format")
#: Fields added after the first run folders were written, with the value that reproduces what
#: those runs did (a stored config without the field is read with this value).
ADDED_FIELDS: dict[str, Any] = {"deterministic": False, "grad_clip": 0.0, "world_size": 1,
                                "ema_decay": 0.0, "compile": False, "elastic_tile": 0,
                                "train_images": 0, "isbi_gap": 0, "precision": "auto",
                                "memory_format": "auto", "train_start": 0, "cv_folds": 0,
                                "cv_fold": 0, "class_reweight_w0": 0.0, "outside_fov": "ignore"}


def with_added_fields(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a stored config) completed with the :data:`ADDED_FIELDS` it predates."""
    return {**ADDED_FIELDS, **values} if set(ADDED_FIELDS) - set(values) else dict(values)


#: Fields that only act together with another field's value: without it they change nothing.
ONLY_WITH: dict[str, tuple[str, tuple[Any, ...]]] = {
    "elastic_tile": ("augmentation", PAPER_ELASTIC),
    "isbi_gap": ("dataset", ("isbi2012",)),
    "cv_folds": ("dataset", ("isbi2012",)),
    "cv_fold": ("dataset", ("isbi2012",)),
    "outside_fov": ("dataset", ("drive",)),
}


def effective(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without the :data:`ONLY_WITH` fields that have no effect in it (the paper
    deformation's tile when an augmentation without it is used)."""
    return {k: v for k, v in values.items()
            if k not in ONLY_WITH or values.get(ONLY_WITH[k][0]) in ONLY_WITH[k][1]}


def config_key(values: Mapping[str, Any], exclude: Iterable[str] = RESULT_NEUTRAL) -> str:
    """The short hash of a config's fields (``TrainConfig.to_dict()``) that change a result
    (module docstring); ``exclude`` names the fields left out."""
    skip = set(exclude)
    items = {k: v for k, v in effective(dict(values)).items()
             if k not in skip and not (k in ADDED_FIELDS and v == ADDED_FIELDS[k])}
    blob = json.dumps(items, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


def default_run_name(cfg: TrainConfig, data_root: str | Path | None = None) -> str:
    """``<dataset>-<profile>-<config key>-<provenance key>``: a run of the same config made
    by other code, or on other data (the synthetic stand-in before the real data was added),
    has another name, so it is never served as this one."""
    key = dataset_fingerprint(cfg.dataset, data_root)["key"]
    return f"{cfg.dataset}-{cfg.profile}-{cfg.key()}-{key}"


#: The fields a time budget sets (:func:`budgeted_run_name` names the run without them).
BUDGET_FIELDS: tuple[str, ...] = ("steps", "eval_every", "time_budget_min")


def budgeted_run_name(cfg: TrainConfig, minutes: float) -> str:
    """A run trained for about ``minutes``: named by its config before calibration (the
    :data:`BUDGET_FIELDS` at fixed values) and the budget, so a rebuild finds it again."""
    base = {**cfg.to_dict(), "steps": 1, "eval_every": 0, "time_budget_min": 0.0}
    key = dataset_fingerprint(cfg.dataset)["key"]
    return f"{cfg.dataset}-{cfg.profile}-{config_key(base)}-{key}-{minutes:g}min"


def study_run_name(study: str, arm: str, seed: int, fold: int | None, key: str) -> str:
    """``study-<study>-<arm>-s<seed>[-f<fold>]-<provenance key>``: one cell of a study."""
    return f"study-{study}-{arm}-s{seed}" + ("" if fold is None else f"-f{fold}") + f"-{key}"


def config_diff(a: dict[str, Any], b: dict[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Config fields that differ, but for :data:`RESULT_NEUTRAL` ones (device, threads,
    checkpoint interval); a field that one side predates counts as its old default."""
    a, b = effective(with_added_fields(a)), effective(with_added_fields(b))
    skip = {*RESULT_NEUTRAL, *ignore}
    return sorted(k for k in set(a) | set(b) if k not in skip and a.get(k) != b.get(k))
