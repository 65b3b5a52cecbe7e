"""CUDA checks (``pytest -m cuda``): skipped on machines without a GPU, run by
``benchmarks/gpu_check.py`` on one."""

from __future__ import annotations

import pytest
import torch

from unet_core.data import write_synthetic_drive
from unet_core.model import UNet
from unet_core.tiling import predict_tiled
from unet_train.config import TrainConfig
from unet_train.devices import choose_precision
from unet_train.runs import load_model
from unet_train.train import train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def test_tiled_prediction_on_cuda_equals_the_cpu_one():
    torch.manual_seed(0)
    net = UNet(3, 1, 8, 3, "valid").eval()
    image = torch.rand(3, 150, 131)
    cpu = predict_tiled(net, image, 124)
    gpu = predict_tiled(net.cuda(), image, 124)
    assert torch.allclose(cpu, gpu, atol=1e-4)


def test_cuda_gets_mixed_precision():
    p = choose_precision(torch.device("cuda"), True)
    assert p.autocast in (torch.bfloat16, torch.float16)
    assert p.grad_scaler == (p.autocast is torch.float16)


def test_deterministic_cuda_run_resumes_to_the_same_weights_and_loads_on_cuda(tmp_path):
    write_synthetic_drive(tmp_path / "data" / "DRIVE", n_train=3, n_test=2, size=(72, 68),
                          seed=1)
    cfg = TrainConfig.from_profile("smoke", device="cuda", patch_size=32, eval_tile=32,
                                   steps=6, eval_every=3, deterministic=True,
                                   augmentation="none")
    try:
        train(cfg, tmp_path / "a", data_root=tmp_path / "data", progress=False, stop_after=3)
        resumed = train(cfg, tmp_path / "a", data_root=tmp_path / "data", progress=False)
        fresh = train(cfg, tmp_path / "b", data_root=tmp_path / "data", progress=False)
    finally:
        torch.use_deterministic_algorithms(False)
    a = torch.load(resumed.run_dir / "model.pt", weights_only=True)["model"]
    b = torch.load(fresh.run_dir / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    model, _, _ = load_model(resumed.run_dir / "model.pt", device="cuda")
    assert next(model.parameters()).is_cuda
