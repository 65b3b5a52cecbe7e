"""Provenance (unet_core.provenance): code and data fingerprints, and what they key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from unet_core.data import write_synthetic_drive
from unet_core.data.resolve import _DEFAULTS, GENERATOR_VERSION, MARKER, _normalise
from unet_core.provenance import (
    PACKAGE_DIR,
    code_fingerprint,
    covered_modules,
    data_fingerprint,
    dataset_fingerprint,
    describe,
    main,
    normalised_source,
    same_origin,
)


@pytest.fixture
def package_copy(tmp_path) -> Path:
    """A copy of unet_core's sources to edit."""
    copy = tmp_path / "unet_core"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def test_comments_docstrings_and_layout_do_not_count_statements_do() -> None:
    base = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    same = 'def f(x):\n    """Another doc,\n    longer."""\n\n    return (x +\n            1)\n'
    other = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert normalised_source(base) == normalised_source(same)
    assert normalised_source(base) != normalised_source(other)
    assert normalised_source('"""Only a docstring."""\n') == normalised_source("")


def test_covered_modules_are_the_ones_on_the_result_path() -> None:
    names = {p.relative_to(PACKAGE_DIR).as_posix() for p in covered_modules()}
    for needed in ("model.py", "train.py", "losses.py", "metrics.py", "tiling.py", "augment.py",
                   "weights.py", "evaluation.py", "data/sampler.py", "data/drive.py"):
        assert needed in names
    assert not names & {"cli.py", "curves.py", "compute.py", "provenance.py", "atomic.py"}


def test_a_statement_changes_the_code_fingerprint_a_docstring_does_not(package_copy) -> None:
    original = code_fingerprint(package_copy)
    assert original == code_fingerprint(PACKAGE_DIR)  # same sources, same fingerprint
    code_fingerprint.cache_clear()
    losses = package_copy / "losses.py"
    _edit(losses, '"""', '"""Edited docstring. ')  # the module docstring
    _edit(package_copy / "cli.py", "import", "# a comment\nimport")
    assert code_fingerprint(package_copy) == original
    code_fingerprint.cache_clear()
    _edit(package_copy / "model.py", "nn.Dropout(dropout)", "nn.Dropout2d(dropout)")
    changed = code_fingerprint(package_copy)
    assert changed != original
    code_fingerprint.cache_clear()


def test_data_fingerprint_follows_the_content(tmp_path) -> None:
    root = tmp_path / "DRIVE"
    write_synthetic_drive(root, n_train=2, n_test=1, size=(40, 36), seed=1)
    first = data_fingerprint(root, synthetic=False)
    assert first["source"] == "real" and first["files"] > 0
    assert data_fingerprint(root, synthetic=False) == first
    image = sorted((root / "training" / "images").iterdir())[0]
    content = bytearray(image.read_bytes())
    content[len(content) // 2] ^= 0xFF  # one byte of one image
    image.write_bytes(bytes(content))
    assert data_fingerprint(root, synthetic=False)["digest"] != first["digest"]


def test_same_origin_and_describe() -> None:
    a = {"key": "k", "code": "c1", "data": {"dataset": "drive", "source": "real",
                                            "digest": "d", "files": 3}}
    assert same_origin(a, dict(a)) and not same_origin(a, {**a, "code": "c2"})
    assert not same_origin(a, None) and not same_origin(None, None)
    assert describe(a) == "code c1, real DRIVE data d (3 files)"
    assert "no provenance" in describe(None)


def _fake_default_stand_in(data_dir: Path) -> None:
    """A tiny stand-in in the cache the resolver uses when the real DRIVE is absent (marked
    as the default stand-in, so that the test need not write the full-size one)."""
    cache = data_dir / "synthetic" / "DRIVE"
    write_synthetic_drive(cache, n_train=3, n_test=2, size=(72, 68), seed=3)
    expected = _normalise({"dataset": "drive", "version": GENERATOR_VERSION,
                           "options": _DEFAULTS["drive"]})
    (cache / MARKER).write_text(json.dumps(expected))


def test_a_synthetic_run_is_not_served_once_the_real_data_is_there(tmp_path, monkeypatch):
    from unet_book.experiments import load_or_train
    from unet_core.config import TrainConfig

    data_dir = tmp_path / "data"
    _fake_default_stand_in(data_dir)
    monkeypatch.setenv("UNET_DATA_DIR", str(data_dir))
    monkeypatch.setenv("UNET_RUNS_DIR", str(tmp_path / "runs"))
    cfg = TrainConfig.from_profile("smoke", patch_size=32, eval_tile=32, steps=2, eval_every=2)
    quiet = {"progress": False, "log": lambda _: None}
    with pytest.warns(UserWarning, match="synthetic"):
        on_stand_in = load_or_train(cfg, **quiet)
    assert on_stand_in.synthetic and on_stand_in.provenance["data"]["source"] == "synthetic"
    stored = json.loads((on_stand_in.run_dir / "provenance.json").read_text())
    assert stored == on_stand_in.provenance
    assert json.loads((on_stand_in.run_dir / "metrics.json").read_text())["provenance"] == stored

    write_synthetic_drive(data_dir / "DRIVE", n_train=3, n_test=2, size=(72, 68), seed=4)
    on_real = load_or_train(cfg, **quiet)  # the "real" DRIVE is there now
    assert on_real.run_dir != on_stand_in.run_dir
    assert not on_real.synthetic and on_real.provenance["data"]["source"] == "real"
    assert on_real.provenance["code"] == on_stand_in.provenance["code"]
    assert dataset_fingerprint("drive")["key"] in on_real.run_dir.name

    from unet_core.runs import finished_run
    with pytest.raises(ValueError, match="other code or on other data"):
        finished_run(on_stand_in.run_dir, cfg, provenance=on_real.provenance)


def test_command_line_keys_and_bad_dataset(capsys, small_data_root) -> None:
    assert main(["--key", "--data-dir", str(small_data_root), "drive"]) == 0
    code, drive = capsys.readouterr().out.split()
    assert code == code_fingerprint() and drive.startswith("drive:")
    assert main(["--data-dir", str(small_data_root), "mnist"]) == 2
    assert "dataset 'mnist' is not valid; expected one of drive, isbi2012" in (
        capsys.readouterr().err)
