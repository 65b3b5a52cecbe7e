"""Provenance: the code and the data that produced a result, as short fingerprints.

A number is only as good as the code and the data that made it. :func:`fingerprint` names both:

* **code**: what the code *computes*, not how it is written. :mod:`unet_train.probe` runs every
  path that leads to a result (data loading and preparation, sampling and augmentation, the
  weight map, the model, every loss, optimiser and schedule, training steps, the weight
  average, overlap-tile inference with test-time augmentation, the threshold rules, FOV
  masking and every metric, the FOV estimate) on small synthetic inputs, in float64 on one
  thread, and hashes each component's outputs rounded to a precision that does not depend on
  the thread count or the CPU. The code fingerprint is the digest of those component digests
  (:func:`code_fingerprint`), and the fingerprint lists them (``probe``), so a reader sees which
  component changed. A result is tied to what the code computes: renaming a variable, moving a
  function into another module or editing a docstring leaves every result current, while
  changing a formula, a threshold rule, the FOV masking, a schedule or a metric makes the
  results made before it older. (Until this, the fingerprint hashed the modules' syntax trees,
  so every refactoring made every result older.) What the probe does not run cannot change
  the fingerprint: the precision and memory format a machine chooses, files written, timing;
* **data**: which data set files the run read. Real data is hashed by the content of every
  file under its folder; a synthetic stand-in by its generator's options (the generator
  itself is code, probed above), and it says ``synthetic``.

The probe takes a few seconds, so its result is cached on disk (:func:`cache_dir`,
``probe.json``), keyed by :func:`source_key`: the syntax trees of the modules of both packages
(:data:`PACKAGES`: ``unet_core`` and ``unet_train``) and the versions of Python and the
libraries they compute with. The same sources on the same libraries compute the same, so the
probe runs once per source state. It runs in a fresh Python process (``python -m
unet_train.probe``): that process imports the packages from :data:`SOURCE_ROOT` and cannot
disturb the caller's threads, random states or deterministic settings.

The short ``key`` of both goes into the names of run folders (:func:`unet_train.runs.
default_run_name`), so a run made by other code or on other data is never found as the run of
the current code: after the real DRIVE is added, the config that trained on the stand-in
trains again, on the real images. Every run folder holds its ``provenance.json``, every
results file of the benchmarks its fingerprint, and the book's execution cache is keyed by
``python -m unet_train.provenance --key``. The book's reproduce page explains it.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_core.data.resolve import DATASETS, SyntheticDataWarning, resolve_dataset
from unet_train.atomic import write_json
from unet_train.placement import cache_dir  # one user cache directory

#: The folder that holds the packages whose sources are probed and hashed (the repository).
SOURCE_ROOT = Path(__file__).resolve().parents[1]
#: Those packages: the paper (:mod:`unet_core`) and the run machinery (:mod:`unet_train`).
PACKAGES: tuple[str, ...] = ("unet_core", "unet_train")
#: Modules that cannot change a result: the command line (it only parses and calls), plotting
#: curves, timing, file writing, and this module. The hash of the others' text is the
#: "sources" of a GPU cell (:func:`unet_book.studies.source_digest`).
EXCLUDED: frozenset[str] = frozenset(f"unet_train/{m}.py" for m in (
    "cli", "curves", "compute", "atomic", "provenance", "__main__"))
#: Hex digits kept of each hash.
DIGITS = 12
#: The probe's cache file in :func:`cache_dir`, and how many source states it remembers.
PROBE_CACHE, PROBE_CACHE_ENTRIES = "probe.json", 64
#: The distributions whose versions can change what the probe computes (its cache key).
LIBRARIES: tuple[str, ...] = ("torch", "numpy", "scipy", "scikit-image", "opencv-python",
                              "opencv-python-headless", "albumentations", "albucore", "pillow")
#: Seconds the probe may take before it counts as failed.
PROBE_TIMEOUT = 600
_DIGEST = re.compile(r"[0-9a-f]{12}|unavailable: .+")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Remove the docstring of the module and of every class and function (in place)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                rest = body[1:]
                node.body = rest if rest or isinstance(node, ast.Module) else [ast.Pass()]
    return tree


def normalised_source(source: str, name: str = "<source>") -> str:
    """The syntax tree of ``source`` without docstrings, as text: equal for two sources that
    differ only in comments, docstrings and layout."""
    return ast.dump(_strip_docstrings(ast.parse(source, filename=name)))


def covered_modules(root: Path = SOURCE_ROOT) -> list[Path]:
    """The source files that can change a result (all but :data:`EXCLUDED`), in a fixed order."""
    return [f for f in package_modules(root)
            if f.relative_to(root).as_posix() not in EXCLUDED]


def package_modules(root: Path = SOURCE_ROOT) -> list[Path]:
    """Every source file of the :data:`PACKAGES` under ``root``, in a fixed order."""
    return [f for package in PACKAGES for f in sorted((root / package).rglob("*.py"))
            if "__pycache__" not in f.parts]


def _digest(parts: list[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:DIGITS]


def library_versions() -> dict[str, str]:
    """Python's version and those of :data:`LIBRARIES` (``absent`` when not installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def source_key(root: Path = SOURCE_ROOT) -> str:
    """The probe cache's key: the syntax trees (without docstrings) of every module of the
    packages under ``root`` and :func:`library_versions`. Equal keys compute the same."""
    parts = [f"{k} {v}" for k, v in library_versions().items()]
    for path in package_modules(root):
        rel = path.relative_to(root).as_posix()
        parts += [rel, normalised_source(path.read_text(), rel)]
    return _digest(parts)


def _valid_probe(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and isinstance(v, str) and _DIGEST.fullmatch(v)
        for k, v in value.items())


def _read_cache() -> dict[str, Any]:
    """The probe cache's entries; an unreadable or corrupt file counts as empty."""
    try:
        data = json.loads((cache_dir() / PROBE_CACHE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(key: str, probe: dict[str, str]) -> None:
    """Add ``probe`` under ``key`` (atomically; the oldest entries beyond
    :data:`PROBE_CACHE_ENTRIES` dropped). An unwritable cache only means probing again."""
    entries = {k: v for k, v in _read_cache().items() if k != key}
    entries = dict(list(entries.items())[-(PROBE_CACHE_ENTRIES - 1):]) | {key: probe}
    try:
        write_json(cache_dir() / PROBE_CACHE, entries)
    except OSError:
        pass


def probe_package(root: Path = SOURCE_ROOT) -> dict[str, str]:
    """Run ``python -m unet_train.probe`` of the packages under ``root`` in a fresh process,
    ``root`` first on the path, and return its component digests; RuntimeError with the
    probe's last words if it fails."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    try:
        done = subprocess.run([sys.executable, "-m", "unet_train.probe"], cwd=root,
                              env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"the behavioural probe of {root} took more than "
                           f"{PROBE_TIMEOUT} s") from err
    try:
        found = json.loads(done.stdout) if done.returncode == 0 else None
    except ValueError:
        found = None
    if not _valid_probe(found):
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the behavioural probe of {root} failed (exit "
                           f"{done.returncode}): {last}")
    return found  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def probe_digests(root: Path = SOURCE_ROOT) -> dict[str, str]:
    """The probe's component digests for the packages under ``root``: from the disk cache
    when its :func:`source_key` is there, else probed now (and cached on disk). Kept for the
    process too: the same dict on every call, not to be modified."""
    key = source_key(root)
    cached = _read_cache().get(key)
    if _valid_probe(cached):
        return dict(cached)
    found = probe_package(root)
    _write_cache(key, found)
    return found


def code_from_probe(probe: dict[str, str]) -> str:
    """The code fingerprint of a probe's component digests."""
    return _digest([f"{name} {value}" for name, value in sorted(probe.items())])


@functools.lru_cache(maxsize=4)
def code_fingerprint(root: Path = SOURCE_ROOT) -> str:
    """What the packages under ``root`` compute: the digest of :func:`probe_digests`."""
    return code_from_probe(probe_digests(root))


@functools.lru_cache(maxsize=16)
def _files_digest(root: str, listing: tuple[tuple[str, int, int], ...]) -> str:
    """Content hash of the files in ``listing`` (cached while their sizes and times hold)."""
    h = hashlib.sha256()
    for rel, size, _mtime in listing:
        h.update(f"{rel}\0{size}\0".encode())
        with (Path(root) / rel).open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:DIGITS]


def data_fingerprint(root: str | Path, synthetic: bool) -> dict[str, Any]:
    """Identity of the data set folder ``root`` (as :func:`unet_core.data.resolve_dataset`
    returns it): ``{"source": "real" | "synthetic", "files": n, "digest": ...}``.

    Real data: the content of every file under ``root`` (hidden files skipped). Synthetic: the
    generator's completion marker (generator version and options), which fixes its output."""
    root = Path(root)
    if synthetic:
        marker = root / ".synthetic-complete.json"
        options = marker.read_text() if marker.exists() else "unknown"
        return {"source": "synthetic", "files": 0, "digest": _digest([options])}
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    listing = tuple((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                    for p in files)
    return {"source": "real", "files": len(files), "digest": _files_digest(str(root), listing)}


def fingerprint(dataset: str, root: str | Path, synthetic: bool) -> dict[str, Any]:
    """The provenance of a run on ``dataset`` read from ``root``: code, data, versions, their
    short ``key`` (a hash of code and data, :func:`data_key`) and the probe's digests."""
    code = code_fingerprint()
    data = {"dataset": dataset, **data_fingerprint(root, synthetic)}
    return {"key": data_key(code, data), "code": code, "data": data,
            "torch": str(torch.__version__), "numpy": str(np.__version__),
            "probe": dict(probe_digests())}


def data_key(code: str, data: dict[str, Any]) -> str:
    """The short key of code fingerprint ``code`` and data fingerprint ``data``."""
    return _digest([code, json.dumps(data, sort_keys=True)])[:8]


def dataset_fingerprint(dataset: str, data_root: str | Path | None = None) -> dict[str, Any]:
    """:func:`fingerprint` of ``dataset`` as :func:`~unet_core.data.resolve_dataset` finds it
    under ``data_root`` (default ``$UNET_DATA_DIR``): the real data if present, else the
    stand-in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntheticDataWarning)  # the caller says it, once
        found = resolve_dataset(dataset, data_root)
    return fingerprint(dataset, found.root, found.synthetic)


def same_origin(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two fingerprints name the same code and the same data."""
    if not a or not b:
        return False
    return all(a.get(k) == b.get(k) for k in ("code", "data"))


def is_current(made: dict[str, Any] | None, now: dict[str, Any]) -> bool:
    """Whether a result with fingerprint ``made`` is current for ``now``: the same code, and
    the same data, or, when ``now`` has only the synthetic stand-in, the real data set (a
    build without the data still shows results made on it by this code)."""
    if not made or made.get("code") != now["code"]:
        return False
    if made.get("key") == now["key"]:
        return True
    return now["data"]["source"] == "synthetic" and made.get("data", {}).get("source") == "real"


def describe(fp: dict[str, Any] | None) -> str:
    """One line: ``code 1a2b3c4d5e6f, real DRIVE data 9f8e7d6c5b4a (40 files)``."""
    if not fp:
        return "no provenance recorded (made before fingerprints existed)"
    data = fp.get("data", {})
    kind = "synthetic stand-in for" if data.get("source") == "synthetic" else "real"
    name = {"drive": "DRIVE", "isbi2012": "ISBI 2012"}.get(data.get("dataset"),
                                                           data.get("dataset", "?"))
    files = f" ({data['files']} files)" if data.get("files") else ""
    return f"code {fp.get('code')}, {kind} {name} data {data.get('digest')}{files}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unet_train.provenance",
        description="Print the provenance of the current code and data (JSON), or with --key "
                    "one line of keys for a cache (the code and each data set's key).")
    parser.add_argument("--key", action="store_true", help="print one line of keys")
    parser.add_argument("--data-dir", default=None, help="data directory ($UNET_DATA_DIR)")
    parser.add_argument("datasets", nargs="*", default=["drive", "isbi2012"])
    args = parser.parse_args(argv)
    for name in args.datasets:
        if name not in DATASETS:
            print(f"error: dataset {name!r} is not valid; expected one of {', '.join(DATASETS)}",
                  file=sys.stderr)
            return 2
    found = {name: dataset_fingerprint(name, args.data_dir) for name in args.datasets}
    if args.key:
        print(" ".join([code_fingerprint(), *(f"{n}:{fp['key']}" for n, fp in found.items())]))
    else:
        print(json.dumps(found, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
