"""Provenance (unet_train.provenance, unet_train.probe): fingerprints of what the code computes
and of the data, and what they key.

The code fingerprint follows behaviour: a copy of the package is edited and its key computed
in a fresh process with the copy first on the path and an empty cache, so the copy's code is
what runs; refactorings keep the key, changed formulas and rules change it."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unet_core.data import write_synthetic_drive
from unet_core.data.resolve import _DEFAULTS, GENERATOR_VERSION, MARKER, _normalise
from unet_train import provenance
from unet_train.probe import available, digest
from unet_train.provenance import (
    PACKAGES,
    PROBE_CACHE,
    SOURCE_ROOT,
    code_fingerprint,
    code_from_probe,
    covered_modules,
    data_fingerprint,
    dataset_fingerprint,
    describe,
    main,
    normalised_source,
    probe_digests,
    same_origin,
    source_key,
)


@pytest.fixture
def package_copy(tmp_path) -> Path:
    """A copy of the sources of ``unet_core`` and ``unet_train`` to edit (the folder that
    holds both)."""
    root = tmp_path / "src"
    for package in PACKAGES:
        shutil.copytree(SOURCE_ROOT / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def _function_lines(path: Path, name: str) -> tuple[list[str], int, int]:
    """The module's lines and the first and past-the-end line index of function ``name``."""
    text = path.read_text()
    node = next(n for n in ast.walk(ast.parse(text))
                if isinstance(n, ast.FunctionDef) and n.name == name)
    return text.splitlines(keepends=True), node.lineno - 1, node.end_lineno


def _rename_locals(path: Path, function: str, names: dict[str, str]) -> None:
    """Rename the local variables ``names`` inside ``function`` only (whole words)."""
    lines, first, end = _function_lines(path, function)
    body = "".join(lines[first:end])
    for old, new in names.items():
        assert re.search(rf"\b{old}\b", body), f"{old} not in {function}"
        body = re.sub(rf"\b{old}\b", new, body)
    path.write_text("".join(lines[:first]) + body + "".join(lines[end:]))


def _move_function(path: Path, function: str, new_module: str, header: str) -> None:
    """Move ``function`` from module ``path`` into a new module of the package (``header``:
    its imports) and import it back where it was."""
    lines, first, end = _function_lines(path, function)
    package = path.parent
    (package / f"{new_module}.py").write_text(
        f'"""Moved out of {path.stem}."""\n\nfrom __future__ import annotations\n\n{header}\n\n\n'
        + "".join(lines[first:end]))
    rest = "".join(lines[:first] + lines[end:])
    anchor = "\nfrom torch import nn\n"
    assert anchor in rest
    path.write_text(rest.replace(anchor, f"{anchor}\nfrom {package.name}.{new_module} import "
                                         f"{function}\n", 1))


def _provenance_of(root: Path, data_root: Path, cache: Path) -> dict:
    """``python -m unet_train.provenance drive`` of the packages under ``root`` in a fresh
    process: ``root`` first on the path, the user cache in ``cache`` (empty)."""
    env = {**os.environ, "PYTHONPATH": str(root), "UNET_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-m", "unet_train.provenance", "--data-dir",
                           str(data_root), "drive"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cached = json.loads((cache / PROBE_CACHE).read_text())
    assert list(cached) == [source_key(root)]  # the copy's sources were probed
    return json.loads(done.stdout)["drive"]


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before["probe"] if before["probe"][name] != after["probe"][name]}


@pytest.fixture
def current(small_data_root) -> dict:
    """The provenance of the package as it is (drive, on the small data root)."""
    return dataset_fingerprint("drive", small_data_root)


def test_comments_docstrings_and_layout_do_not_count_statements_do() -> None:
    """The probe cache's key (:func:`source_key`) reads syntax trees."""
    base = 'def f(x):\n    """Doc."""\n    return x + 1  # one\n'
    same = 'def f(x):\n    """Another doc,\n    longer."""\n\n    return (x +\n            1)\n'
    other = 'def f(x):\n    """Doc."""\n    return x + 2\n'
    assert normalised_source(base) == normalised_source(same)
    assert normalised_source(base) != normalised_source(other)
    assert normalised_source('"""Only a docstring."""\n') == normalised_source("")


def test_covered_modules_are_the_ones_on_the_result_path() -> None:
    names = {p.relative_to(SOURCE_ROOT).as_posix() for p in covered_modules()}
    for needed in ("unet_core/model.py", "unet_train/train.py", "unet_core/losses.py",
                   "unet_core/metrics.py", "unet_core/tiling.py", "unet_core/augment.py",
                   "unet_core/weights.py", "unet_train/evaluation.py",
                   "unet_core/data/sampler.py", "unet_core/data/drive.py",
                   "unet_train/probe.py", "unet_train/config.py"):
        assert needed in names
    assert not names & {f"unet_train/{m}.py" for m in ("cli", "curves", "compute",
                                                       "provenance", "atomic")}


def test_the_fingerprint_is_the_digest_of_the_probe(current) -> None:
    probe = current["probe"]
    assert current["code"] == code_fingerprint() == code_from_probe(probe)
    for component in ("data.drive.green_clahe", "sampler.paper.valid", "loss.weighted_ce",
                      "schedule.onecycle", "train.paper", "inference.same.d4",
                      "threshold.validation", "evaluate.drive", "evaluate.isbi2012", "fov"):
        assert re.fullmatch(r"[0-9a-f]{12}", probe[component]), component
    assert code_from_probe({**probe, "fov": "0" * 12}) != current["code"]


def test_renaming_local_variables_keeps_the_code(package_copy, small_data_root, tmp_path,
                                                 current) -> None:
    _rename_locals(package_copy / "unet_core/losses.py", "soft_dice",
                   {"intersection": "overlap", "total": "denominator"})
    _rename_locals(package_copy / "unet_core/metrics.py", "best_threshold", {"values": "scores"})
    assert source_key(package_copy) != source_key(SOURCE_ROOT)  # the syntax did change
    after = _provenance_of(package_copy, small_data_root, tmp_path / "cache")
    assert after["code"] == current["code"] and after["key"] == current["key"]


def test_moving_a_function_into_a_new_module_keeps_the_code(package_copy, small_data_root,
                                                            tmp_path, current) -> None:
    _move_function(package_copy / "unet_core/losses.py", "_binary_nll", "likelihood",
                   "import torch\nimport torch.nn.functional as F")
    assert "def _binary_nll" not in (package_copy / "unet_core/losses.py").read_text()
    after = _provenance_of(package_copy, small_data_root, tmp_path / "cache")
    assert after["code"] == current["code"] and after["key"] == current["key"]


def test_changing_a_formula_changes_the_code(package_copy, small_data_root, tmp_path,
                                             current) -> None:
    """The soft Dice with a squared denominator (V-Net's variant) is another loss."""
    _edit(package_copy / "unet_core/losses.py", "total = p.sum(dim=dims) + y.sum(dim=dims)",
          "total = (p * p).sum(dim=dims) + y.sum(dim=dims)")
    after = _provenance_of(package_copy, small_data_root, tmp_path / "cache")
    assert after["code"] != current["code"] and after["key"] != current["key"]
    assert {"loss.dice", "loss.bce_dice", "train.isbi2012", "train.cpu"} <= _changed(current,
                                                                                     after)
    assert not {c for c in _changed(current, after) if c.startswith(("data.", "metrics."))}


#: Changes that have burned replications: (module, old, new, a component that must change).
BURNED = {
    "threshold rule: the median of per-image optima, not the pooled optimum": (
        "unet_core/thresholds.py", 'return {"threshold": best.threshold,',
        'return {"threshold": float(np.median([b.threshold for b in per_image])),',
        "threshold.training_set"),
    "FOV masking: metrics over the whole image": (
        "unet_train/evaluation.py",
        "fovs = None if examples[0].fov is None else [e.fov for e in examples]",
        "fovs = None", "evaluate.drive"),
    "one-cycle's late phase: a final learning rate of lr / 2500, not lr / 250000": (
        "unet_train/optim.py", "pct_start=0.15,", "pct_start=0.15, final_div_factor=100.0,",
        "schedule.onecycle"),
    "Rand error: predicted boundary pixels as one segment (scikit-image), not singletons": (
        "unet_core/metrics.py",
        'pred_boundary: BoundaryMode = "singletons",\n    self_pairs: bool = True,\n) -> float:',
        'pred_boundary: BoundaryMode = "segment",\n    self_pairs: bool = True,\n) -> float:',
        "evaluate.isbi2012"),
}


@pytest.mark.parametrize("change", list(BURNED))
def test_changes_that_burned_replications_are_seen(change, package_copy, small_data_root,
                                                   tmp_path, current) -> None:
    module, old, new, component = BURNED[change]
    _edit(package_copy / module, old, new)
    after = _provenance_of(package_copy, small_data_root, tmp_path / "cache")
    assert after["code"] != current["code"]
    assert component in _changed(current, after)


def test_one_and_two_threads_give_the_same_digests() -> None:
    """The probe rounds away what the thread count changes (the cached digests: one thread).
    Two threads in a fresh process; passive OpenMP waits keep it fast on a busy machine."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-m", "unet_train.probe", "--threads", "2"],
                          cwd=SOURCE_ROOT, env=env, capture_output=True, text=True,
                          timeout=600, check=True)
    assert json.loads(done.stdout) == probe_digests()


def test_a_component_without_its_module_is_marked_unavailable() -> None:
    """A bare GPU image without albumentations still gets a fingerprint (another one)."""
    def needs_albumentations():
        raise ModuleNotFoundError("No module named 'albumentations'", name="albumentations")

    assert digest(available(needs_albumentations)) == "unavailable: albumentations"
    assert digest(available(lambda: 1.0)) == digest(1.0)


@pytest.fixture
def fresh_probe_cache(tmp_path, monkeypatch):
    """An empty user cache, and the in-process caches cleared before and after."""
    monkeypatch.setenv("UNET_CACHE_DIR", str(tmp_path / "cache"))
    probe_digests.cache_clear()
    code_fingerprint.cache_clear()
    yield tmp_path / "cache" / PROBE_CACHE
    probe_digests.cache_clear()
    code_fingerprint.cache_clear()


def test_the_disk_cache_is_used_and_a_corrupt_one_recomputed(fresh_probe_cache,
                                                             monkeypatch) -> None:
    calls = []
    fake = {"loss.dice": "0123456789ab"}
    monkeypatch.setattr(provenance, "probe_package", lambda d: calls.append(d) or dict(fake))
    assert probe_digests() == fake and len(calls) == 1
    assert json.loads(fresh_probe_cache.read_text()) == {source_key(): fake}
    probe_digests.cache_clear()
    assert probe_digests() == fake and len(calls) == 1  # from the disk, not probed again
    for corrupt in ("{not json", json.dumps({source_key(): {"loss.dice": 3}}), "[]"):
        fresh_probe_cache.write_text(corrupt)
        probe_digests.cache_clear()
        assert probe_digests() == fake
        assert json.loads(fresh_probe_cache.read_text()) == {source_key(): fake}
    assert len(calls) == 4


def test_an_unwritable_cache_only_means_probing_again(fresh_probe_cache, tmp_path,
                                                      monkeypatch) -> None:
    (tmp_path / "a file").write_text("")
    monkeypatch.setenv("UNET_CACHE_DIR", str(tmp_path / "a file" / "cache"))
    calls = []
    monkeypatch.setattr(provenance, "probe_package", lambda d: calls.append(d) or {"x": "a" * 12})
    assert probe_digests() == {"x": "a" * 12}
    probe_digests.cache_clear()
    assert probe_digests() == {"x": "a" * 12} and len(calls) == 2


def test_a_failing_probe_is_one_clear_error(package_copy) -> None:
    _edit(package_copy / "unet_train/probe.py", "from __future__ import annotations",
          "from __future__ import annotations\nraise SystemExit('probe: broken on purpose')")
    expected = r"probe of .* failed \(exit 1\): probe: broken on purpose"
    with pytest.raises(RuntimeError, match=expected):
        provenance.probe_package(package_copy)


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
    from unet_train.config import TrainConfig

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

    from unet_train.runs import finished_run
    with pytest.raises(ValueError, match="other code or on other data"):
        finished_run(on_stand_in.run_dir, cfg, provenance=on_real.provenance)


def test_command_line_keys_and_bad_dataset(capsys, small_data_root) -> None:
    assert main(["--key", "--data-dir", str(small_data_root), "drive"]) == 0
    code, drive = capsys.readouterr().out.split()
    assert code == code_fingerprint() and drive.startswith("drive:")
    assert main(["--data-dir", str(small_data_root), "mnist"]) == 2
    assert "dataset 'mnist' is not valid; expected one of drive, isbi2012" in (
        capsys.readouterr().err)


def test_the_book_cache_key_holds_the_code_fingerprint(small_data_root) -> None:
    """``make book-cache`` keys the execution cache by the code and data fingerprints."""
    import os
    import subprocess
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "UNET_DATA_DIR": str(small_data_root)}
    out = subprocess.run(["make", "-n", "book-cache"], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    drive = dataset_fingerprint("drive", small_data_root)["key"]
    assert code_fingerprint() in out and f"drive:{drive}" in out
    # a new key drops the executed outputs and the pages Sphinx read, so every page runs again
    assert all(f"_build/{d}" in out for d in (".jupyter_cache", ".doctrees", "html"))
