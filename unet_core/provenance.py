"""Provenance: the code and the data that produced a result, as short fingerprints.

A number is only as good as the code and the data that made it. :func:`fingerprint` names both:

* **code**: a hash of every module of ``unet_core`` that can change what a run computes (the
  model, data loading and sampling, augmentation, weight map, losses, optimisation, training,
  inference, evaluation and metrics: all modules but those in :data:`EXCLUDED`, which only
  write, time or report), together with the versions of torch and NumPy. Each module is hashed
  through its syntax tree with the docstrings removed (:func:`normalised_source`), so that
  comments and docstrings, which cannot change a result, do not change the fingerprint, while
  any statement does;
* **data**: which data set files the run read. Real data is hashed by the content of every
  file under its folder; a synthetic stand-in by its generator's options (the generator
  itself is code, covered above), and it says ``synthetic``.

The short ``key`` of both goes into the names of run folders (:func:`unet_core.runs.
default_run_name`), so a run made by other code or on other data is never found as the run of
the current code: after the real DRIVE is added, the config that trained on the stand-in
trains again, on the real images. Every run folder holds its ``provenance.json``, every
results file of the benchmarks its fingerprint, and the book's execution cache is keyed by
``python -m unet_core.provenance --key``. Chapter 5 explains it.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unet_core.data.resolve import DATASETS, SyntheticDataWarning, resolve_dataset

PACKAGE_DIR = Path(__file__).resolve().parent
#: Modules of unet_core that cannot change a result: the command line (it only parses and
#: calls), plotting curves, timing, file writing, and this module.
EXCLUDED: frozenset[str] = frozenset({"cli", "curves", "compute", "atomic", "provenance",
                                      "__main__"})
#: Hex digits kept of each hash.
DIGITS = 12


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


def covered_modules(package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """The source files the code fingerprint covers, in a fixed order."""
    files = sorted(package_dir.rglob("*.py"))
    return [f for f in files
            if not (f.parent == package_dir and f.stem in EXCLUDED)
            and "__pycache__" not in f.parts]


def _digest(parts: list[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:DIGITS]


@functools.lru_cache(maxsize=4)
def code_fingerprint(package_dir: Path = PACKAGE_DIR) -> str:
    """Hash of the covered modules' syntax trees and of the torch and NumPy versions."""
    parts = [f"torch {torch.__version__}", f"numpy {np.__version__}"]
    for path in covered_modules(package_dir):
        rel = path.relative_to(package_dir).as_posix()
        parts += [rel, normalised_source(path.read_text(), rel)]
    return _digest(parts)


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
    """The provenance of a run on ``dataset`` read from ``root``: code, data, versions and
    their short ``key`` (a hash of code and data)."""
    code = code_fingerprint()
    data = {"dataset": dataset, **data_fingerprint(root, synthetic)}
    return {"key": _digest([code, json.dumps(data, sort_keys=True)])[:8], "code": code,
            "data": data, "torch": str(torch.__version__), "numpy": str(np.__version__)}


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
        prog="python -m unet_core.provenance",
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
