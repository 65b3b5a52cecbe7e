"""unet_book.site.builds: the measured first builds as one table, which two are a pair, the
README's copy of the table, and the reproduce page's ``first-builds`` directive (a small Sphinx
build)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from unet_book.site import builds


def _record(commit: str, date: str, minutes: float, cpu: str = "AMD EPYC",
            gflops: float = 200.0) -> dict:
    return {
        "commit": commit * 40 if len(commit) == 1 else commit,
        "date": date,
        "machine": {"cpu": cpu, "cores": 2, "bf16_gflops_before": gflops,
                    "bf16_gflops_after": gflops},
        "first_build_rc": 0, "first_build_min": minutes,
        "first_build_normalised_min": round(minutes * gflops / 400, 2),
        "rebuild_rc": 0, "rebuild_s": 3.0,
        "chapter_execution_s": {"01_architecture.ipynb": 10.0, "02_padding.ipynb": 50.0,
                                "05_training.ipynb": 600.0, "06_results.ipynb": 60.0,
                                "07_isbi_membranes.ipynb": 300.0, "10_claims.ipynb": 20.0},
    }


OLD = _record("a", "2026-12-03T18:00:00+00:00", 40.0)
NEW = _record("b", "2026-12-03T19:00:00+00:00", 20.0)


@pytest.mark.parametrize(("change", "pair"), [
    ({}, True),
    ({"cpu": "Intel Xeon"}, False),
    ({"cores": 4}, False),
    ({"bf16_gflops_before": 230.0, "bf16_gflops_after": 230.0}, False),  # 15 % faster
    ({"bf16_gflops_before": 215.0, "bf16_gflops_after": 215.0}, True),  # 7.5 %
])
def test_a_pair_is_one_kind_of_machine(change, pair) -> None:
    other = copy.deepcopy(NEW)
    other["machine"].update(change)
    assert builds.is_pair(OLD, other) is pair
    assert builds.is_pair(other, OLD) is pair


def test_builds_more_than_a_day_apart_are_no_pair() -> None:
    later = {**NEW, "date": "2026-12-05T19:00:00+00:00"}
    assert not builds.is_pair(OLD, later)


def test_the_table_adds_up_each_build_and_states_the_pair() -> None:
    text = builds.first_build_markdown([OLD, NEW])
    lines = text.splitlines()
    assert lines[0].index("bbbbbbb") < lines[0].index("aaaaaaa")  # newest first
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in lines[2:12]}
    assert rows["chapters 1-4 (no training)"][0] == "60 s"
    assert rows["chapter 5: the live DRIVE training and its test evaluation"][0] == "10.0 min"
    assert rows["chapter 6: results"][0] == "60 s"
    assert rows["chapter 7: ISBI 2012"][0] == "5.0 min"
    assert rows["chapters 8-10"][0] == "20 s"
    # 20 min in all, 1040 s of it executing chapters
    assert rows["`.venv`, installs, rendering (the rest)"][0] == "2.7 min"
    assert rows["**first build in all**"] == ["**20.0 min**", "**40.0 min** |"]
    assert rows["normalised minutes (wall x GFLOP/s / 400)"][0] == "10.0"
    assert "took 0.50 of the time of aaaaaaa's (20.0 min against 40.0 min)" in text
    assert "within 10% of each other, at most 24 h apart" in text


def test_builds_on_two_machines_are_not_read_as_a_ratio() -> None:
    intel = _record("c", "2026-12-03T19:30:00+00:00", 30.0, cpu="Intel Xeon", gflops=160.0)
    text = builds.first_build_markdown([OLD, intel])
    assert "are not a pair" in text and "took" not in text
    assert "Intel Xeon (2 cores, 160 GFLOP/s bf16)" in text.splitlines()[0]


def test_a_missing_chapter_is_a_dash_and_no_file_is_no_table(tmp_path) -> None:
    record = copy.deepcopy(OLD)
    del record["chapter_execution_s"]["10_claims.ipynb"]
    assert "| chapters 8-10 | - |" in builds.first_build_markdown([record])
    assert builds.load_builds(tmp_path / "none.json") == []
    assert "No first build has been measured" in builds.first_build_markdown([])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="bad.json: expected a JSON list"):
        builds.load_builds(bad)


def test_records_load_oldest_first(tmp_path) -> None:
    path = tmp_path / "first_build.json"
    path.write_text(json.dumps([NEW, OLD]))
    assert [r["commit"][0] for r in builds.load_builds(path)] == ["a", "b"]


def test_the_readme_shows_the_current_line() -> None:
    block = builds.readme_block(builds.README.read_text())
    assert block == builds.readme_line(builds.load_builds()), (
        "README's first-builds line drifted from benchmarks/results/first_build.json: "
        "run python -m unet_book.site.builds")


def test_the_readme_line_names_the_newest_build() -> None:
    line = builds.readme_line([OLD, NEW])
    assert NEW["commit"][:7] in line and OLD["commit"][:7] not in line
    assert f"{NEW['first_build_min']:.1f} min" in line and "(2 so far)" in line
    assert "No first build" in builds.readme_line([])


def test_write_readme_replaces_only_the_block(tmp_path) -> None:
    results = tmp_path / "first_build.json"
    results.write_text(json.dumps([OLD]))
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{builds.BEGIN}\nold table\n{builds.END}\nafter\n")
    assert builds.write_readme(readme, results) is True
    text = readme.read_text()
    assert text.startswith(f"before\n{builds.BEGIN}\nMeasured: the newest") and text.endswith(
        f"{builds.END}\nafter\n")
    assert builds.write_readme(readme, results) is False  # already current
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="expected the markers"):
        builds.write_readme(readme, results)


def test_python_m_runs_this_module_with_no_warning() -> None:
    """``python -m unet_book.site.builds`` runs this module after importing its package: had
    the package imported it, runpy would warn that it "may result in unpredictable
    behaviour"; the package sets it up by name instead."""
    done = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c",
         "import sys, unet_book.site; print('unet_book.site.builds' in sys.modules)"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_the_directive_renders_the_table_in_a_page(tmp_path, monkeypatch) -> None:
    from sphinx.application import Sphinx

    results = tmp_path / "first_build.json"
    results.write_text(json.dumps([OLD, NEW]))
    monkeypatch.setattr(builds, "RESULTS", results)
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(
        "extensions = ['myst_parser', 'unet_book.site']\nmyst_enable_extensions = []\n")
    (src / "index.md").write_text("# Builds\n\n```{first-builds}\n```\n")
    app = Sphinx(str(src), str(src), str(tmp_path / "out"), str(tmp_path / "doctrees"),
                 "html", status=None, warning=None, freshenv=True)
    app.build()
    html = (tmp_path / "out" / "index.html").read_text()
    assert '<div class="first-builds' in html and "<table" in html
    assert "<strong>20.0 min</strong>" in html and "took 0.50 of the time" in html
    assert str(results) in app.env.dependencies["index"] or any(
        Path(d).name == "first_build.json" for d in app.env.dependencies["index"])
