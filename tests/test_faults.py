"""Faults: killed writers, signals, stale results, divergence, and what a run records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from unet_core.data.sampler import PatchBatch
from unet_core.losses import make_loss
from unet_train import devices
from unet_train import train as train_module
from unet_train.config import TrainConfig
from unet_train.faults import TrainingDiverged
from unet_train.recipe import build_model, build_optimizer
from unet_train.runs import RUN_FILES, finished_run
from unet_train.train import StepResult, train, train_step

HELPERS = Path(__file__).parent / "helpers"
sys.path.insert(0, str(HELPERS))
from slow_checkpoint_worker import config as slow_config  # noqa: E402


@pytest.fixture(scope="module")
def data(small_data_root) -> Path:
    return small_data_root


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _cfg(**changes) -> TrainConfig:
    return TrainConfig.from_profile("smoke", patch_size=32, eval_tile=32, threads=1,
                                    **changes)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


def _quiet(_: str) -> None:
    pass


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, data, one_thread):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(HELPERS / "slow_checkpoint_worker.py"),
                             str(run_dir), str(data)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "stalled").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert list(run_dir.glob(".checkpoint.pt.*.tmp"))  # the half-written temporary file
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)  # the previous one loads
    assert state["step"] == 2
    (run_dir / "stalled").unlink()
    resumed = train(slow_config(), run_dir, data_root=data, progress=False, log=_quiet)
    assert resumed.resumed_from == 2 and not list(run_dir.glob(".*.tmp"))
    fresh = train(slow_config(), tmp_path / "fresh", data_root=data, progress=False, log=_quiet)
    a, b = _weights(run_dir), _weights(fresh.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_143_saying_how_to_resume(tmp_path, data):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "unet_train", "train", "--profile", "smoke", "--patch-size",
           "32", "--eval-tile", "32", "--steps", "2000", "--eval-every", "2000",
           "--checkpoint-every", "5", "--threads", "1", "--quiet", "--run-dir", str(run_dir),
           "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM received" in err and "Run the same command again to resume" in err
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert 5 <= step < 2000
    assert f"stopped after step {step} " in err  # the checkpoint is of the step it names


def test_a_signal_during_the_final_evaluation_is_returned_with_the_finished_run(
        tmp_path, data, monkeypatch, one_thread):
    real = train_module.choose_threshold

    def interrupted(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # after the last step's check
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "choose_threshold", interrupted)
    result = train(_cfg(steps=2, eval_every=2), tmp_path / "run", data_root=data,
                   progress=False, log=_quiet)
    assert result.late_signal == signal.SIGTERM and result.steps == 2
    assert (tmp_path / "run" / "model.pt").exists() and "test" in result.metrics


def test_a_fresh_run_removes_the_finished_run_it_replaces_and_nothing_else(tmp_path, data,
                                                                         one_thread):
    cfg = _cfg(steps=4, eval_every=2)
    done = train(cfg, tmp_path / "run", data_root=data, progress=False, log=_quiet)
    assert finished_run(done.run_dir, cfg) is not None
    (done.run_dir / "snapshots").mkdir()
    torch.save({}, done.run_dir / "snapshots" / "step0000002.pt")
    (done.run_dir / "notes.txt").write_text("mine")
    said: list[str] = []
    train(cfg, done.run_dir, resume=False, data_root=data, progress=False, stop_after=2,
          log=said.append)  # interrupted retraining
    assert finished_run(done.run_dir, cfg) is None  # not reported as finished
    assert not (done.run_dir / "metrics.json").exists() and not (done.run_dir / "model.pt").exists()
    assert (done.run_dir / "notes.txt").read_text() == "mine"
    assert not (done.run_dir / "snapshots").exists()
    assert any("removed the earlier run's" in s and "metrics.json" in s for s in said)
    assert set(RUN_FILES) >= {"metrics.json", "model.pt", "checkpoint.pt", "history.csv"}


def test_a_checkpoint_every_checkpoint_every_steps_between_validations(tmp_path, data,
                                                                      one_thread):
    cfg = _cfg(steps=7, eval_every=0, checkpoint_every=3)
    result = train(cfg, tmp_path / "run", data_root=data, progress=False, stop_after=5,
                   log=_quiet)
    assert result.history == []  # no validation pass yet ...
    assert torch.load(result.run_dir / "checkpoint.pt", weights_only=True)["step"] == 3


FP32 = devices.choose_precision(torch.device("cpu"), False)  # the training step's precision


def _tiny_step_inputs(cfg: TrainConfig):
    torch.manual_seed(0)
    model = build_model(cfg, 3)
    optimizer = build_optimizer(cfg, model)
    loss_fn = make_loss(cfg.loss, out_channels=model.out_channels)
    x = torch.rand(2, 3, 32, 32)
    batch = PatchBatch(x, (x[:, 0] > 0.5).long(),
                                    torch.ones(2, 32, 32, dtype=torch.bool), None)
    return model, optimizer, loss_fn, batch


def test_a_non_finite_gradient_takes_no_step(monkeypatch):
    cfg = _cfg(bf16=False)
    model, optimizer, loss_fn, batch = _tiny_step_inputs(cfg)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    model.head.weight.register_hook(lambda g: g * float("inf"))
    out = train_step(model, batch, loss_fn, optimizer, cfg, torch.device("cpu"),
                     precision=FP32)
    assert isinstance(out, StepResult) and torch.isfinite(out.loss)
    assert out.grad_norm is not None and not torch.isfinite(out.grad_norm)
    assert all(torch.equal(before[k], v) for k, v in model.named_parameters())


@pytest.mark.parametrize("clip", [0.0, 1e-3])
def test_grad_clip_bounds_the_step(clip):
    cfg = _cfg(bf16=False, optimizer="sgd", momentum=0.0, lr=1.0, grad_clip=clip)
    model, optimizer, loss_fn, batch = _tiny_step_inputs(cfg)
    before = [p.detach().clone() for p in model.parameters()]
    out = train_step(model, batch, loss_fn, optimizer, cfg, torch.device("cpu"),
                     precision=FP32)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before,
                                                                 strict=True)))
    if clip:  # plain SGD with lr 1 moves the parameters by exactly the clipped gradient
        assert moved.item() == pytest.approx(clip, rel=1e-3)
    else:
        assert moved.item() == pytest.approx(out.grad_norm.item(), rel=1e-3)


def test_non_finite_parameters_stop_the_run_before_a_bad_checkpoint(tmp_path, data,
                                                                   monkeypatch, one_thread):
    real = train_module.train_step
    calls = []

    def poisoning(model, *args, **kwargs):
        out = real(model, *args, **kwargs)
        calls.append(1)
        if len(calls) == 6:  # after step 6, before its checkpoint
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
        return out

    monkeypatch.setattr(train_module, "train_step", poisoning)
    cfg = _cfg(steps=8, eval_every=0, checkpoint_every=3)
    with pytest.raises(TrainingDiverged, match=r"parameters .* non-finite at step 6.*step 3"):
        train(cfg, tmp_path / "run", data_root=data, progress=False, log=_quiet)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_a_cpu_without_bf16_trains_in_fp32_and_says_so(tmp_path, data, monkeypatch,
                                                       one_thread):
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)
    said: list[str] = []
    result = train(_cfg(steps=2, eval_every=2), tmp_path / "run", data_root=data,
                   progress=False, log=said.append)
    assert any("fp32: this CPU has no native bf16" in s for s in said)
    assert result.late_signal is None  # no signal: none reported
    env = json.loads((result.run_dir / "environment.json").read_text())
    assert env["precision"] == "fp32" and env["device"] == "cpu" and env["threads"] == 1
    assert set(env["placement"]["train"]["seconds"]) == {"fp32/contiguous", "fp32/channels_last"}


def test_deterministic_mode_trains_and_resumes_to_the_same_weights(tmp_path, data, one_thread):
    cfg = _cfg(steps=6, eval_every=3, deterministic=True)
    try:
        train(cfg, tmp_path / "a", data_root=data, progress=False, stop_after=3, log=_quiet)
        resumed = train(cfg, tmp_path / "a", data_root=data, progress=False, log=_quiet)
        fresh = train(cfg, tmp_path / "b", data_root=data, progress=False, log=_quiet)
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = _weights(resumed.run_dir), _weights(fresh.run_dir)
    assert resumed.resumed_from == 3 and all(torch.equal(a[k], b[k]) for k in a)
