"""CPU throughput of the U-Net: training and inference, in OUTPUT pixels per second.

Measures, for every base width (64 = the paper's net, 16 = a slim variant; depth 4 throughout)
and every padding mode:

* ``padding="same"`` at a 512x512 input (512x512 output pixels), and
* ``padding="valid"`` (the paper's unpadded convolutions) at ``valid_input_size(512)`` = 524,
  which yields a 340x340 output. Throughput always counts OUTPUT pixels (batch * out * out),
  because that is what a tiled prediction of a large image pays for.

under four numeric modes, so the reader sees which change helps:

* ``fp32``: float32, contiguous (NCHW) tensors;
* ``channels_last``: float32, model and input in ``torch.channels_last`` memory format;
* ``bf16``: ``torch.autocast("cpu", dtype=torch.bfloat16)``, NCHW;
* ``bf16+channels_last``: both.

A training iteration is ``zero_grad`` + forward + 2-class cross-entropy + backward + one SGD
step with momentum 0.99 (paper Sec. 3); batch 1 for width 64 as in the paper, ``64 // width``
otherwise (4 for width 16). Inference is a ``torch.no_grad()`` forward in eval mode, same batch.

Method: the modes of one (width, padding, phase) group are timed *interleaved* (one iteration
of every mode per round) after ``--warmup`` untimed iterations each, so that slow drifts hit
all modes alike. The machine may be shared: for every timed iteration the CPU time used by
other processes is measured (/proc/stat minus our own CPU time), and an iteration during which
others used more than ``--max-external`` cores is discarded and repeated; before each group the
script waits up to ``--quiet-wait`` seconds for the machine to go quiet. Each mode runs until
it has at least ``--min-iters`` kept iterations and ``--min-time`` seconds of kept timed work,
or until ``--max-iters`` attempts / ``--max-time`` seconds of attempts (then, if nothing was
clean, all attempts are used and the row is flagged ``contaminated``). Per-iteration wall
times (``time.perf_counter``) give the median, mean, min, max and standard deviation;
throughput is ``pixels / median time``, with the range ``pixels / max time`` ..
``pixels / min time``.

Numerical sanity: every mode's model is built from the same seed, so the first (warm-up)
inference output and the first training loss are compared with the ``fp32`` ones (max abs
difference, relative L2 error, agreement of the per-pixel arg-max).

Usage::

    .venv/bin/python benchmarks/throughput.py            # full run (~10 min on 2 cores)
    .venv/bin/python benchmarks/throughput.py --quick    # smoke check, < 1 min

Writes ``benchmarks/results/throughput.json`` and ``throughput.md`` (``--quick`` writes
``throughput_quick.*`` instead, so that it never overwrites a full run), atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the editable install does not always resolve outside the repo
    sys.path.insert(0, str(REPO))

from unet_core.model import PADDINGS, Padding, UNet  # noqa: E402
from unet_train.atomic import write_json, write_text  # noqa: E402
from unet_train.devices import cpu_flags, processor_name  # noqa: E402

MODES: tuple[str, ...] = ("fp32", "channels_last", "bf16", "bf16+channels_last")
PHASES: tuple[str, ...] = ("inference", "training")
DEFAULT_OUT = REPO / "benchmarks" / "results" / "throughput.json"
QUICK_OUT = REPO / "benchmarks" / "results" / "throughput_quick.json"
LR = 1e-4  # irrelevant for speed; small so that the weights stay finite over the timed steps
MOMENTUM = 0.99  # paper Sec. 3
SEED = 0


# -- configuration -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Settings:
    widths: tuple[int, ...]
    paddings: tuple[str, ...]
    modes: tuple[str, ...]
    phases: tuple[str, ...]
    size: int
    depth: int
    batch: dict[int, int]
    warmup: int
    min_iters: int
    max_iters: int
    min_time: float
    max_time: float
    max_external: float
    quiet_wait: float
    threads: int


def default_batch(width: int) -> int:
    """Batch 1 for the paper's width 64 (as in the paper); ``64 // width`` for slimmer nets."""
    return max(1, 64 // width)


def _csv(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        return tuple(kind(item.strip()) for item in text.split(",") if item.strip())

    return parse


def parse_args(argv: list[str] | None = None) -> tuple[Settings, Path, bool]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true",
                   help="smoke check: 192 px, 1 warm-up, 2 timed iterations (< 1 min if quiet)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO)}; the Markdown "
                        "table goes next to it with a .md suffix)")
    p.add_argument("--widths", type=_csv(int), default=(64, 16),
                   help="comma-separated base widths (default 64,16)")
    p.add_argument("--paddings", type=_csv(str), default=("same", "valid"),
                   help="comma-separated padding modes (default same,valid)")
    p.add_argument("--modes", type=_csv(str), default=MODES,
                   help=f"comma-separated numeric modes (default {','.join(MODES)})")
    p.add_argument("--phases", type=_csv(str), default=PHASES,
                   help="comma-separated phases (default inference,training)")
    p.add_argument("--size", type=int, default=None,
                   help="nominal image side: same padding uses it as input, valid padding uses "
                        "valid_input_size(size) (default 512; 192 with --quick)")
    p.add_argument("--depth", type=int, default=4, help="U-Net depth (default 4, the paper's)")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size for every width (default: 1 for width 64, 64 // width else)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations per mode (1)")
    p.add_argument("--min-iters", type=int, default=None, help="timed iterations at least (3)")
    p.add_argument("--max-iters", type=int, default=None, help="timed iterations at most (30)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of timed work per mode at least (8; 0 with --quick)")
    p.add_argument("--max-time", type=float, default=None,
                   help="stop retrying a mode after this many seconds of attempts (3x min-time)")
    p.add_argument("--max-external", type=float, default=0.25,
                   help="discard (and repeat) an iteration during which other processes used "
                        "more than this many cores (default 0.25)")
    p.add_argument("--quiet-wait", type=float, default=None,
                   help="before each group, wait up to this many seconds for the machine to be "
                        "quiet (30; 3 with --quick)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: leave torch's default)")
    a = p.parse_args(argv)

    for name, values, choices in (("--paddings", a.paddings, PADDINGS), ("--modes", a.modes, MODES),
                                  ("--phases", a.phases, PHASES)):
        bad = [v for v in values if v not in choices]
        if bad or not values:
            p.error(f"{name}: {bad or 'empty'} not in {', '.join(choices)}")
    if not a.widths or any(w < 1 for w in a.widths):
        p.error("--widths must be positive integers")
    if a.batch is not None and a.batch < 1:
        p.error("--batch must be >= 1")

    def pick(value: Any, full: Any, quick: Any) -> Any:
        return value if value is not None else (quick if a.quick else full)

    if a.threads is not None:
        torch.set_num_threads(a.threads)
    settings = Settings(
        widths=tuple(a.widths),
        paddings=tuple(a.paddings),
        modes=tuple(a.modes),
        phases=tuple(a.phases),
        size=pick(a.size, 512, 192),
        depth=a.depth,
        batch={w: a.batch if a.batch is not None else default_batch(w) for w in a.widths},
        warmup=pick(a.warmup, 1, 1),
        min_iters=pick(a.min_iters, 3, 2),
        max_iters=pick(a.max_iters, 30, 2),
        min_time=pick(a.min_time, 8.0, 0.0),
        max_time=pick(a.max_time, 3 * pick(a.min_time, 8.0, 0.0), 0.0),
        max_external=a.max_external,
        quiet_wait=pick(a.quiet_wait, 30.0, 3.0),
        threads=torch.get_num_threads(),
    )
    if settings.max_iters < settings.min_iters:
        p.error("--max-iters must be >= --min-iters")
    out = a.out if a.out is not None else (QUICK_OUT if a.quick else DEFAULT_OUT)
    return settings, out, a.quick


# -- environment -------------------------------------------------------------------------------
def cpu_info() -> dict[str, Any]:
    """CPU model and the SIMD flags that matter for bf16 (from /proc/cpuinfo)."""
    info: dict[str, Any] = {"model_name": processor_name(), "logical_cpus": os.cpu_count()}
    if flags := cpu_flags():
        info["bf16_flags"] = sorted(f for f in flags if "bf16" in f or f.startswith("amx"))
        info["avx512"] = any(f.startswith("avx512") for f in flags)
    return info


def environment(settings: Settings) -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "num_threads": settings.threads,
        "num_interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu_info(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "load_average_start": os.getloadavg(),
    }


class CpuMeter:
    """CPU time used by *other* processes (or stolen by the hypervisor) while we time.

    On a shared machine a busy process takes cores from torch's OpenMP threads, and a 2-thread
    OpenMP region then waits for its descheduled thread: a large, erratic slowdown (up to 10x
    was seen here). ``external cores`` = (machine busy time - this process's CPU time) / wall
    time, from /proc/stat and os.times: 10 ms resolution, so about +-0.05 cores on a 0.5 s
    iteration.
    """

    def __init__(self) -> None:
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.available = self._busy() is not None

    def _busy(self) -> float:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                fields = f.readline().split()
        except OSError:
            return 0.0
        # user nice system idle iowait irq softirq steal: everything but idle and iowait
        values = [int(v) for v in fields[1:9]]
        return (sum(values) - values[3] - values[4]) / self._tick

    def snapshot(self) -> tuple[float, float, float]:
        return time.perf_counter(), self._busy(), _own_cpu()

    def external(self, start: tuple[float, float, float]) -> float | None:
        """External cores since ``start`` (None where /proc/stat is unavailable)."""
        if not self.available:
            return None
        t, busy, own = self.snapshot()
        wall = t - start[0]
        return max(0.0, (busy - start[1]) - (own - start[2])) / wall if wall > 0 else 0.0

    def wait_for_quiet(self, threshold: float, max_wait: float, window: float = 1.0) -> float:
        """Sleep in ``window``-second steps until the machine is quiet; return seconds waited."""
        t0 = time.perf_counter()
        if not self.available:
            return 0.0
        while time.perf_counter() - t0 < max_wait:
            start = self.snapshot()
            time.sleep(window)
            ext = self.external(start)
            if ext is not None and ext <= threshold:
                break
        return time.perf_counter() - t0


METER = CpuMeter()


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# -- one benchmarked configuration ---------------------------------------------------------------
@dataclass
class Runner:
    """A model, its fixed input/target and the closure that runs one iteration of one mode."""

    mode: str
    phase: str
    model: UNet
    x: torch.Tensor
    target: torch.Tensor
    optimizer: torch.optim.Optimizer | None
    times: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    first_output: torch.Tensor | None = None
    external: list[float | None] = field(default_factory=list)  # per timed iteration

    def clean_times(self, threshold: float) -> list[float]:
        """Timed iterations during which other processes used at most ``threshold`` cores."""
        return [t for t, e in zip(self.times, self.external, strict=True)
                if e is None or e <= threshold]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.mode.startswith("bf16"):
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self) -> float:
        """One iteration; returns its wall time in seconds."""
        if self.phase == "inference":
            t0 = time.perf_counter()
            with torch.no_grad(), self.autocast():
                y = self.model(self.x)
            elapsed = time.perf_counter() - t0
            if self.first_output is None:
                self.first_output = y.float().contiguous()
            return elapsed
        assert self.optimizer is not None
        t0 = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = nn.functional.cross_entropy(self.model(self.x), self.target)
        loss.backward()
        self.optimizer.step()
        elapsed = time.perf_counter() - t0
        self.losses.append(float(loss.detach()))  # outside the timed region
        return elapsed


def make_runner(mode: str, phase: str, width: int, padding: str, settings: Settings) -> Runner:
    torch.manual_seed(SEED)  # identical weights, input and target in every mode
    model = UNet(1, 2, base_channels=width, depth=settings.depth, padding=cast(Padding, padding))
    n = input_size(model, settings.size)
    out = model.output_size(n)
    batch = settings.batch[width]
    x = torch.randn(batch, 1, n, n)
    target = torch.randint(0, 2, (batch, out, out))
    if "channels_last" in mode:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = None
    if phase == "training":
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    else:
        model.eval()
    return Runner(mode, phase, model, x, target, optimizer)


def input_size(model: UNet, size: int) -> int:
    return size if model.padding == "same" else model.valid_input_size(size)


def summarize(times: list[float], pixels: int) -> dict[str, Any]:
    med = statistics.median(times)
    return {
        "iterations": len(times),
        "time_s": {
            "median": med,
            "mean": statistics.fmean(times),
            "min": min(times),
            "max": max(times),
            "stdev": statistics.stdev(times) if len(times) > 1 else 0.0,
            "all": times,
        },
        "px_per_s": {"median": pixels / med, "min": pixels / max(times),
                     "max": pixels / min(times)},
    }


def compare(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    diff = (out - ref).abs()
    return {
        "max_abs_diff": float(diff.max()),
        "ref_max_abs": float(ref.abs().max()),
        "rel_l2_error": float((out - ref).norm() / ref.norm().clamp_min(1e-30)),
        "argmax_agreement": float((out.argmax(1) == ref.argmax(1)).float().mean()),
    }


def run_group(width: int, padding: str, phase: str, settings: Settings,
              log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Benchmark every mode of one (width, padding, phase), interleaving the timed iterations."""
    runners = [make_runner(m, phase, width, padding, settings) for m in settings.modes]
    model = runners[0].model
    n = input_size(model, settings.size)
    out = model.output_size(n)
    batch = settings.batch[width]
    pixels = batch * out * out

    waited = METER.wait_for_quiet(settings.max_external, settings.quiet_wait)
    for r in runners:  # warm-up: oneDNN primitive creation, allocator growth, first-touch
        for _ in range(settings.warmup):
            r.step()

    def done(r: Runner) -> bool:
        clean = r.clean_times(settings.max_external)
        if len(clean) >= settings.min_iters and sum(clean) >= settings.min_time:
            return True  # enough clean measurements
        if len(r.times) >= settings.max_iters:
            return True
        return len(r.times) >= settings.min_iters and sum(r.times) >= settings.max_time

    bar = tqdm(desc=f"w{width} {padding:5s} {phase:9s}", unit="it", leave=False,
               file=sys.stderr, dynamic_ncols=True)
    while not all(done(r) for r in runners):
        for r in runners:
            if not done(r):
                start = METER.snapshot()
                r.times.append(r.step())
                r.external.append(METER.external(start))
                bar.update(1)
    bar.close()

    ref = next((r for r in runners if r.mode == "fp32"), None)
    rows: list[dict[str, Any]] = []
    for r in runners:
        row: dict[str, Any] = {
            "width": width, "depth": settings.depth, "padding": padding, "phase": phase,
            "mode": r.mode, "batch": batch, "input_side": n, "output_side": out,
            "output_pixels_per_iter": pixels,
            "parameters": sum(p.numel() for p in r.model.parameters()),
            **summarize(r.clean_times(settings.max_external) or r.times, pixels),
            "attempted_iterations": len(r.times),
            "discarded_iterations": len(r.times) - len(r.clean_times(settings.max_external)),
            "contaminated": not r.clean_times(settings.max_external),
            "external_cpu_cores_per_attempt": r.external,
            "external_cpu_cores": _mean_external(r, settings.max_external),
            "quiet_wait_s": waited,
        }
        if phase == "training":
            row["first_loss"] = r.losses[0]
            row["all_losses_finite"] = all(map(_finite, r.losses))
            if ref is not None:
                row["first_loss_rel_diff_vs_fp32"] = abs(r.losses[0] - ref.losses[0]) / abs(
                    ref.losses[0]
                )
        elif ref is not None and r.first_output is not None and ref.first_output is not None:
            row["vs_fp32"] = compare(r.first_output, ref.first_output)
        rows.append(row)
        log(format_row(row))
    del runners, ref, model
    gc.collect()
    return rows


def _mean_external(r: Runner, threshold: float) -> float | None:
    """Mean external load over the iterations the statistics use."""
    clean = [e for e in r.external if e is not None and e <= threshold]
    values = clean or [e for e in r.external if e is not None]
    return statistics.fmean(values) if values else None


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


# -- reporting ---------------------------------------------------------------------------------
def format_row(row: dict[str, Any]) -> str:
    t, px = row["time_s"], row["px_per_s"]
    extra = ""
    if "vs_fp32" in row and row["mode"] != "fp32":
        c = row["vs_fp32"]
        extra = f"  vs fp32: max|d|={c['max_abs_diff']:.2e} rel={c['rel_l2_error']:.2e}"
    if "first_loss_rel_diff_vs_fp32" in row and row["mode"] != "fp32":
        extra = f"  loss0 rel diff vs fp32={row['first_loss_rel_diff_vs_fp32']:.1e}"
    return (
        f"w{row['width']:<3d} {row['padding']:5s} {row['phase']:9s} {row['mode']:18s} "
        f"b{row['batch']} {row['input_side']}->{row['output_side']}  "
        f"{px['median'] / 1e3:8.1f} kpx/s [{px['min'] / 1e3:.1f}-{px['max'] / 1e3:.1f}]  "
        f"median {t['median']:.3f} s/it (n={row['iterations']}){_ext(row)}{extra}"
    )


def _ext(row: dict[str, Any]) -> str:
    ext = row.get("external_cpu_cores")
    text = "" if ext is None else f" ext.load {ext:.2f}"
    if row.get("discarded_iterations"):
        text += f" ({row['discarded_iterations']} discarded)"
    return text + (" CONTAMINATED" if row.get("contaminated") else "")


def speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median-throughput ratio of every mode over fp32 in the same (width, padding, phase)."""
    base = {(r["width"], r["padding"], r["phase"]): r for r in rows if r["mode"] == "fp32"}
    result = []
    for r in rows:
        ref = base.get((r["width"], r["padding"], r["phase"]))
        if ref is None or r["mode"] == "fp32":
            continue
        result.append({"width": r["width"], "padding": r["padding"], "phase": r["phase"],
                       "mode": r["mode"],
                       "speedup_vs_fp32": r["px_per_s"]["median"] / ref["px_per_s"]["median"]})
    return result


def markdown(report: dict[str, Any]) -> str:
    env, s = report["environment"], report["settings"]
    cpu = env["cpu"]
    base = {(r["width"], r["padding"], r["phase"]): r for r in report["results"]
            if r["mode"] == "fp32"}
    lines = [
        "# U-Net CPU throughput",
        "",
        f"{env['date']} · torch {env['torch']} · {cpu.get('model_name')} · "
        f"{env['num_threads']} threads · {env['cpu_capability']} · bf16 flags: "
        f"{', '.join(cpu.get('bf16_flags', [])) or 'none'} · load average at start / end: "
        f"{_load(env['load_average_start'])} / {_load(env.get('load_average_end'))}",
        "",
        "Throughput counts **output** pixels (batch x output side^2) per second; median over "
        f"the timed iterations, range = slowest..fastest iteration. Depth {s['depth']}; "
        "same padding at a "
        f"{s['size']} px input, valid padding at valid_input_size({s['size']}). Training = "
        "forward + 2-class cross-entropy + backward + SGD (momentum 0.99) step; inference = "
        "no_grad forward in eval mode. Speed-up = median throughput / fp32 median throughput. "
        "Ext. load = cores' worth of CPU time used by other processes (or stolen by the "
        "hypervisor) during the timed iterations; iterations with more than "
        f"{s['max_external_cores']} are discarded and repeated (n = kept iterations). "
        "The check compares the first output (inference) or first loss "
        "(training) with fp32's, from identical weights and input.",
        "",
        "| width | batch | padding | in -> out | phase | mode | kpx/s (median) | range | "
        "s/iter | n | speed-up | ext. load | check vs fp32 |",
        "|---:|---:|---|---|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in report["results"]:
        ref = base.get((r["width"], r["padding"], r["phase"]))
        sp = f"{r['px_per_s']['median'] / ref['px_per_s']['median']:.2f}x" if ref else ""
        check = ""
        if "vs_fp32" in r and r["mode"] != "fp32":
            c = r["vs_fp32"]
            check = (f"max abs diff {c['max_abs_diff']:.1e} (of {c['ref_max_abs']:.2g}), "
                     f"rel L2 {c['rel_l2_error']:.1e}, argmax agree "
                     f"{100 * c['argmax_agreement']:.2f}%")
        elif "first_loss_rel_diff_vs_fp32" in r and r["mode"] != "fp32":
            check = f"1st loss rel diff {r['first_loss_rel_diff_vs_fp32']:.1e}"
        px = r["px_per_s"]
        lines.append(
            f"| {r['width']} | {r['batch']} | {r['padding']} | {r['input_side']} -> "
            f"{r['output_side']} | {r['phase']} | {r['mode']} | {px['median'] / 1e3:.1f} | "
            f"{px['min'] / 1e3:.1f}-{px['max'] / 1e3:.1f} | {r['time_s']['median']:.3f} | "
            f"{_n(r)} | {sp} | {_fmt(r.get('external_cpu_cores'), '.2f')} | "
            f"{check} |"
        )
    lines += ["", f"Total wall time: {report['total_time_s']:.0f} s. "
              f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def _n(row: dict[str, Any]) -> str:
    n = str(row["iterations"])
    if row.get("contaminated"):
        return f"{n} (all contaminated)"
    return f"{n} (+{row['discarded_iterations']} discarded)" if row.get(
        "discarded_iterations") else n


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _load(value: Any) -> str:
    return "n/a" if not value else "/".join(f"{v:.1f}" for v in value)


def groups(settings: Settings) -> Iterator[tuple[int, str, str]]:
    for width in settings.widths:
        for padding in settings.paddings:
            for phase in settings.phases:
                yield width, padding, phase


def main(argv: list[str] | None = None) -> int:
    settings, out, quick = parse_args(argv)
    t_start = time.perf_counter()
    env = environment(settings)
    print(f"torch {env['torch']} · {env['cpu']['model_name']} · {env['num_threads']} threads · "
          f"{env['cpu_capability']} · bf16 flags {env['cpu'].get('bf16_flags')} · "
          f"load {_load(env['load_average_start'])}", flush=True)
    print(f"widths {settings.widths} (batch {settings.batch}), paddings {settings.paddings}, "
          f"size {settings.size}, modes {settings.modes}; warm-up {settings.warmup}, "
          f">= {settings.min_iters} iterations and >= {settings.min_time:g} s per mode "
          f"(<= {settings.max_iters} attempts, <= {settings.max_time:g} s); discard iterations "
          f"with > {settings.max_external:g} cores of external load", flush=True)

    rows: list[dict[str, Any]] = []
    todo = list(groups(settings))
    for i, (width, padding, phase) in enumerate(todo, 1):
        tqdm.write(f"[{i}/{len(todo)}] width {width}, {padding} padding, {phase} "
                   f"({time.perf_counter() - t_start:.0f} s elapsed)", file=sys.stdout)
        rows.extend(run_group(width, padding, phase, settings,
                              lambda s: tqdm.write(s, file=sys.stdout)))
        sys.stdout.flush()

    env["load_average_end"] = os.getloadavg()
    total = time.perf_counter() - t_start
    report = {
        "description": "U-Net CPU throughput in OUTPUT pixels per second "
                       "(batch * output_side**2 / median iteration time)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]) if argv is None
        else " ".join(["throughput.py", *argv]),
        "quick": quick,
        "environment": env,
        "settings": {
            "widths": settings.widths, "paddings": settings.paddings, "modes": settings.modes,
            "phases": settings.phases, "size": settings.size, "depth": settings.depth,
            "batch": {str(k): v for k, v in settings.batch.items()}, "warmup": settings.warmup,
            "min_iters": settings.min_iters, "max_iters": settings.max_iters,
            "min_time_s": settings.min_time, "max_time_s": settings.max_time,
            "max_external_cores": settings.max_external, "quiet_wait_s": settings.quiet_wait,
            "optimizer": f"SGD(lr={LR}, momentum={MOMENTUM})",
            "loss": "cross_entropy, 2 classes, random targets",
            "model": "UNet(1, 2, width, depth, padding), no batch norm, no dropout",
            "seed": SEED,
        },
        "results": rows,
        "speedups_vs_fp32": speedups(rows),
        "total_time_s": total,
    }
    write_json(out, report, indent=2)
    md = out.with_suffix(".md")
    write_text(md, markdown(report))
    print("\nspeed-up over fp32 (median throughput):")
    for s in report["speedups_vs_fp32"]:
        print(f"  w{s['width']:<3d} {s['padding']:5s} {s['phase']:9s} {s['mode']:18s} "
              f"{s['speedup_vs_fp32']:.2f}x")
    print(f"total {total:.0f} s; wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
