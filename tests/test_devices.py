"""Device selection and the precision each device gets (capability checks faked)."""

from __future__ import annotations

import pytest
import torch

from unet_train import devices
from unet_train.devices import choose_precision, environment, pick_device


@pytest.mark.parametrize("cpu_bf16, expected", [(True, torch.bfloat16), (False, None)])
def test_cpu_gets_bf16_only_where_it_computes_bf16(cpu_bf16, expected):
    p = choose_precision(torch.device("cpu"), True, cpu_bf16=cpu_bf16)
    assert p.autocast is expected and not p.grad_scaler
    assert ("no native bf16" in p.note) == (not cpu_bf16)


@pytest.mark.parametrize("cuda_bf16, dtype, scaler", [(True, torch.bfloat16, False),
                                                       (False, torch.float16, True)])
def test_cuda_gets_bf16_or_fp16_with_a_scaler(cuda_bf16, dtype, scaler):
    p = choose_precision(torch.device("cuda"), True, cuda_bf16=cuda_bf16)
    assert p.autocast is dtype and p.grad_scaler is scaler


@pytest.mark.parametrize("device", ["cpu", "cuda", "mps"])
def test_mixed_precision_off_is_fp32_everywhere(device):
    p = choose_precision(torch.device(device), False, cpu_bf16=True, cuda_bf16=True)
    assert p.autocast is None and p.name == "fp32" and not p.grad_scaler


def test_mps_gets_fp16_with_a_scaler():
    p = choose_precision(torch.device("mps"), True)
    assert (p.autocast, p.grad_scaler, p.name) == (torch.float16, True, "fp16")


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: True)
    assert pick_device("auto").type == "mps"
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    assert pick_device("auto").type == "cpu"


def test_an_unavailable_device_is_an_error_that_says_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "mps_available", lambda: False)
    for name in ("cuda", "mps"):
        with pytest.raises(ValueError, match=rf"device='{name}'.*not available.*cpu or auto"):
            pick_device(name)
    with pytest.raises(ValueError, match="expected one of auto, cpu, cuda, mps"):
        pick_device("tpu")


def test_this_machines_cpu_check_agrees_with_onednn():
    assert devices.cpu_supports_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_environment_records_device_precision_threads_and_versions():
    p = choose_precision(torch.device("cpu"), True, cpu_bf16=False)
    info = environment(torch.device("cpu"), p)
    assert info["device"] == "cpu" and info["precision"] == "fp32"
    assert info["threads"] == torch.get_num_threads() and info["torch"] == torch.__version__
    assert {"numpy", "python", "processor"} <= set(info)
