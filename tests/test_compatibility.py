"""Files written by earlier versions of the code still work.

``tests/fixtures/smoke_model_v0/model.pt`` was written by the code before the package was
split into ``unet_core`` and ``unet_book`` (commit 6366e1e): a 4-step smoke run on a synthetic
DRIVE. ``expected.json`` holds what that code computed from it. Today's ``evaluate`` and
``predict`` must load it and give the same numbers (to float tolerance: bf16 inference kernels
may differ between CPUs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_core.cli import main
from unet_core.config import TrainConfig
from unet_core.runs import finished_run, load_model
from unet_core.train import train

FIXTURE = Path(__file__).parent / "fixtures" / "smoke_model_v0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def fixture_data(small_data_root) -> Path:
    """The DRIVE stand-in the fixtures were made on (``expected.json`` names it)."""
    return small_data_root


def test_old_model_file_loads_with_its_config_and_threshold():
    model, cfg, threshold = load_model(FIXTURE / "model.pt")
    assert cfg.profile == "smoke" and cfg.patch_size == 32
    assert threshold == pytest.approx(EXPECTED["threshold"])
    assert model.in_channels == 3 and model.out_channels == 1


def test_old_model_evaluates_to_the_numbers_it_gave_then(fixture_data, tmp_path):
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--checkpoint", str(FIXTURE / "model.pt"), "--data-dir",
                 str(fixture_data), "--json", str(out)])
    assert code == 0
    pooled = json.loads(out.read_text())["pooled"]
    for key, value in EXPECTED["test_pooled"].items():
        assert pooled[key] == pytest.approx(value, abs=2e-3), key


def test_old_model_predicts_the_probabilities_it_gave_then(fixture_data, tmp_path):
    image = fixture_data / "DRIVE" / "test" / "images" / f"{EXPECTED['first_test_image']}.tif"
    code = main(["predict", "--checkpoint", str(FIXTURE / "model.pt"), "--output",
                 str(tmp_path / "out"), str(image)])
    assert code == 0
    # 16-bit probability PNGs (value / 65535; they were 8-bit when the fixture was made): the
    # sum over 72x68 pixels agrees to about half an 8-bit level per pixel
    prob = np.asarray(Image.open(tmp_path / "out" / f"{image.stem}_prob.png"),
                      np.float64) / 65535
    assert prob.sum() == pytest.approx(EXPECTED["first_test_prob_sum"], abs=0.002 * prob.size)


RUN_V1 = Path(__file__).parent / "fixtures" / "smoke_run_v1_partial"


def test_a_run_folder_from_before_the_new_config_fields_resumes_to_the_same_weights(
        tmp_path, fixture_data):
    """Fields added since (checkpoint_every, grad_clip, deterministic, world_size) take their
    defaults: the old folder resumes, and ends as a fresh run of today's code does."""
    stored = json.loads((RUN_V1 / "config.json").read_text())
    assert "world_size" not in stored and "checkpoint_every" not in stored
    cfg = TrainConfig.from_dict(stored)
    run_dir = tmp_path / "old"
    shutil.copytree(RUN_V1, run_dir)
    resumed = train(cfg, run_dir, progress=False, data_root=fixture_data, log=lambda _: None)
    assert resumed.resumed_from == 4 and resumed.steps == 6
    fresh = train(cfg, tmp_path / "fresh", progress=False, data_root=fixture_data,
                  log=lambda _: None)
    a, b = (torch.load(r.run_dir / "model.pt", weights_only=True)["model"]
            for r in (resumed, fresh))
    # bit-equal on the CPU that wrote the fixture (AMD EPYC); on another CPU its step-4 state
    # carries that CPU's bf16 kernel rounding (3e-8 measured on an Intel Xeon, where two fresh
    # runs are bit-equal). Steps 5-6 move the state by ~0.3, so a resume that lost a step, the
    # optimizer or the schedule is far outside this bound.
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    moved = torch.load(RUN_V1 / "checkpoint.pt", weights_only=True)["model"]
    assert max((moved[k].float() - b[k].float()).abs().max().item() for k in b) > 1e-2
    assert finished_run(run_dir, cfg) is not None
