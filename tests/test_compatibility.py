"""Files written by earlier versions of the code still work.

``tests/fixtures/smoke_model_v0/model.pt`` was written by the code before the package was
split into ``unet_core`` and ``unet_book`` (commit 6366e1e): a 4-step smoke run on a synthetic
DRIVE. ``expected.json`` holds what that code computed from it, and what today's code computes on
another CPU kind, each record with the CPU kind, precision, memory format and threads that made
it. Today's ``evaluate`` and ``predict`` must load it and give the same numbers: bit for bit where
this machine is of the record's kind, within a stated tolerance elsewhere (in the record's
precision: bf16 is emulated where the CPU has no native bf16).

``tests/fixtures/smoke_run_v1_partial`` is an older run folder stopped after 4 of 6 steps; its
``made_on.json`` says where. It must resume with today's code.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_train.checkpoint import save_checkpoint
from unet_train.cli import main
from unet_train.config import TrainConfig
from unet_train.devices import cpu_kind
from unet_train.placement import MEMORY_FORMAT_ENV, PRECISION_ENV
from unet_train.runs import finished_run, load_model
from unet_train.train import train

FIXTURE = Path(__file__).parent / "fixtures" / "smoke_model_v0"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def fixture_data(small_data_root) -> Path:
    """The DRIVE stand-in the fixtures were made on (``expected.json`` names it)."""
    return small_data_root


def test_old_model_file_loads_with_its_config_and_threshold():
    model, cfg, threshold = load_model(FIXTURE / "model.pt")
    assert cfg.profile == "smoke" and cfg.patch_size == 32
    assert threshold == pytest.approx(EXPECTED["threshold"])  # stored in the file
    assert model.in_channels == 3 and model.out_channels == 1


def _matches(made_on: dict) -> bool:
    """Whether this machine runs the kernels ``made_on`` names: CPU kind and thread count."""
    return made_on["cpu_kind"] == cpu_kind() and made_on["threads"] == torch.get_num_threads()


def _placed_like(monkeypatch, made_on: dict) -> None:
    """Compute in the precision and memory format the record was made in (bf16 on a CPU
    without native bf16 is emulated: slower, and rounded by other kernels)."""
    monkeypatch.setenv(PRECISION_ENV, made_on["precision"])
    monkeypatch.setenv(MEMORY_FORMAT_ENV, made_on["memory_format"])


def _evaluate_fixture(data: Path, out: Path) -> dict:
    assert main(["evaluate", "--checkpoint", str(FIXTURE / "model.pt"), "--data-dir",
                 str(data), "--json", str(out)]) == 0
    return json.loads(out.read_text())["pooled"]


RECORDS = EXPECTED["records"]
IDS = [f"{r['made_on']['precision']}-{r['made_on']['cpu_kind']}" for r in RECORDS]


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_old_model_evaluates_bit_for_bit_on_the_cpu_kind_that_recorded_it(
        fixture_data, tmp_path, monkeypatch, record):
    made_on = record["made_on"]
    if not _matches(made_on):
        pytest.skip(f"recorded on {made_on['cpu_kind']} with {made_on['threads']} threads; this "
                    f"is {cpu_kind()} with {torch.get_num_threads()}: the tolerance test checks it")
    _placed_like(monkeypatch, made_on)
    pooled = _evaluate_fixture(fixture_data, tmp_path / "metrics.json")
    assert {k: pooled[k] for k in record["test_pooled"]} == record["test_pooled"]


@pytest.mark.parametrize("record", RECORDS, ids=IDS)
def test_old_model_evaluates_to_the_numbers_it_gave_then(fixture_data, tmp_path, monkeypatch,
                                                        record):
    """On any CPU, in the record's precision. The model is near chance (AUC 0.55): many of its
    probabilities sit next to the threshold, so rounding alone flips pixels and moves the
    thresholded metrics. Measured on an AVX2-only AMD EPYC: emulated bf16 against the record
    of native bf16 differs by at most 2.8e-3 (sensitivity), fp32 against that record by 2.3e-3.
    A wrong channel order, scaling or threshold moves them by far more."""
    _placed_like(monkeypatch, record["made_on"])
    pooled = _evaluate_fixture(fixture_data, tmp_path / "metrics.json")
    for key, value in record["test_pooled"].items():
        assert pooled[key] == pytest.approx(value, abs=5e-3), key


def test_old_model_predicts_the_probabilities_it_gave_then(fixture_data, tmp_path):
    image = fixture_data / "DRIVE" / "test" / "images" / f"{EXPECTED['first_test_image']}.tif"
    code = main(["predict", "--checkpoint", str(FIXTURE / "model.pt"), "--output",
                 str(tmp_path / "out"), str(image)])
    assert code == 0
    # 16-bit probability PNGs (value / 65535; they were 8-bit when the fixture was made): the
    # sum over 72x68 pixels agrees to about half an 8-bit level per pixel
    prob = np.asarray(Image.open(tmp_path / "out" / f"{image.stem}_prob.png"),
                      np.float64) / 65535
    assert prob.sum() == pytest.approx(RECORDS[0]["first_test_prob_sum"], abs=0.002 * prob.size)


RUN_V1 = Path(__file__).parent / "fixtures" / "smoke_run_v1_partial"


MADE_ON_V1 = json.loads((RUN_V1 / "made_on.json").read_text())
#: What a training checkpoint holds of the run's state (the rest is the format: which keys
#: exist, the stored config).
STATE_KEYS = ("model", "optimizer", "scheduler", "step", "minutes", "history", "rng")


def _resume_and_fresh(cfg: TrainConfig, run_dir: Path, tmp_path: Path, data: Path):
    quiet = {"progress": False, "data_root": data, "log": lambda _: None}
    resumed = train(cfg, run_dir, **quiet)
    assert resumed.resumed_from == 4 and resumed.steps == 6
    fresh = train(cfg, tmp_path / "fresh", **quiet)
    a, b = (torch.load(r.run_dir / "model.pt", weights_only=True)["model"]
            for r in (resumed, fresh))
    assert finished_run(run_dir, cfg) is not None
    return a, b


def _old_config() -> TrainConfig:
    stored = json.loads((RUN_V1 / "config.json").read_text())
    assert "world_size" not in stored and "checkpoint_every" not in stored
    assert "precision" not in stored and "memory_format" not in stored
    return TrainConfig.from_dict(stored)


def test_a_run_folder_from_before_the_new_config_fields_resumes_bit_for_bit(
        tmp_path, fixture_data, monkeypatch):
    """On any CPU: the old folder's format (its config without the fields added since, its
    checkpoint without environment, provenance and world size) with the state of steps 1-4
    computed here by today's code, so that the resumed run must equal a fresh one exactly.
    Fields added since take their defaults."""
    _placed_like(monkeypatch, MADE_ON_V1)  # one placement for both runs, whatever is cached
    cfg = _old_config()
    here = train(cfg, tmp_path / "here", progress=False, data_root=fixture_data,
                 log=lambda _: None, stop_after=4)
    assert here.steps == 4
    old = torch.load(RUN_V1 / "checkpoint.pt", weights_only=True)
    new = torch.load(tmp_path / "here" / "checkpoint.pt", weights_only=True)
    assert set(new) - set(old) >= {"environment", "provenance", "world_size"}
    run_dir = tmp_path / "old"
    shutil.copytree(RUN_V1, run_dir)
    save_checkpoint(run_dir / "checkpoint.pt", old | {k: new[k] for k in STATE_KEYS})
    a, b = _resume_and_fresh(cfg, run_dir, tmp_path, fixture_data)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    moved = new["model"]
    assert max((moved[k].float() - b[k].float()).abs().max().item() for k in b) > 1e-2


def test_a_run_folder_from_before_the_new_config_fields_resumes_to_the_same_weights(
        tmp_path, fixture_data, monkeypatch):
    """The folder as it was written, on any CPU, in the precision that wrote it. Where the CPU
    kind is the one that wrote it, bit for bit; elsewhere its step-4 state carries that CPU's
    bf16 kernels' rounding and steps 5-6 are computed by other kernels: measured on an AVX2-only
    AMD EPYC (bf16 emulated) 0.0099, against 0.18 when the resume loses the random states. The
    exact test above covers the rest on every CPU."""
    _placed_like(monkeypatch, MADE_ON_V1)
    cfg = _old_config()
    run_dir = tmp_path / "old"
    shutil.copytree(RUN_V1, run_dir)
    a, b = _resume_and_fresh(cfg, run_dir, tmp_path, fixture_data)
    tolerance = 0.0 if _matches(MADE_ON_V1) else 0.03
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=tolerance, msg=k)
