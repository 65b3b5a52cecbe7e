"""Carry the results of commit C over to the behavioural code fingerprint, once, if C computes
exactly what the current code computes.

    python benchmarks/migrate_provenance.py --from-commit ef362e9 [--dry-run]

Until commit C the code fingerprint hashed the syntax trees of the package's modules; since,
it is the digest of what the code computes (:mod:`unet_core.probe`). The results made by C
(study cells, results files) hold C's old fingerprint, so they would all show as older,
although nothing they measure has changed. This script

1. extracts C's ``unet_core`` (``git archive``) into a temporary folder and computes C's own
   code fingerprint there (``code_fingerprint`` of C's ``unet_core.provenance``), in a fresh
   process with that folder first on the path;
2. runs the current probe (``unet_core/probe.py`` copied into C's package) on C's package, in a
   fresh process, and on the current package;
3. if the two probes differ only by components the current probe adds (a new option, a new
   metric: the current code computes more, and everything C computed the same), it checks
   that too from C's side: C's own probe (its ``probe.py``) run on the current package must
   give every component it gives on C's package, with the same digest (it may give more: it
   iterates the current choice lists), and the current probe must agree with it on those;
4. only if the probes agree (equal, or equal but for added components), rewrites every
   fingerprint in ``--results-dir``
   (``benchmarks/results``: ``studies/*.json`` and ``*.json``) whose ``code`` is C's old
   fingerprint: the new code and the new key, computed from code and data exactly as
   :func:`unet_core.provenance.fingerprint` does, and appends to each file it changes a record
   ``provenance_migrations: [{from, to, date, commit, fingerprints, probe}]``. Fingerprints of
   any other code are left as they are: they stay older, never silently carried over.

If the probes differ it changes nothing, prints the components that differ and exits 1. A
second run finds no fingerprint of the old code and changes nothing (exit 0). ``--dry-run``
says what would change and writes nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from unet_core.atomic import write_json
from unet_core.provenance import PACKAGE_DIR, code_from_probe, data_key, probe_digests

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
MIGRATIONS = "provenance_migrations"


def resolve_commit(commit: str) -> str:
    """The full hash of ``commit``; ValueError if git does not know it."""
    done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ValueError(f"--from-commit {commit!r} is not a commit of {ROOT}")
    return done.stdout.strip()


def extract_package(commit: str, into: Path) -> Path:
    """C's ``unet_core`` under ``into`` (``git archive``; the repository is not touched)."""
    archive = into / "unet_core.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "archive", "--format=tar", commit, "unet_core"], cwd=ROOT,
                       stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into / "unet_core"


def _python(package: Path, *args: str) -> str:
    """Run Python with ``package``'s parent first on the path; its standard output."""
    env = {**os.environ, "PYTHONPATH": str(package.parent)}
    done = subprocess.run([sys.executable, *args], cwd=package.parent, env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"python {' '.join(args)} failed in {package.parent}: {last}")
    return done.stdout


def old_fingerprint(package: Path) -> str:
    """The code fingerprint that the package at ``package`` records (its own function)."""
    return _python(package, "-c", "from unet_core.provenance import code_fingerprint; "
                                  "print(code_fingerprint())").strip()


def probe_of(package: Path, probe_source: str | None = None) -> dict[str, str]:
    """A probe run on the package at ``package``: the current probe, or the probe whose
    source is ``probe_source``, copied into it."""
    (package / "probe.py").write_text(probe_source or (PACKAGE_DIR / "probe.py").read_text())
    return json.loads(_python(package, "-m", "unet_core.probe"))


def current_package(into: Path) -> Path:
    """A copy of the current ``unet_core`` under ``into`` (so a probe can be copied into it)."""
    shutil.copytree(PACKAGE_DIR, into / "unet_core",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return into / "unet_core"


def added_only(before: dict[str, str], now: dict[str, str]) -> list[str] | None:
    """The components ``now`` adds to ``before`` if every component of ``before`` is in
    ``now`` with the same digest; None otherwise."""
    if any(now.get(k) != v for k, v in before.items()):
        return None
    return sorted(set(now) - set(before))


def additions_check(package: Path, own: str | None, now: dict[str, str], tmp: Path,
                    ) -> tuple[bool, str]:
    """Step 3 of the module docstring, ``own`` the source of C's probe: ``(agree, what was
    found)``."""
    if own is None:
        return False, "that commit has no probe.py of its own"
    theirs = probe_of(package, own)
    ours = probe_of(current_package(tmp / "current"), own)
    if added_only(theirs, ours) is None:  # it may find more: it iterates the options
        differ = sorted(k for k in theirs if theirs[k] != ours.get(k))
        return False, f"its own probe differs on the current code in {', '.join(differ)}"
    added = added_only(theirs, now)
    if added is None:
        return False, "its own probe and the current probe disagree on a shared component"
    return True, f"the current code adds {len(added)} component(s): {', '.join(added)}"


def fingerprints(node: Any) -> Iterator[dict[str, Any]]:
    """Every fingerprint (a dict with ``code``, ``key`` and a ``data`` dict) in a results
    file's JSON, depth first."""
    if isinstance(node, dict):
        if {"code", "key"} <= node.keys() and isinstance(node.get("data"), dict):
            yield node
            return
        for value in node.values():
            yield from fingerprints(value)
    elif isinstance(node, list):
        for value in node:
            yield from fingerprints(value)


def results_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) + sorted(directory.glob("studies/*.json"))


def _indent(text: str) -> int:
    """The indentation of a JSON file's first nested line (1 for the results files)."""
    lines = text.splitlines()
    return len(lines[1]) - len(lines[1].lstrip(" ")) if len(lines) > 1 else 1


def migrate_file(path: Path, old: str, new: str, record: dict[str, Any],
                 dry_run: bool = False) -> int:
    """Rewrite the fingerprints of code ``old`` in ``path`` to code ``new`` (and their keys),
    appending ``record`` to its migrations; the number of fingerprints rewritten."""
    text = path.read_text()
    results = json.loads(text)
    found = [fp for fp in fingerprints(results) if fp["code"] == old]
    if not found:
        return 0
    if not isinstance(results, dict):
        print(f"  {path.name}: {len(found)} fingerprint(s) of {old} in a file without a top "
              "level object: left as they are")
        return 0
    for fp in found:
        fp["code"], fp["key"] = new, data_key(new, fp["data"])
    results.setdefault(MIGRATIONS, []).append({**record, "fingerprints": len(found)})
    if not dry_run:
        write_json(path, results, indent=_indent(text))
    return len(found)


def migrate(directory: Path, old: str, new: str, record: dict[str, Any],
            dry_run: bool = False) -> dict[str, int]:
    """:func:`migrate_file` on every results file under ``directory``: ``{file: rewritten}``
    for the files with fingerprints of code ``old``."""
    changed = {}
    for path in results_files(directory):
        if n := migrate_file(path, old, new, record, dry_run):
            changed[path.relative_to(directory).as_posix()] = n
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-commit", required=True,
                        help="the commit whose results to carry over (its fingerprint was the "
                             "syntax-tree one)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                        help="where the results files are (default benchmarks/results)")
    parser.add_argument("--dry-run", action="store_true", help="write nothing")
    args = parser.parse_args(argv)
    try:
        commit = resolve_commit(args.from_commit)
        if not args.results_dir.is_dir():
            raise ValueError(f"--results-dir {args.results_dir} is not a folder")
        now = dict(probe_digests())
        with tempfile.TemporaryDirectory(prefix="migrate-provenance-") as tmp:
            package = extract_package(commit, Path(tmp))
            old = old_fingerprint(package)
            own_probe = package / "probe.py"
            own = own_probe.read_text() if own_probe.exists() else None
            try:
                before: dict[str, str] | None = probe_of(package)
            except RuntimeError as err:  # the current probe asks for what C lacks
                before, failed = None, str(err)
            found = ""
            if before != now and (before is None or added_only(before, now) is not None):
                agree, found = additions_check(package, own, now, Path(tmp))
            else:
                agree = before == now
    except (ValueError, RuntimeError, subprocess.CalledProcessError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    new = code_from_probe(now)
    print(f"commit {commit[:10]}: code fingerprint {old}; the current code: {new}")
    if old == new:
        print("that commit already has the current fingerprint: nothing to carry over")
        return 0
    if not agree:
        if before is not None and not found:
            differ = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
            found = f"the probes differ in {len(differ)} component(s): {', '.join(differ)}"
        elif before is None and not found:
            found = f"the current probe does not run on that commit ({failed})"
        print(f"{found}; nothing changed: the results of that commit stay older")
        return 1
    if found:
        print(found)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    record = {"from": old, "to": new, "date": date, "commit": commit, "probe": now}
    changed = migrate(args.results_dir, old, new, record, args.dry_run)
    verb = "would rewrite" if args.dry_run else "rewrote"
    for name, n in changed.items():
        print(f"  {verb} {n} fingerprint(s) in {name}")
    print(f"the probes agree; {verb} {sum(changed.values())} fingerprint(s) of {old} to {new}"
          if changed else f"the probes agree; no fingerprint of {old} left to rewrite")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
