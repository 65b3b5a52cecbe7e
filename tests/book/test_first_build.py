"""benchmarks/first_build.py: one first `make book` of a commit, timed, appended to a results
file (the build itself is replaced by a stub here: it takes half an hour)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]




def test_a_build_is_recorded_and_appended(benchmark_script, tmp_path, small_data_root,
                                          monkeypatch) -> None:
    module = benchmark_script("first_build")
    builds: list[Path] = []

    def fake_make_book(clone: Path, env: dict, log: Path) -> tuple[int, float]:
        builds.append(clone)
        assert env["UNET_DATA_DIR"] == str(small_data_root.resolve())
        assert "UNET_PROFILE" not in env and "UNET_RUNS_DIR" not in env
        assert (clone / "Makefile").is_file() and not (clone / ".venv").exists()
        return 0, 1200.0 if len(builds) % 2 else 15.0

    monkeypatch.setattr(module, "_make_book", fake_make_book)
    monkeypatch.setattr(module, "_gflops", lambda: 200.0)
    monkeypatch.setenv("UNET_PROFILE", "smoke")
    out = tmp_path / "first_build.json"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    for _ in range(2):
        assert module.main(["--commit", "HEAD", "--data", str(small_data_root),
                            "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert len(records) == 2 and len(builds) == 4  # a first build and a rebuild each
    first = records[0]
    assert first["commit"] == head
    assert first["first_build_min"] == 20.0 and first["rebuild_s"] == 15.0
    assert first["first_build_normalised_min"] == 10.0  # 20 min x 200 GFLOP/s / 400
    assert first["machine"]["bf16_gflops_before"] == 200.0
    assert not builds[0].exists()  # the clone is removed without --keep


@pytest.mark.parametrize(("args", "message"), [
    (["--commit", "not-a-commit"], "--commit not-a-commit: not a commit"),
    (["--commit", "HEAD", "--data", "/nonexistent"], "--data /nonexistent: expected a folder"),
])
def test_bad_arguments_get_one_line(tmp_path, small_data_root, args, message) -> None:
    if "--data" not in args:
        args = [*args, "--data", str(small_data_root)]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "first_build.py"), *args,
                           "--out", str(tmp_path / "x.json")], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
