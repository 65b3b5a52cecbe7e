"""unet_book.browser_model: the tile network in ONNX equals the PyTorch one, through the same
overlap-tile plan, and its manifest describes it."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch

from unet_book.browser_model import (
    MANIFEST_FILE,
    ONNX_FILE,
    OnnxTileNet,
    export_run,
    read_manifest,
)
from unet_book.experiments import load_or_train
from unet_core.data import write_synthetic_drive
from unet_core.tiling import plan_axis, predict_tiled
from unet_train.config import TrainConfig
from unet_train.runs import load_model

TOLERANCE = 1e-4  # logits; measured: a few 1e-6 for the smoke net, 2e-5 for the cpu profile's


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A 2-step smoke run on a tiny synthetic DRIVE, exported once for the module."""
    root = tmp_path_factory.mktemp("browser")
    write_synthetic_drive(root / "data" / "DRIVE", n_train=3, n_test=2, size=(72, 68), seed=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNET_DATA_DIR", str(root / "data"))
        mp.setenv("UNET_RUNS_DIR", str(root / "runs"))
        cfg = TrainConfig.from_profile("smoke", patch_size=32, eval_tile=32, steps=2,
                                       eval_every=2)
        run = load_or_train(cfg, progress=False, log=lambda _: None)
        return run, export_run(run.run_dir, root / "browser"), root / "browser"


def test_the_manifest_describes_the_file_and_the_plan(exported) -> None:
    run, record, folder = exported
    data = (folder / ONNX_FILE).read_bytes()
    assert record == json.loads((folder / MANIFEST_FILE).read_text()) == read_manifest(folder)
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["bytes"] == len(data)
    model, cfg, threshold = load_model(run.run_dir / "model.pt")
    plan = plan_axis(model, 100, cfg.eval_tile)
    assert (record["tile"], record["out"], record["crop"]) == (plan.tile, plan.out, plan.crop)
    assert record["stride"] == plan.stride and record["overlap"] == cfg.eval_tile - plan.stride
    assert record["probability"] == "sigmoid" and record["threshold"] == threshold
    assert record["in_channels"] == model.in_channels and record["channels"] == cfg.channels
    assert record["provenance"]["code"] == run.provenance["code"]
    assert 0 <= record["largest_difference_to_torch"] < TOLERANCE


def test_a_changed_file_is_refused(exported, tmp_path) -> None:
    _, _, folder = exported
    for name in (ONNX_FILE, MANIFEST_FILE):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    (tmp_path / ONNX_FILE).write_bytes((folder / ONNX_FILE).read_bytes() + b"\0")
    with pytest.raises(ValueError, match="SHA-256 is not the one model.json records"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("shape", [(1, 1), (10, 10), (37, 61), (100, 77)])
def test_the_onnx_file_tiles_like_the_network(exported, shape) -> None:  # noqa: ANN001
    run, _, folder = exported
    model, cfg, _ = load_model(run.run_dir / "model.pt")
    image = torch.rand(model.in_channels, *shape, generator=torch.Generator().manual_seed(3))
    expected = predict_tiled(model, image, cfg.eval_tile, batch_size=2)
    got = predict_tiled(OnnxTileNet(model, folder / ONNX_FILE), image,
                        cfg.eval_tile, batch_size=2)
    assert got.shape == expected.shape == (1, *shape)
    assert float(np.abs(got.numpy() - expected.numpy()).max()) < TOLERANCE


def test_an_export_is_made_once_per_model(exported, tmp_path) -> None:
    """export_run into the run's own folder: the second call reads the record back without
    exporting; a changed model.pt (its SHA-256) exports again."""
    import shutil

    run, _, _ = exported
    copy = tmp_path / run.run_dir.name
    shutil.copytree(run.run_dir, copy, ignore=shutil.ignore_patterns("browser"))
    first = export_run(copy)
    onnx_file = copy / "browser" / ONNX_FILE
    stamp = onnx_file.stat().st_mtime_ns
    again = export_run(copy)
    assert again == first and onnx_file.stat().st_mtime_ns == stamp
    assert first["model_sha256"] == hashlib.sha256((copy / "model.pt").read_bytes()).hexdigest()
    assert first["run"] == copy.name and first["outside_fov"] in ("ignore", "background")
    state = torch.load(copy / "model.pt", weights_only=True)
    state["threshold"] = 0.25  # another model file: exported again, with its threshold
    torch.save(state, copy / "model.pt")
    third = export_run(copy)
    assert third["model_sha256"] != first["model_sha256"] and third["threshold"] == 0.25


def test_the_chapter_lines_name_the_difference_and_the_costs(exported, tmp_path) -> None:
    from unet_book.browser_model import browser_costs, runtime_difference
    from unet_book.explorer import run_cases

    run, record, _ = exported
    case = run_cases(run.run_dir)[0]
    text = runtime_difference(run.run_dir, case)
    found = re.search(r"is (\S+) \(logits", text)
    assert found and float(found.group(1)) < TOLERANCE, text
    assert "F1 at the threshold" in text
    assert "no browser timings yet" in browser_costs([record], tmp_path / "absent.json")
    timings = {"runtime_total_bytes": 15e6, "chromium": "Chromium 1", "cpu": "CPU", "cores": 2,
               "commit": "abc", "date": "2026-12-05", "repeat": 3, "models": {"run-a": {}},
               "one_thread": {"drive_565x584": {"median_network_s": 2.5, "tiles": 9,
                                                "threads": 1},
                              "outside_fov_positive": {"images": 20, "above": 3,
                                                       "pixels": 2000}},
               "isolated": {"drive_565x584": {"median_network_s": 1.5, "tiles": 9,
                                              "threads": 2}}}
    (tmp_path / "speed.json").write_text(json.dumps(timings))
    text = browser_costs([record], tmp_path / "speed.json")
    assert "2.50 s for its 9 tiles with 1 thread, 1.50 s with 2 threads" in text
    assert "15.0 MB" in text and "commit abc" in text and "with the runs run-a" in text
    assert "the page gave 3 of 2000 pixels" in text
