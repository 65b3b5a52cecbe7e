"""Named checks a chapter makes of what it shows, so that the story reads ``check_...(x)``
instead of a bare ``assert`` with a number in it. Each raises ``AssertionError`` with a
sentence that says what failed and where to look; under nbval and papermill a failed check
stops the chapter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from unet_train.config import TrainConfig
from unet_train.provenance import code_fingerprint
from unet_train.runs import CONFIG, RunResult

#: A model trained with a real profile on the real DRIVE scores above this test AUC-ROC; the
#: published models and ours all lie within a few thousandths of 0.98, so below it something
#: broke (data, threshold, FOV masking), not merely a weaker recipe.
TRAINED_DRIVE_AUC_FLOOR = 0.97


def check_run_finished(result: RunResult, cfg: TrainConfig) -> None:
    """The run trained every step of its config, or was stopped by its time budget."""
    if not (result.steps == cfg.steps or result.stopped_by == "time"):
        raise AssertionError(f"run {result.run_dir.name} stopped at step {result.steps} of "
                             f"{cfg.steps} ({result.stopped_by}), not by its step count or time "
                             "budget")


def check_made_by_current_code(result: RunResult) -> None:
    """The run's provenance names the code as it computes now (the book shows no older run)."""
    made, now = (result.provenance or {}).get("code"), code_fingerprint()
    if made != now:
        raise AssertionError(f"run {result.run_dir.name} was made by code {made}, the code now "
                             f"computes {now}: it should have been trained again")


def check_f1_is_harmonic_mean(pooled: Mapping[str, float], tolerance: float = 1e-9) -> None:
    """F1 at the chosen threshold is the harmonic mean of its precision and sensitivity."""
    p, s = pooled["precision"], pooled["sensitivity"]
    expected = 2 * p * s / (p + s) if p + s else 0.0
    if abs(pooled["f1"] - expected) > tolerance:
        raise AssertionError(f"F1 {pooled['f1']} is not the harmonic mean {expected} of "
                             f"precision {p} and sensitivity {s}")


def check_trained_quality(result: RunResult, cfg: TrainConfig) -> None:
    """On the real DRIVE with a real profile, the test AUC-ROC is above
    :data:`TRAINED_DRIVE_AUC_FLOOR` (no check on the stand-in or under ``smoke``)."""
    if result.synthetic or cfg.profile == "smoke" or cfg.dataset != "drive":
        return
    auc = result.metrics["test"]["pooled"]["auc_roc"]
    if not auc > TRAINED_DRIVE_AUC_FLOOR:
        raise AssertionError(f"test AUC-ROC {auc:.4f} of run {result.run_dir.name} is not above "
                             f"{TRAINED_DRIVE_AUC_FLOOR}: a trained model on DRIVE scores ~0.98")


def check_config_round_trip(run_dir: str | Path, cfg: TrainConfig) -> None:
    """The run folder's ``config.json`` reads back as the same config (the same key)."""
    stored = TrainConfig.from_dict(json.loads((Path(run_dir) / CONFIG).read_text()))
    if stored.key() != cfg.key():
        raise AssertionError(f"{Path(run_dir).name}/config.json reads as config {stored.key()}, "
                             f"the run's is {cfg.key()}")
