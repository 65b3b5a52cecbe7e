"""Shared test settings: deterministic torch seed for every test (NumPy code takes Generators),
matplotlib without a display (every figure closed after each test), a cache directory of the
session's own, and a tiny synthetic data directory."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import matplotlib

# The suite never reads or writes the developer's cache (unet_train.placement's timings, the
# provenance probe): one fresh cache for the session, shared with the subprocesses it starts.
os.environ["UNET_CACHE_DIR"] = tempfile.mkdtemp(prefix="unet-test-cache-")

matplotlib.use("Agg")  # before any test module imports pyplot

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from unet_book.experiments import load_or_train  # noqa: E402
from unet_core.data import write_synthetic_drive, write_synthetic_isbi2012  # noqa: E402
from unet_core.model import UNet  # noqa: E402
from unet_train.config import TrainConfig  # noqa: E402


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` imported as a module (benchmarks is no package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script("study")``: a benchmarks/ script as a module."""
    return load_benchmark


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def valid_net() -> UNet:
    """A small valid-padding U-Net in eval mode (tiling and padding tests)."""
    torch.manual_seed(1)
    return UNet(3, 2, 4, 3, "valid").eval()


@pytest.fixture(scope="module")
def same_net() -> UNet:
    """Its same-padding twin."""
    torch.manual_seed(2)
    return UNet(3, 2, 4, 3, "same").eval()


@pytest.fixture(scope="session")
def small_data_root(tmp_path_factory) -> Path:
    """A tiny synthetic DRIVE (3 train, 2 test, 72x68) and ISBI 2012 (10 slices of 64x64)."""
    root = tmp_path_factory.mktemp("data")
    write_synthetic_drive(root / "DRIVE", n_train=3, n_test=2, size=(72, 68), seed=1)
    write_synthetic_isbi2012(root / "isbi2012", n_train=10, n_test=1, size=64, seed=1, scale=0.5)
    return root


@pytest.fixture
def smoke_drive_run(tmp_path, monkeypatch):
    """A finished 2-step smoke run on a tiny synthetic DRIVE, with UNET_DATA_DIR and
    UNET_RUNS_DIR (``tmp_path / "runs"``) pointing at this test's folders."""
    write_synthetic_drive(tmp_path / "data" / "DRIVE", n_train=3, n_test=2, size=(72, 68),
                          seed=4)
    monkeypatch.setenv("UNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("UNET_RUNS_DIR", str(tmp_path / "runs"))
    cfg = TrainConfig.from_profile("smoke", patch_size=32, eval_tile=32, steps=2, eval_every=2)
    return load_or_train(cfg, progress=False, log=lambda _: None)
