"""The stated GPU cell beside C4: benchmarks/gpu_paper_isbi.py (a dry run on the CPU here) and
how the claims page shows it (unet_book.evidence.gpu_cell_note)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unet_book.evidence import GPU_CELL, gpu_cell_note
from unet_book.studies import source_digest
from unet_core.data import write_synthetic_isbi2012


@pytest.fixture(scope="module")
def dry_run(benchmark_script, tmp_path_factory) -> Path:
    """The script's dry run (--device cpu --quick) on a synthetic ISBI 2012 of 30 slices of
    392 px (a 572-px valid tile needs at least 388)."""
    root = tmp_path_factory.mktemp("gpu")
    write_synthetic_isbi2012(root / "data" / "isbi2012", n_train=30, n_test=1, size=392, seed=2,
                             scale=0.5)
    script = benchmark_script("gpu_paper_isbi")
    assert script.main([str(root / "data"), "--device", "cpu", "--quick",
                        "--out", str(root / "out")]) == 0
    return root / "out"


def test_the_dry_run_writes_one_cell_of_the_paper_recipe(dry_run) -> None:
    cell = json.loads((dry_run / GPU_CELL).read_text())
    assert cell["arm"] == "paper_w64_gpu" and cell["quick"] is True and cell["steps"] == 4
    cfg = cell["config"]
    # the paper's recipe on isbi_recipe's split (only the width is cut for the dry run)
    assert (cfg["profile"], cfg["dataset"], cfg["padding"], cfg["patch_size"]) == (
        "paper", "isbi2012", "valid", 572)
    assert (cfg["optimizer"], cfg["loss"], cfg["augmentation"], cfg["batch_norm"]) == (
        "sgd", "weighted_ce", "paper", False)
    assert cfg["val_images"] == 2 and cfg["isbi_gap"] == 2 and cfg["base_channels"] == 8
    assert 0 <= cell["metrics"]["rand_error"] <= 1 and cell["metrics"]["pixel_error"] <= 1
    assert cell["source_digest"] == source_digest()
    assert cell["fingerprint"]["data"]["source"] == "real"  # files given, not the stand-in


def test_the_full_run_is_the_paper_width_stopped_by_time(benchmark_script) -> None:
    cfg = benchmark_script("gpu_paper_isbi").config("cpu", 3.5, quick=False)
    assert cfg.base_channels == 64 and cfg.time_budget_min == 3.5 and cfg.steps >= 10_000
    assert cfg.tta == "none" and not cfg.tune_threshold  # as the isbi_recipe cells


@pytest.mark.parametrize("args, message", [
    (["--minutes", "9"], "--minutes 9.0: expected more than 0 and at most 4.5"),
    (["--device", "cpu", "--minutes", "0"], "expected more than 0"),
])
def test_bad_arguments_get_one_line(benchmark_script, tmp_path, capsys, args, message) -> None:
    assert benchmark_script("gpu_paper_isbi").main([str(tmp_path), "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_missing_data_folder_is_named(benchmark_script, tmp_path, capsys) -> None:
    assert benchmark_script("gpu_paper_isbi").main([str(tmp_path / "nope"), "--device", "cpu"]) == 2
    assert f"data folder {tmp_path / 'nope'} does not exist" in capsys.readouterr().err


def test_the_claims_page_says_when_there_is_no_gpu_cell(tmp_path) -> None:
    assert gpu_cell_note(tmp_path).startswith("**No GPU cell yet.**")


def test_the_claims_page_shows_the_cell_and_marks_a_dry_run_or_other_sources(dry_run,
                                                                              tmp_path) -> None:
    note = gpu_cell_note(dry_run)
    cell = json.loads((dry_run / GPU_CELL).read_text())
    assert note.startswith("**A dry run, not a result**") and "outside the verdicts" in note
    assert f"Rand error (unthinned, at 0.5) {cell['metrics']['rand_error']:.4f}" in note
    assert f"thinned V_rand {cell['metrics']['v_rand']:.4f} at the threshold chosen" in note
    assert 0 <= cell["challenge"]["threshold"] <= 1 and cell["metrics"]["warping_error"] >= 0
    assert "4 steps" in note and "Older result" not in note
    cell.update(quick=False, source_digest="0123456789ab",
                device={"device": "cuda", "gpu": "NVIDIA H200", "precision": "bf16",
                        "torch": "2.9.0+cu130"})
    (tmp_path / GPU_CELL).write_text(json.dumps(cell))
    note = gpu_cell_note(tmp_path)
    assert note.startswith("**Older result**")
    assert "on NVIDIA H200 (bf16, torch 2.9.0+cu130)" in note
    assert "0123456789ab" in note and "dry run" not in note
