"""Time every precision and memory format of a training step and an inference pass on this CPU.

``precision=auto`` (``unet_train.placement``) compares only the candidates it may choose: fp32,
and bf16 autocast where the CPU computes bf16 natively. This script times all four
combinations, emulated bf16 included, for the ``cpu`` profile's network (width 16, its patch,
batch and evaluation tile), so that the choice, and what it leaves out, can be read off one
machine's numbers. (Emulated bf16 is far slower than fp32: one width-16 training step took
about 10 s against 0.35 s on an AVX2-only AMD EPYC, so the paper's width 64 is not timed.) It
also records what ``auto`` chose (from a fresh cache, so it measures) and appends one record
to ``benchmarks/results/placement.json``.

Run it on a quiet machine: ``python benchmarks/placement.py`` (a few minutes on 2 cores where
bf16 is emulated, about a minute where it is native).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from unet_train.atomic import write_json
from unet_train.compute import code_version
from unet_train.config import TrainConfig
from unet_train.devices import cpu_kind, cpu_supports_bf16
from unet_train.placement import BF16, FP32, PHASES, choose, measure
from unet_train.recipe import build_model, input_channels

RESULTS = Path(__file__).resolve().parent / "results" / "placement.json"
NETWORKS: dict[str, dict[str, Any]] = {"cpu profile (width 16)": {}}


def time_all(cfg: TrainConfig, rounds: int) -> dict[str, dict[str, float]]:
    """Seconds of every candidate, per phase, and what ``auto`` chose from a fresh cache."""
    cpu = torch.device("cpu")
    model = build_model(cfg, input_channels(cfg))
    options = [(p, f) for p in (FP32, BF16) for f in (False, True)]
    out: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        seconds = measure(cfg, model, cpu, phase, options, rounds=rounds)
        out[phase] = {"seconds": {k: round(v, 5) for k, v in seconds.items()},
                      "auto": choose(cfg, model, cpu, phase).name}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per candidate")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        print(f"error: --rounds must be >= 1, got {args.rounds}", file=sys.stderr)
        return 2
    os.environ["UNET_CACHE_DIR"] = tempfile.mkdtemp(prefix="placement-")  # auto measures
    record: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "code_version": code_version(), "cpu_kind": cpu_kind(),
        "native_bf16": cpu_supports_bf16(), "threads": torch.get_num_threads(),
        "torch": str(torch.__version__), "load_average_1min": round(os.getloadavg()[0], 2),
        "networks": {},
    }
    for name, overrides in NETWORKS.items():
        cfg = TrainConfig.from_profile("cpu", **overrides)
        record["networks"][name] = {"batch": cfg.batch_size, "patch": cfg.patch_size,
                                    "eval_tile": cfg.eval_tile, **time_all(cfg, args.rounds)}
        for phase, r in record["networks"][name].items():
            if isinstance(r, dict):
                times = ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in r["seconds"].items())
                print(f"{name}, {phase}: {times}; auto chose {r['auto']}", flush=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {"records": []}
    existing["records"].append(record)
    write_json(args.out, existing, indent=1)
    print(f"appended a record to {args.out.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
