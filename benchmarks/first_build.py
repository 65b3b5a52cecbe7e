"""Time a first `make book` of one commit, as a new user would run it, and a rebuild after it.

A fresh `git clone` of this repository at ``--commit`` in a temporary folder; the real data
from ``--data`` through UNET_DATA_DIR; the default profile (UNET_PROFILE and UNET_RUNS_DIR
unset); `make book` creates the clone's own `.venv`, so its install is part of the time.
Then a second `make book` with nothing changed. The machine's bf16 matmul rate is measured
before and after the build (the normalised minutes are wall x GFLOP/s / 400), and the
execution time of each chapter is read from the build's jupyter-cache.

Two commits timed one after the other on one quiet machine make a pair (issue 13, item 7):

    python benchmarks/first_build.py --commit be7c629 --data ../shared/data
    python benchmarks/first_build.py --commit HEAD --data ../shared/data

Each call appends one record to ``benchmarks/results/first_build.json`` (``--out``). Run
nothing else CPU-heavy beside it: the result is a duration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GFLOPS = ("import torch; from unet_train.compute import matmul_gflops; "
          "print(matmul_gflops(torch.bfloat16))")
CHAPTERS = ("import json, sys; from jupyter_cache import get_cache; "
            "c = get_cache(sys.argv[1]); "
            "print(json.dumps({r.uri.rsplit('/', 1)[-1]: r.data.get('execution_seconds') "
            "for r in c.list_cache_records()}))")


def _fail(message: str) -> None:
    print(f"first_build: {message}", file=sys.stderr)
    raise SystemExit(2)


def _gflops() -> float:
    out = subprocess.run([sys.executable, "-c", GFLOPS], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _make_book(clone: Path, env: dict[str, str], log: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(["make", "book"], cwd=clone, env=env, stdout=fh,
                            stderr=subprocess.STDOUT).returncode
    return rc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", required=True, help="commit to clone and build")
    parser.add_argument("--data", required=True, help="folder with DRIVE/ and isbi2012/")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/first_build.json"))
    parser.add_argument("--keep", action="store_true", help="keep the clone (path printed)")
    args = parser.parse_args(argv)

    data = Path(args.data).resolve()
    for name in ("DRIVE", "isbi2012"):
        if not (data / name).is_dir():
            _fail(f"--data {args.data}: expected a folder {name}/ in it")
    try:
        commit = subprocess.run(["git", "rev-parse", "--verify", f"{args.commit}^{{commit}}"],
                                cwd=REPO, check=True, capture_output=True,
                                text=True).stdout.strip()
    except subprocess.CalledProcessError:
        _fail(f"--commit {args.commit}: not a commit of {REPO}")

    work = Path(tempfile.mkdtemp(prefix="first-build-"))
    clone = work / "unet-book"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("UNET_PROFILE", "UNET_RUNS_DIR", "VIRTUAL_ENV")}
    env["UNET_DATA_DIR"] = str(data)

    gflops_before = _gflops()
    started = dt.datetime.now(dt.UTC)
    print(f"first build of {commit[:12]} in {clone} (log: {work}/first.log)", flush=True)
    rc1, first = _make_book(clone, env, work / "first.log")
    print(f"first build rc {rc1}: {first / 60:.1f} min", flush=True)
    rc2, second = _make_book(clone, env, work / "second.log")
    print(f"second build rc {rc2}: {second:.0f} s", flush=True)
    gflops_after = _gflops()
    try:
        chapters = json.loads(subprocess.run(
            [str(clone / ".venv/bin/python"), "-c", CHAPTERS,
             str(clone / "_build/.jupyter_cache")],
            check=True, capture_output=True, text=True).stdout)
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        chapters = {}  # no .venv or no cache in the clone: the build failed early
    gflops = (gflops_before + gflops_after) / 2
    record = {
        "commit": commit,
        "date": started.isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(),
                    "bf16_gflops_before": round(gflops_before, 1),
                    "bf16_gflops_after": round(gflops_after, 1)},
        "first_build_rc": rc1,
        "first_build_min": round(first / 60, 2),
        "first_build_normalised_min": round(first / 60 * gflops / 400, 2),
        "rebuild_rc": rc2,
        "rebuild_s": round(second, 1),
        "chapter_execution_s": {k: round(v, 1) for k, v in sorted(chapters.items()) if v},
        "conditions": "fresh clone, real data (UNET_DATA_DIR), default profile, "
                      "make book creating .venv",
    }
    out = Path(args.out)
    records = json.loads(out.read_text()) if out.exists() else []
    records.append(record)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(records, indent=1) + "\n")
    tmp.replace(out)
    print(json.dumps(record, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if rc1 == 0 and rc2 == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
