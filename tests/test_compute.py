"""The compute accounting of the benchmarks (unet_train.compute)."""

from __future__ import annotations

import re

import pytest
import torch

from unet_train.compute import (
    REFERENCE_GFLOPS,
    code_version,
    machine_summary,
    matmul_gflops,
    normalised_minutes,
    training_flops,
)


@pytest.mark.parametrize(("wall", "gflops", "expected"), [(10.0, 400.0, 10.0), (6.5, 819.0, 13.3),
                                                          (7.0, 200.0, 3.5)])
def test_normalised_minutes_scale_wall_time_by_the_matmul_rate(wall, gflops, expected):
    assert normalised_minutes(wall, gflops) == pytest.approx(expected, abs=0.01)
    assert REFERENCE_GFLOPS == 400.0


@pytest.mark.parametrize(("c_in", "c_out", "side"), [(3, 8, 16), (16, 16, 32)])
def test_training_flops_count_a_convolution_forward_and_backward(c_in, c_out, side):
    conv = torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    x = torch.randn(2, c_in, side, side)
    forward = 2 * c_in * c_out * 9 * side * side * 2  # multiply-adds x 2, batch 2
    assert training_flops(lambda: conv(x)) == forward
    # Backward of a first layer: the weight gradient only (the input needs none): 2x forward.
    assert training_flops(lambda: conv(x).sum().backward()) == 2 * forward
    x.requires_grad_(True)  # and the input gradient too: 3x forward
    assert training_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_matmul_rate_and_machine_summary_are_measured():
    rate = matmul_gflops(torch.float32, size=256, repeats=3)
    assert 0.1 < rate < 1e6
    summary = machine_summary(torch.float32)
    assert summary["matmul_dtype"] == "float32" and summary["matmul_gflops"] > 0
    assert summary["threads"] == torch.get_num_threads()


def test_code_version_names_a_commit_or_says_unknown(tmp_path):
    assert re.fullmatch(r"[0-9a-f]{7,40}(-dirty)?|unknown", code_version())
    assert code_version(tmp_path) == "unknown"  # not a git checkout
