"""The README's batch-training command: papermill on chapter 5 (notebooks/05_training.ipynb).

``papermill notebooks/05_training.ipynb out.ipynb -p profile smoke`` must train and write a run
folder; a misspelt parameter must stop the notebook with the list of valid names instead of
being ignored. Both run papermill as a separate process, as a user would, on a tiny synthetic
DRIVE, with UNET_DATA_DIR and UNET_RUNS_DIR in the test's folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from unet_core.data import write_synthetic_drive
from unet_train.config import TrainConfig
from unet_train.identity import default_run_name

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "05_training.ipynb"
BIN = Path(sys.executable).parent  # the virtualenv's bin: papermill, and the kernel's python


def papermill(tmp_path: Path, *params: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``papermill 05_training.ipynb <tmp>/out.ipynb -p ...`` from the repository root."""
    data = tmp_path / "data"
    if not (data / "DRIVE").exists():
        write_synthetic_drive(data / "DRIVE", n_train=3, n_test=2, size=(72, 68), seed=1)
    env = {k: v for k, v in os.environ.items() if k != "UNET_PROFILE"}
    env |= {"UNET_DATA_DIR": str(data), "UNET_RUNS_DIR": str(tmp_path / "runs"),
            # the kernel spec runs "python": the virtualenv's, as with the Makefile's PATH
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    return subprocess.run(
        [str(BIN / "papermill"), str(NOTEBOOK), str(tmp_path / "out.ipynb"), *params],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )


# 6-19 s on 2 loaded CPU cores (a kernel start and a 6-step smoke run): not marked slow.
def test_readme_command_trains_a_smoke_run(tmp_path):
    proc = papermill(tmp_path, "-p", "profile", "smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source
    errors = [o for c in out.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert errors == []

    runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1
    run = runs[0]
    assert {"config.json", "metrics.json", "model.pt", "history.csv"} <= {
        p.name for p in run.iterdir()}
    cfg = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert cfg.profile == "smoke" and cfg.steps == TrainConfig.from_profile("smoke").steps
    assert run.name == default_run_name(cfg, tmp_path / "data")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == cfg.steps and metrics["dataset"] == "drive"
    assert metrics["test"]["images"] == ["01_test", "02_test"]
    # The notebook printed the run it trained.
    printed = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert f"run directory: {run.name} in the runs folder" in printed
    assert str(tmp_path) not in printed  # no path of the machine that built it


@pytest.mark.parametrize("name, value, hint", [("profil", "paper", "profile"),
                                               ("stpes", "5", "steps")])
def test_misspelt_parameter_fails_and_lists_the_valid_ones(tmp_path, name, value, hint):
    proc = papermill(tmp_path, "-p", name, value)
    assert proc.returncode != 0
    err = proc.stderr
    assert f"unknown parameter(s) '{name}' (did you mean '{hint}'?)" in err
    assert "valid parameters:" in err
    valid = err[err.index("valid parameters:"):]
    for field in ("profile", "steps", "patch_size", "lr", "run_name"):
        assert field in valid, field
    assert not (tmp_path / "runs").exists()  # stopped before training
