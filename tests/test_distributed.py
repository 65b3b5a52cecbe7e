"""Training with several processes: torchrun + DistributedDataParallel on CPUs (gloo).

Every test starts real processes with ``python -m torch.distributed.run`` (what ``torchrun``
is), one thread each, on tiny synthetic data; see ``tests/helpers/ddp_worker.py``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow
WORKER = Path(__file__).parent / "helpers" / "ddp_worker.py"
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
SMOKE = ["--profile", "smoke", "--patch-size", "32", "--eval-tile", "32", "--threads", "1",
         "--quiet"]


@pytest.fixture(scope="module")
def data(small_data_root) -> Path:
    return small_data_root


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=_env())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


def test_two_processes_train_one_model_each_with_its_own_patches(tmp_path, data):
    run_dir = tmp_path / "run"
    out = _run([*TORCHRUN, "--standalone", "--nproc-per-node", "2", str(WORKER), "--run-dir",
                str(run_dir), "--data-dir", str(data), "--mode", "record", "--steps", "20"])
    assert out.returncode == 0, out.stderr[-3000:]
    drawn = [json.loads((run_dir / f"patches-rank{r}.json").read_text()) for r in (0, 1)]
    assert len(drawn[0]) == len(drawn[1]) == 20
    assert not set(drawn[0]) & set(drawn[1])  # every rank drew its own patches
    assert json.loads((run_dir / "config.json").read_text())["world_size"] == 2
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["world_size"] == 2 and env["backend"] == "gloo"
    with (run_dir / "history.csv").open() as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 2 and losses[-1] < losses[0]  # the loss falls
    written = {p.name for p in run_dir.iterdir()}
    assert written == {"checkpoint.pt", "config.json", "environment.json", "history.csv",
                       "metrics.json", "model.pt", "patches-rank0.json", "patches-rank1.json",
                       "provenance.json"}
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert out.stdout.count("done:") == 1  # only rank 0 reports


def test_gradients_are_averaged_two_processes_equal_one_with_the_global_batch(tmp_path, data):
    """Fed the same patches per step (each rank its half of the global batch), 2 processes end
    with the weights of 1 process that sees the whole batch."""
    common = ["--data-dir", str(data), "--mode", "fixed", "--steps", "6"]
    two = _run([*TORCHRUN, "--standalone", "--nproc-per-node", "2", str(WORKER), "--run-dir",
                str(tmp_path / "two"), *common])
    one = _run([sys.executable, str(WORKER), "--run-dir", str(tmp_path / "one"), *common])
    assert two.returncode == 0 and one.returncode == 0, two.stderr[-2000:] + one.stderr[-2000:]
    a, b = _weights(tmp_path / "two"), _weights(tmp_path / "one")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2


def test_a_run_stopped_by_sigterm_resumes_and_completes(tmp_path, data):
    run_dir = tmp_path / "run"
    cmd = [*TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "unet_train", "train",
           *SMOKE, "--steps", "400", "--eval-every", "400", "--checkpoint-every", "2",
           "--run-dir", str(run_dir), "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "SIGTERM received" in err and "resume" in err, err[-2000:]
    stopped = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert 0 < stopped["step"] < 400 and not (run_dir / "metrics.json").exists()
    again = _run(cmd)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from {run_dir / 'checkpoint.pt'} at step" in again.stdout + again.stderr
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 400

    # resuming the 2-process folder with 1 process is refused, saying what to do
    (run_dir / "metrics.json").unlink()
    refused = _run([sys.executable, "-m", "unet_train", "train", *SMOKE, "--steps", "400",
                    "--eval-every", "400", "--checkpoint-every", "2", "--run-dir",
                    str(run_dir), "--data-dir", str(data)])
    assert refused.returncode != 0
    assert "written by 2 process(es)" in refused.stderr and "Traceback" not in refused.stderr


def test_two_machines_on_localhost_train_one_run(tmp_path, data):
    run_dir, port = tmp_path / "run", _free_port()
    procs = [subprocess.Popen(
        [*TORCHRUN, "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
         "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "t",
         "-m", "unet_train", "train", *SMOKE, "--steps", "6", "--eval-every", "3",
         "--run-dir", str(run_dir), "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        for node in (0, 1)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-1500:] for _, e in outs)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 6
    assert json.loads((run_dir / "environment.json").read_text())["world_size"] == 2
    assert sum(o.count("run directory:") for o, _ in outs) == 1
