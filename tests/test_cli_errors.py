"""User errors on the command line: one line ``error: ...`` on stderr naming the file or setting,
a non-zero exit code, never a traceback.

A few cases run ``python -m unet_train`` in a subprocess, so that "no traceback" is checked on the
real stderr; the others call :func:`unet_train.cli.main` in-process. Interrupted runs exit with
128 + the signal number; under ``torchrun`` only rank 0 prints and draws ``curves.png``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import unet_train.cli as cli
from unet_core.data import write_synthetic_drive
from unet_core.data.errors import DataError
from unet_train.cli import main
from unet_train.config import TrainConfig
from unet_train.faults import TrainingInterrupted
from unet_train.recipe import build_model
from unet_train.runs import RunResult, save_model

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--profile", "smoke", "--patch-size", "32", "--eval-tile", "32", "--quiet"]


class _Stranger:
    """Any class: a checkpoint holding one cannot be loaded weights-only."""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A valid (untrained) model.pt, broken checkpoints of every kind, and a tiny data set."""
    root = tmp_path_factory.mktemp("cli_errors")
    cfg = TrainConfig.from_profile("smoke", patch_size=32, eval_tile=32)
    save_model(root, build_model(cfg, 3), cfg, 3, 0.5)
    good = root / "model.pt"
    data = root / "data"
    write_synthetic_drive(data / "DRIVE", n_train=3, n_test=2, size=(72, 68), seed=3)
    (root / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (root / "corrupt.pt").write_bytes(b"\x00 these bytes are no checkpoint")
    torch.save({"model": _Stranger()}, root / "code.pt")  # unpickling would import code
    torch.save({"state_dict": {"w": torch.zeros(2)}}, root / "foreign.pt")
    bad_data = root / "bad_data"
    (bad_data / "DRIVE" / "misc").mkdir(parents=True)  # DRIVE/ without DRIVE's layout
    (root / "images").mkdir()
    image = root / "images" / "one.tif"
    image.write_bytes((data / "DRIVE" / "test" / "images" / "01_test.tif").read_bytes())
    return {"good": good, "data": data, "bad_data": bad_data, "image": image, "root": root,
            **{k: root / f"{k}.pt" for k in ("truncated", "corrupt", "code", "foreign")},
            "missing": root / "missing.pt"}


def _one_error_line(stderr: str, *names: str) -> str:
    """The single ``error:`` line of ``stderr`` (no traceback), naming every one of ``names``."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for name in names:
        assert name in line, (name, line)
    assert "weights_only" not in line  # never the advice to load a stranger's pickle
    return line


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "unet_train", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env)


# -- on the real stderr (subprocess) ----------------------------------------------------------
def test_evaluate_with_a_truncated_checkpoint_prints_one_line(files):
    run = _cli("evaluate", "--checkpoint", str(files["truncated"]), "--data-dir",
               str(files["data"]), "--device", "cpu", cwd=files["root"])
    assert run.returncode == 1
    line = _one_error_line(run.stderr, str(files["truncated"]))
    assert "not a valid unet_core checkpoint" in line and "--checkpoint expects" in line


def test_predict_with_a_code_carrying_checkpoint_prints_one_line(files, tmp_path):
    run = _cli("predict", "--checkpoint", str(files["code"]), "--output", str(tmp_path / "o"),
               str(files["image"]), cwd=files["root"])
    assert run.returncode == 1
    line = _one_error_line(run.stderr, str(files["code"]), "not a valid unet_core checkpoint")
    assert "could run code" in line
    assert not (tmp_path / "o").exists()  # nothing written


def test_train_resume_from_a_corrupt_checkpoint_prints_one_line(files, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(files["corrupt"].read_bytes())
    run = _cli("train", *SMOKE, "--run-dir", str(run_dir), "--data-dir", str(files["data"]),
               cwd=files["root"])
    assert run.returncode == 1
    _one_error_line(run.stderr, str(run_dir / "checkpoint.pt"), "not a valid unet_core "
                    "checkpoint", "--no-resume")
    assert (run_dir / "checkpoint.pt").read_bytes() == files["corrupt"].read_bytes()  # kept


def test_evaluate_on_an_unreadable_data_folder_prints_one_line(files):
    run = _cli("evaluate", "--checkpoint", str(files["good"]), "--data-dir",
               str(files["bad_data"]), "--device", "cpu", cwd=files["root"])
    assert run.returncode == 1
    _one_error_line(run.stderr, str(files["bad_data"] / "DRIVE"), "layout")


# -- in-process -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["missing", "truncated", "corrupt", "code", "foreign"])
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_every_bad_checkpoint_is_one_line_naming_it(files, kind, command, tmp_path, capsys):
    extra = (["--data-dir", str(files["data"])] if command == "evaluate"
             else ["--output", str(tmp_path / "o"), str(files["image"])])
    code = main([command, "--checkpoint", str(files[kind]), *extra])
    assert code == 1
    line = _one_error_line(capsys.readouterr().err, str(files[kind]))
    expected = {"missing": "does not exist", "foreign": "is not a unet_core model file"}
    assert expected.get(kind, "not a valid unet_core checkpoint") in line
    assert "--checkpoint expects a run's model.pt" in line


@pytest.mark.parametrize("kind", ["truncated", "foreign", "good"])
def test_train_refuses_to_resume_from_a_checkpoint_that_is_not_a_training_one(files, kind,
                                                                              tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(files[kind].read_bytes())  # good: a model.pt
    code = main(["train", *SMOKE, "--run-dir", str(run_dir), "--data-dir", str(files["data"])])
    assert code == 1
    _one_error_line(capsys.readouterr().err, str(run_dir / "checkpoint.pt"), "--no-resume")
    assert (run_dir / "checkpoint.pt").read_bytes() == files[kind].read_bytes()


def test_a_diverged_run_is_one_line(files, tmp_path, capsys):
    code = main(["train", *SMOKE, "--run-dir", str(tmp_path / "run"), "--data-dir",
                 str(files["data"]), "--lr", "1e30", "--no-bf16", "--steps", "6",
                 "--eval-every", "3"])
    assert code == 1
    line = _one_error_line(capsys.readouterr().err, "training diverged", str(tmp_path / "run"))
    assert "lower lr" in line


def test_train_on_an_unreadable_data_folder_is_one_line(files, tmp_path, capsys):
    code = main(["train", *SMOKE, "--run-dir", str(tmp_path / "run"), "--data-dir",
                 str(files["bad_data"])])
    assert code == 1
    _one_error_line(capsys.readouterr().err, str(files["bad_data"] / "DRIVE"))


@pytest.mark.parametrize(("option", "named"), [
    (["--lr", "-1"], "lr must be >= 0"),
    (["--device", "tpu"], "device='tpu' is not valid; expected one of auto, cpu, cuda, mps"),
    (["--batch-size", "3", "--world-size", "2"], "batch_size=3"),
])
def test_a_bad_config_value_is_one_line_and_exit_code_2(option, named, capsys):
    assert main(["train", *option]) == 2
    _one_error_line(capsys.readouterr().err, named)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_says_how_to_resume_and_exits_128_plus_signal(signum, monkeypatch,
                                                                          capsys):
    message = (f"{signal.Signals(signum).name} received: stopped after step 3 of 6; checkpoint "
               "written to runs/x/checkpoint.pt. Run the same command again to resume.")

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted(message, signum)

    monkeypatch.setattr(cli, "train", interrupted)
    assert main(["train", "--profile", "smoke"]) == 128 + signum
    captured = capsys.readouterr()
    assert captured.err.strip() == message and "Traceback" not in captured.err


def test_a_signal_during_the_final_evaluation_says_the_run_finished_and_exits_128_plus_signal(
        tmp_path, monkeypatch, capsys):
    """The run is complete and saved (curves drawn, folder printed); the exit code still
    stops a shell loop that runs several, as a Ctrl-C during training would."""
    finished = _finished(tmp_path / "run")
    monkeypatch.setattr(cli, "train", lambda *a, **k: dataclasses.replace(
        finished(*a, **k), late_signal=signal.SIGINT))
    assert main(["train", "--profile", "smoke"]) == 128 + signal.SIGINT
    captured = capsys.readouterr()
    assert captured.out == f"run directory: {tmp_path / 'run'}\n"
    assert captured.err.strip() == ("SIGINT received after the last step: the run finished "
                                    "and is saved; nothing to resume")
    assert (tmp_path / "run" / "curves.png").exists()


def _finished(run_dir: Path):
    def fake_train(cfg, run_dir_arg, **kwargs):
        run_dir.mkdir(exist_ok=True)
        history = [{"step": s, "minutes": 0.1 * s, "loss": 1.0 / s, "lr": 1e-3,
                    "val_auc_roc": 0.5, "val_f1": 0.2} for s in (1, 2)]
        return RunResult(run_dir, cfg, 2, 0.2, {}, history, True)
    return fake_train


def test_only_rank_0_prints_and_draws_curves(tmp_path, monkeypatch, capsys):
    curves = []
    monkeypatch.setattr(cli, "save_curves", lambda d, h: curves.append(d))
    monkeypatch.setattr(cli, "train", _finished(tmp_path / "r1"))
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--profile", "smoke"]) == 0
    assert capsys.readouterr() == ("", "") and curves == []
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--profile", "smoke"]) == 0
    assert capsys.readouterr().out == f"run directory: {tmp_path / 'r1'}\n"
    assert curves == [tmp_path / "r1"]


def test_rank_0_writes_curves_png_and_other_ranks_do_not(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "train", _finished(tmp_path / "run"))
    monkeypatch.setenv("RANK", "2")
    assert main(["train", "--profile", "smoke"]) == 0
    assert not (tmp_path / "run" / "curves.png").exists()
    monkeypatch.delenv("RANK")
    assert main(["train", "--profile", "smoke"]) == 0
    assert (tmp_path / "run" / "curves.png").exists()


def test_other_ranks_stay_silent_on_errors_too(monkeypatch, capsys):
    def failing(*args, **kwargs):
        raise DataError("missing folder /x/DRIVE/test/images: expected DRIVE images")

    monkeypatch.setattr(cli, "train", failing)
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "--profile", "smoke"]) == 1
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--profile", "smoke"]) == 1
    _one_error_line(capsys.readouterr().err, "/x/DRIVE/test/images")


def test_a_missing_device_is_one_line(files, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code = main(["predict", "--checkpoint", str(files["good"]), "--output", str(tmp_path / "o"),
                 "--device", "cuda", str(files["image"])])
    assert code == 1
    _one_error_line(capsys.readouterr().err, "CUDA is not available", "--device cpu")
