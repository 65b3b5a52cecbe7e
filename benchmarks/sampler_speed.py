"""Does the patch sampler keep up with the model? Patches per second, sampler vs training step.

    UNET_DATA_DIR=../shared/data python benchmarks/sampler_speed.py

For each profile (default: ``cpu`` and ``paper``), builds the profile's sampler on DRIVE's
training images, with the profile's augmentation, and measures how many patches per second it
produces (single process, as training uses it) and how many patches per second one training
step of the profile's model consumes (forward, loss, backward, optimizer step, with the
profile's precision). The ratio must be at least 5 at the default settings.

Writes ``benchmarks/results/sampler_speed.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from unet_core.data.splits import load_data
from unet_train.atomic import write_json, write_text
from unet_train.config import PROFILES, TrainConfig
from unet_train.recipe import Parts, build, build_sampler
from unet_train.train import train_step

REQUIRED_RATIO = 5.0


def time_sampler(sampler, batch_size: int, seconds: float) -> float:
    """Patches per second (median over batches)."""
    sampler.sample(batch_size)  # warm-up (imports, caches)
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t0 = time.perf_counter()
        sampler.sample(batch_size)
        times.append(time.perf_counter() - t0)
    return batch_size / float(np.median(times))


def time_model(cfg: TrainConfig, parts: Parts, steps: int) -> float:
    """Patches per second consumed by training steps (median over steps, data excluded)."""
    batch = parts.sampler.sample(cfg.batch_size)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        train_step(parts.net, batch, parts.loss_fn, parts.optimizer, cfg, parts.device,
                   precision=parts.precision, scaler=parts.scaler)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return cfg.batch_size / float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", default=["cpu", "paper"],
                        choices=sorted(PROFILES))
    parser.add_argument("--seconds", type=float, default=5.0, help="sampler timing per profile")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per profile")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sampler_speed"))
    args = parser.parse_args()

    rows = []
    for profile in args.profiles:
        cfg = TrainConfig.from_profile(profile, dataset="drive")
        data = load_data(cfg)
        parts = build(cfg, data, torch.device("cpu"))  # as training assembles it
        model = parts.model
        t0 = time.perf_counter()  # the sampler's set-up alone (weight maps, deformation grids)
        sampler = build_sampler(cfg, model, data.train)
        build_s = time.perf_counter() - t0
        produce = time_sampler(sampler, cfg.batch_size, args.seconds)
        consume = time_model(cfg, parts, args.steps)
        row = {
            "profile": profile, "synthetic": data.synthetic, "augmentation": cfg.augmentation,
            "patch": f"{cfg.patch_size} -> {model.output_size(cfg.patch_size)}",
            "batch_size": cfg.batch_size, "sampler_build_s": round(build_s, 2),
            "sampler_patches_per_s": round(produce, 1),
            "model_patches_per_s": round(consume, 2), "ratio": round(produce / consume, 1),
            "required": REQUIRED_RATIO,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "torch_threads": torch.get_num_threads(), "rows": rows}
    write_json(args.out.with_suffix(".json"), report)
    lines = [
        f"# Sampler vs model ({report['date']}, {report['torch_threads']} torch threads)", "",
        "| profile | data | augmentation | patch | batch | sampler patches/s | "
        "model patches/s | ratio (>= 5) |",
        "|---|---|---|---|---:|---:|---:|---:|",
        *(f"| {r['profile']} | {'synthetic' if r['synthetic'] else 'DRIVE'} | "
          f"{r['augmentation']} | {r['patch']} | {r['batch_size']} | "
          f"{r['sampler_patches_per_s']} | {r['model_patches_per_s']} | {r['ratio']} |"
          for r in rows),
    ]
    write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["ratio"] >= REQUIRED_RATIO for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
