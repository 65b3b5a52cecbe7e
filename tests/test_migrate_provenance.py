"""benchmarks/migrate_provenance.py: a commit's results carried over to the behavioural code
fingerprint only when its probe equals the current one, and only the fingerprints of its code
(on a temporary results folder; the probes themselves are stubbed here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unet_core.provenance import data_key

OLD, OTHER, NEW = "0ld0ld0ld0ld", "0the70the70t", "4e44e44e44e4"
DATA = {"dataset": "drive", "source": "real", "files": 140, "digest": "143d28513d26"}
PROBE = {"loss.dice": "0123456789ab", "evaluate.drive": "ba9876543210"}


def _fp(code: str) -> dict:
    return {"key": "k", "code": code, "data": dict(DATA), "torch": "2", "numpy": "2"}


@pytest.fixture
def results(tmp_path) -> Path:
    """Results files: a study with cells of the old and of other code, a file with one
    fingerprint of the old code, a list file and a file without fingerprints."""
    root = tmp_path / "results"
    (root / "studies").mkdir(parents=True)
    study = {"study": "s", "cells": [{"arm": "a", "fingerprint": _fp(OLD)},
                                     {"arm": "b", "fingerprint": _fp(OTHER)},
                                     {"arm": "c", "fingerprint": _fp(OLD)}],
             "step_times": {"code": OLD}}
    (root / "studies" / "s.json").write_text(json.dumps(study, indent=1) + "\n")
    (root / "quality.json").write_text(json.dumps({"fingerprint": _fp(OLD)}, indent=2) + "\n")
    (root / "builds.json").write_text(json.dumps([{"fingerprint": _fp(OLD)}]) + "\n")
    (root / "speed.json").write_text(json.dumps({"code": OLD}) + "\n")
    return root


def _contents(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.json"))}


def test_only_the_old_codes_fingerprints_are_rewritten_once(benchmark_script, results) -> None:
    module = benchmark_script("migrate_provenance")
    before = _contents(results)
    record = {"from": OLD, "to": NEW, "commit": "c0ffee", "probe": PROBE}
    assert module.migrate(results, OLD, NEW, record, dry_run=True) == {
        "quality.json": 1, "studies/s.json": 2}
    assert _contents(results) == before  # a dry run writes nothing
    assert module.migrate(results, OLD, NEW, record) == {"quality.json": 1, "studies/s.json": 2}
    study = json.loads((results / "studies" / "s.json").read_text())
    codes = [c["fingerprint"]["code"] for c in study["cells"]]
    assert codes == [NEW, OTHER, NEW]  # the other code's cell stays older
    assert study["cells"][0]["fingerprint"]["key"] == data_key(NEW, DATA)
    assert study["cells"][1]["fingerprint"] == _fp(OTHER)
    assert study["step_times"] == {"code": OLD}  # a commit, not a fingerprint
    assert study["provenance_migrations"] == [{**record, "fingerprints": 2}]
    assert (results / "quality.json").read_text().startswith('{\n  "fingerprint"')  # indent kept
    after = _contents(results)
    for untouched in ("builds.json", "speed.json"):
        assert after[untouched] == before[untouched]
    assert module.migrate(results, OLD, NEW, record) == {}  # a second run changes nothing
    assert _contents(results) == after


def _stub_probes(module, monkeypatch, tmp_path, then: dict[str, str]) -> None:
    monkeypatch.setattr(module, "extract_package", lambda commit, into: tmp_path)
    monkeypatch.setattr(module, "old_fingerprint", lambda package: OLD)
    monkeypatch.setattr(module, "probe_of", lambda package: dict(then))
    monkeypatch.setattr(module, "probe_digests", lambda: dict(PROBE))


def test_nothing_changes_when_the_probes_differ(benchmark_script, results, tmp_path,
                                                monkeypatch, capsys) -> None:
    module = benchmark_script("migrate_provenance")
    _stub_probes(module, monkeypatch, tmp_path, {**PROBE, "evaluate.drive": "f" * 12})
    before = _contents(results)
    assert module.main(["--from-commit", "HEAD", "--results-dir", str(results)]) == 1
    assert "differ in 1 component(s): evaluate.drive; nothing changed" in capsys.readouterr().out
    assert _contents(results) == before


def test_equal_probes_carry_the_results_over(benchmark_script, results, tmp_path, monkeypatch,
                                             capsys) -> None:
    module = benchmark_script("migrate_provenance")
    _stub_probes(module, monkeypatch, tmp_path, PROBE)
    assert module.main(["--from-commit", "HEAD", "--results-dir", str(results)]) == 0
    assert "rewrote 3 fingerprint(s)" in capsys.readouterr().out
    study = json.loads((results / "studies" / "s.json").read_text())
    migration = study["provenance_migrations"][0]
    assert migration["from"] == OLD and migration["probe"] == PROBE
    assert migration["to"] == study["cells"][0]["fingerprint"]["code"] != OLD
    assert len(migration["commit"]) == 40
    assert module.main(["--from-commit", "HEAD", "--results-dir", str(results)]) == 0
    assert "no fingerprint of" in capsys.readouterr().out


def test_a_bad_commit_is_one_error_line(benchmark_script, results, capsys) -> None:
    module = benchmark_script("migrate_provenance")
    assert module.main(["--from-commit", "no-such-commit", "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --from-commit 'no-such-commit' is not a commit of")
    assert len(err.strip().splitlines()) == 1


def _stub_additions(module, monkeypatch, tmp_path, theirs: dict[str, str],
                    ours: dict[str, str], now: dict[str, str]) -> None:
    """The current probe fails on the old commit (it asks for an option C lacks); C's own
    probe gives ``theirs`` on C and ``ours`` on the current package; the current probe
    ``now``."""
    (tmp_path / "probe.py").write_text("# C's own probe\n")

    def probe_of(package, source=None):  # noqa: ANN001, ANN202
        if source is None:
            raise RuntimeError("python -m unet_core.probe failed: unknown parameter 'new'")
        return dict(theirs if package == tmp_path else ours)

    monkeypatch.setattr(module, "extract_package", lambda commit, into: tmp_path)
    monkeypatch.setattr(module, "current_package", lambda into: tmp_path / "current")
    monkeypatch.setattr(module, "old_fingerprint", lambda package: OLD)
    monkeypatch.setattr(module, "probe_of", probe_of)
    monkeypatch.setattr(module, "probe_digests", lambda: dict(now))


def test_added_components_carry_the_results_over(benchmark_script, results, tmp_path,
                                                 monkeypatch, capsys) -> None:
    module = benchmark_script("migrate_provenance")
    added = {**PROBE, "sampler.new": "a" * 12}
    _stub_additions(module, monkeypatch, tmp_path, PROBE, added, added)
    assert module.main(["--from-commit", "HEAD", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "adds 1 component(s): sampler.new" in out and "rewrote 3 fingerprint(s)" in out


@pytest.mark.parametrize(("ours", "now", "why"), [
    ({**PROBE, "loss.dice": "f" * 12}, {**PROBE, "x": "1" * 12},
     "its own probe differs on the current code in loss.dice"),
    (PROBE, {**PROBE, "loss.dice": "f" * 12, "x": "1" * 12},
     "the probes differ in 2 component(s)"),
])
def test_a_changed_component_is_never_carried_over_as_an_addition(
        benchmark_script, results, tmp_path, monkeypatch, capsys, ours, now, why) -> None:
    module = benchmark_script("migrate_provenance")
    _stub_additions(module, monkeypatch, tmp_path, PROBE, ours, now)
    if why.startswith("the probes"):  # the current probe runs on C and sees the change
        monkeypatch.setattr(module, "probe_of", lambda package, source=None: dict(PROBE))
    before = _contents(results)
    assert module.main(["--from-commit", "HEAD", "--results-dir", str(results)]) == 1
    assert why in capsys.readouterr().out
    assert _contents(results) == before


def test_added_only(benchmark_script) -> None:
    module = benchmark_script("migrate_provenance")
    assert module.added_only({"a": "1"}, {"a": "1", "b": "2"}) == ["b"]
    assert module.added_only({"a": "1"}, {"a": "1"}) == []
    assert module.added_only({"a": "1"}, {"a": "2", "b": "2"}) is None
    assert module.added_only({"a": "1"}, {"b": "2"}) is None
