"""Run folders: where a run's files live, how they are written and read back.

A run lives in ``runs/<name>/`` (``$UNET_RUNS_DIR``, default ``./runs``):

* ``config.json``: the :class:`~unet_train.config.TrainConfig`;
* ``history.csv``: one row per validation pass (step, minutes, loss, learning rate, metrics);
* ``checkpoint.pt``: model, optimiser, scheduler, step, history and every RNG state, written
  atomically at every validation pass (``weights_only`` loadable);
* ``model.pt``: the final weights with the config and the chosen threshold (for ``predict``);
* ``metrics.json``: the final evaluation (test split for DRIVE, held-out slices for ISBI) and
  ``threshold_choice``, how the threshold was chosen;
* ``curves.png``: loss and validation metrics against minutes of training (drawn by the
  caller of :func:`unet_train.train.train`: the command line, the book);
* ``environment.json``: where it ran (device, precision, threads, processes, versions);
* ``provenance.json``: the fingerprints of the code and the data it ran on
  (:mod:`unet_train.provenance`); ``metrics.json`` repeats them;
* ``snapshots/``: weights at every validation pass, when ``keep_snapshots`` is on;
* ``test_probabilities.npz``: the book's cache of the final model's test probabilities.

A fresh run (not resumed) into a folder that holds these files first removes them, and only
them (:func:`clear_run_files`), so that an interrupted retraining is never mistaken for the
finished run that was there before.

Every file is written through :mod:`unet_train.atomic`. Chapter 5 explains the run folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unet_core.model import UNet
from unet_train.atomic import write_json, write_text
from unet_train.checkpoint import load_checkpoint, save_checkpoint
from unet_train.config import TrainConfig
from unet_train.devices import DEVICES, pick_device
from unet_train.identity import config_diff
from unet_train.provenance import describe, same_origin
from unet_train.recipe import build_model

RUNS_DIR_ENV = "UNET_RUNS_DIR"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
METRICS = "metrics.json"
CONFIG = "config.json"
HISTORY = "history.csv"
ENVIRONMENT = "environment.json"
CURVES = "curves.png"
SNAPSHOTS = "snapshots"
PROBABILITIES = "test_probabilities.npz"  # the book's cache of a run's test probabilities
PROVENANCE = "provenance.json"
#: Every file a run writes into its folder; a fresh run removes these and nothing else.
RUN_FILES: tuple[str, ...] = (CHECKPOINT, MODEL, METRICS, CONFIG, HISTORY, ENVIRONMENT, CURVES,
                              PROBABILITIES, PROVENANCE)
HISTORY_FIELDS = ("step", "minutes", "loss", "lr", "val_auc_roc", "val_f1", "val_loss")


def runs_dir() -> Path:
    """Where runs live: ``$UNET_RUNS_DIR`` if set, else ``./runs``."""
    return Path(os.environ.get(RUNS_DIR_ENV, "./runs"))


def read_provenance(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``provenance.json`` (``None`` for a run made before fingerprints)."""
    path = Path(run_dir) / PROVENANCE
    return json.loads(path.read_text()) if path.exists() else None


@dataclass
class RunResult:
    run_dir: Path
    config: TrainConfig
    steps: int
    train_minutes: float
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    synthetic: bool
    resumed_from: int | None = None
    stopped_by: str = "steps"
    provenance: dict[str, Any] | None = None  # unet_train.provenance.fingerprint of the run
    #: ``{"val": [...], "test": [...]}``: the probability maps the final evaluation computed
    #: (on the run's device, in its inference placement), in memory only, so a caller that
    #: needs them again (a study's scoring) predicts nothing twice; None where not evaluated.
    probabilities: dict[str, list[Any]] | None = field(default=None, repr=False, compare=False)
    #: SIGINT or SIGTERM that arrived after the last step's check, during the final evaluation:
    #: the run finished all the same; a caller running several (a study) stops after this one.
    late_signal: int | None = None


# -- writing ----------------------------------------------------------------------------------
def clear_run_files(run_dir: Path) -> list[str]:
    """Remove the files a run writes (:data:`RUN_FILES` and ``snapshots/``) from ``run_dir``;
    anything else there is left alone. Returns the names removed."""
    removed = [name for name in RUN_FILES if (run_dir / name).is_file()]
    for name in removed:
        (run_dir / name).unlink()
    snapshots = run_dir / SNAPSHOTS
    if snapshots.is_dir():
        for f in snapshots.glob("step*.pt"):
            f.unlink()
        if not any(snapshots.iterdir()):
            snapshots.rmdir()
        removed.append(SNAPSHOTS + "/")
    return removed


def remove_stale_temporaries(run_dir: Path) -> list[str]:
    """Remove the temporary files a killed writer left (``.<run file>.<random>.tmp``): by
    construction they are incomplete, and the file they were to replace is intact."""
    stale = [p for name in RUN_FILES for p in run_dir.glob(f".{name}.*.tmp")]
    for p in stale:
        p.unlink(missing_ok=True)
    return [p.name for p in stale]


def write_environment(run_dir: Path, info: dict[str, Any]) -> None:
    write_json(run_dir / ENVIRONMENT, info, indent=1)



def write_provenance(run_dir: Path, provenance: dict[str, Any]) -> None:
    write_json(run_dir / PROVENANCE, provenance, indent=1)


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    write_json(run_dir / CONFIG, cfg.to_dict(), indent=2)


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buf.getvalue())


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    write_json(run_dir / METRICS, finite(metrics), indent=1)


def save_model(run_dir: Path, model: UNet, cfg: TrainConfig, in_channels: int,
               threshold: float) -> None:
    """``model.pt``: what ``predict`` and ``evaluate`` need, and nothing else."""
    save_checkpoint(run_dir / MODEL, {
        "model": model.state_dict(), "config": cfg.to_dict(), "in_channels": in_channels,
        "threshold": threshold, "format": 1,
    })


def finite(obj: Any) -> Any:
    """JSON has no NaN: map non-finite floats to None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite(v) for v in obj]
    return obj


# -- reading ----------------------------------------------------------------------------------
def read_history(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    with path.open() as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(f)]


def load_model(path: str | Path, device: str | torch.device = "cpu",
               ) -> tuple[UNet, TrainConfig, float]:
    """Load ``model.pt`` (or a ``checkpoint.pt``): the model, its config and its threshold.

    ``device`` is a :data:`~unet_train.devices.DEVICES` choice (``auto``: CUDA, then MPS, then
    the CPU; an unavailable one raises ``ValueError``) or any ``torch.device``; the tensors are
    loaded straight onto it (``map_location``) and the model is returned there, in eval mode.
    """
    target = pick_device(device) if isinstance(device, str) and device in DEVICES else (
        torch.device(device))
    state = load_checkpoint(path, map_location=str(target))
    for key in ("model", "config", "in_channels"):
        if key not in state:
            raise ValueError(f"{path} is not a unet_core model file: it has no {key!r} entry")
    cfg = TrainConfig.from_dict(state["config"])
    model = build_model(cfg, int(state["in_channels"])).to(target)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:  # missing keys, wrong shapes, ...
        said = " ".join(str(exc).split()).removeprefix("Error(s) in loading state_dict for UNet:")
        said = said.strip()[:200] or type(exc).__name__
        raise ValueError(f"{path} is not a valid unet_core model file: its weights do not fit "
                         f"the network its config describes ({said})") from exc
    model.eval()
    return model, cfg, float(state.get("threshold", cfg.threshold))


def finished_run(run_dir: str | Path, cfg: TrainConfig, ignore: Iterable[str] = (),
                 provenance: dict[str, Any] | None = None) -> RunResult | None:
    """The finished run in ``run_dir`` if its config equals ``cfg`` (but for ``ignore``) and,
    when ``provenance`` is given, it was made by that code on that data.

    Returns ``None`` when the run is missing or unfinished; raises ``ValueError`` when a
    finished run with another config, or of other code or data, sits there (pick another run
    name, or delete it).
    """
    run_dir = Path(run_dir)
    metrics_path, config_path = run_dir / METRICS, run_dir / CONFIG
    if not (metrics_path.exists() and (run_dir / MODEL).exists() and config_path.exists()):
        return None
    stored = json.loads(config_path.read_text())
    diff = config_diff(stored, cfg.to_dict(), ignore)
    if diff:
        raise ValueError(
            f"{run_dir} holds a finished run with another config ({', '.join(diff)} differ); "
            "choose another run_name or delete that directory"
        )
    made_by = read_provenance(run_dir)
    if provenance is not None and not same_origin(made_by, provenance):
        raise ValueError(
            f"{run_dir} holds a finished run made by other code or on other data "
            f"({describe(made_by)}; now: {describe(provenance)}); choose another run_name or "
            "delete that directory"
        )
    metrics = json.loads(metrics_path.read_text())
    return RunResult(run_dir, TrainConfig.from_dict(stored), int(metrics["steps"]),
                     float(metrics["train_minutes"]), metrics,
                     read_history(run_dir / HISTORY), bool(metrics["synthetic"]),
                     None, str(metrics.get("stopped_by", "steps")), made_by)
