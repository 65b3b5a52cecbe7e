"""How much of the machine the training loop uses: achieved GFLOP/s over the matmul rate.

    .venv/bin/python benchmarks/training_efficiency.py            # ~6 min on 2 cores

1. The machine's matmul rate in the training dtype (:func:`unet_train.compute.matmul_gflops`),
   at the start and at the end (the higher counts).
2. The ``cpu`` profile *as it trains*: :func:`unet_train.train.seconds_per_step` (patch
   sampling, augmentation, forward, loss, backward, optimiser step, as in a run) at each width in
   ``--widths``, eagerly and with ``compile=True``; FLOPs per step counted by
   ``torch.utils.flop_counter`` over the same step (convolutions and matmuls only), so achieved
   GFLOP/s = FLOPs per step / seconds per step, and its ratio to the matmul rate (goal >= 0.6).
3. Width 64 at 256x256, batch 2: training px/s of our step (bf16 autocast, channels-last, and
   compiled) against the same network run the way typical implementations run it with mixed
   precision (eager, NCHW, bf16 autocast), timed interleaved in one run (goal >= 1.5x).

Writes ``benchmarks/results/training_efficiency.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from unet_core.data.sampler import PatchBatch
from unet_core.data.splits import load_data
from unet_core.losses import make_loss
from unet_train.atomic import write_json, write_text
from unet_train.compute import code_version, matmul_gflops, training_dtype, training_flops
from unet_train.config import TrainConfig
from unet_train.devices import choose_precision, processor_name
from unet_train.recipe import build, build_model, build_optimizer
from unet_train.train import seconds_per_step, train_step

CPU = torch.device("cpu")


def step_flops(cfg: TrainConfig) -> int:
    """FLOPs of one training step of ``cfg`` (a real sampled batch)."""
    parts = build(cfg, load_data(cfg), CPU)  # as training assembles it
    batch = parts.sampler.sample(cfg.batch_size)
    # the network itself, not its compiled wrapper: the FLOPs are the same, and countable
    return training_flops(lambda: train_step(parts.model, batch, parts.loss_fn,
                                             parts.optimizer, cfg, CPU,
                                             precision=parts.precision, scaler=parts.scaler))


def profile_rows(widths: list[int], rate: float) -> list[dict[str, Any]]:
    rows = []
    for width in widths:
        for compiled in (False, True):
            cfg = TrainConfig.from_profile("cpu", base_channels=width, compile=compiled)
            flops = step_flops(cfg)
            t0 = time.perf_counter()
            s = seconds_per_step(cfg, steps=70, warmup=30)
            setup = time.perf_counter() - t0 - 40 * s  # compile + set-up, roughly
            row = {"width": width, "compile": compiled, "batch": cfg.batch_size,
                   "patch": cfg.patch_size, "seconds_per_step": s,
                   "gflop_per_step": flops / 1e9, "achieved_gflops": flops / s / 1e9,
                   "ratio_to_matmul": flops / s / 1e9 / rate, "setup_seconds": setup}
            rows.append(row)
            print(f"width {width} compile={compiled}: {s:.4f} s/step, "
                  f"{row['achieved_gflops']:.0f} GFLOP/s = {row['ratio_to_matmul']:.2f} of "
                  f"matmul (set-up {setup:.0f} s)", flush=True)
    return rows


def _typical_vs_ours(iters: int) -> list[dict[str, Any]]:
    """Width 64, 256x256, batch 2: px/s of three ways to run the same step, interleaved."""
    gen = torch.Generator().manual_seed(0)
    size, batch = 256, 2
    image = torch.rand(batch, 3, size, size, generator=gen)
    target = (torch.rand(batch, 1, size, size, generator=gen) > 0.88).float()
    pb = PatchBatch(image, target.long()[:, 0], torch.ones(batch, size, size, dtype=torch.bool),
                    None)
    ways: dict[str, Any] = {}
    for name, channels_last, compiled in (("typical: eager, NCHW, bf16 autocast", False, False),
                                          ("ours: bf16 autocast, channels-last", True, False),
                                          ("ours + torch.compile", True, True)):
        cfg = TrainConfig.from_profile("cpu", base_channels=64, channels_last=channels_last,
                                       batch_size=batch, patch_size=size, compile=compiled)
        torch.manual_seed(0)
        model = build_model(cfg, 3)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if compiled else model
        opt = build_optimizer(cfg, model)
        loss_fn = make_loss(cfg.loss, out_channels=model.out_channels)
        ways[name] = (net, opt, loss_fn, cfg)
    precision = choose_precision(CPU, True)

    def one(name: str) -> float:
        net, opt, loss_fn, cfg = ways[name]
        t0 = time.perf_counter()
        train_step(net, pb, loss_fn, opt, cfg, CPU, precision=precision)
        return time.perf_counter() - t0

    for name in ways:  # warm-up (and compilation)
        for _ in range(4):
            one(name)
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(iters):  # interleaved: drifts hit every way alike
        for name in ways:
            times[name].append(one(name))
    base = batch * size * size / statistics.median(times[next(iter(ways))])
    rows = []
    for name, ts in times.items():
        pxs = batch * size * size / statistics.median(ts)
        rows.append({"way": name, "kpx_per_s": pxs / 1e3, "speedup_vs_typical": pxs / base,
                     "seconds_per_step": statistics.median(ts), "iterations": len(ts)})
        print(f"{name}: {pxs / 1e3:.1f} kpx/s, x{pxs / base:.2f}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="16", help="comma-separated widths of the profile")
    parser.add_argument("--iters", type=int, default=12, help="timed steps per way at width 64")
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/training_efficiency"))
    args = parser.parse_args()
    dtype = training_dtype()
    rate0 = matmul_gflops(dtype)
    profile = profile_rows([int(w) for w in args.widths.split(",")], rate0)
    width64 = _typical_vs_ours(args.iters)
    rate1 = matmul_gflops(dtype)
    rate = max(rate0, rate1)
    for row in profile:  # against the higher of the two rates
        row["ratio_to_matmul"] = row["achieved_gflops"] / rate
    report = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "code": code_version(),
        "machine": {"cpu": processor_name(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "matmul": {"dtype": str(dtype).removeprefix("torch."), "start": rate0, "end": rate1,
                   "used": rate},
        "profile": profile, "width64": width64,
    }
    write_json(args.out.with_suffix(".json"), report)
    text = _markdown(report)
    write_text(args.out.with_suffix(".md"), text)
    print(text)
    return 0


def _markdown(r: dict[str, Any]) -> str:
    m = r["matmul"]
    lines = [f"# Training efficiency ({r['date']}, code {r['code']})", "",
             f"Command: `{r['command']}`", "",
             f"{r['machine']['cpu']}, {r['machine']['threads']} threads, torch "
             f"{r['machine']['torch']}; {m['dtype']} matmul 2048x2048: {m['start']:.0f} GFLOP/s "
             f"at the start, {m['end']:.0f} at the end ({m['used']:.0f} used).", "",
             "The `cpu` profile as it trains (sampling and augmentation included):", "",
             "| width | compile | batch x patch | s/step | GFLOP/step | achieved GFLOP/s | "
             "of matmul | set-up s |", "|---:|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {p['width']} | {'yes' if p['compile'] else 'no'} | {p['batch']} x "
              f"{p['patch']}² | {p['seconds_per_step']:.4f} | {p['gflop_per_step']:.1f} | "
              f"{p['achieved_gflops']:.0f} | {p['ratio_to_matmul']:.2f} | "
              f"{p['setup_seconds']:.0f} |" for p in r["profile"]]
    lines += ["", "Width 64, 256x256, batch 2, one training step (BCE + Dice, Adam):", "",
              "| way | kpx/s | speed-up | s/step |", "|---|---:|---:|---:|"]
    lines += [f"| {w['way']} | {w['kpx_per_s']:.1f} | x{w['speedup_vs_typical']:.2f} | "
              f"{w['seconds_per_step']:.3f} |" for w in r["width64"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
