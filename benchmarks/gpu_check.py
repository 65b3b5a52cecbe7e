"""A prepared end-to-end check for a CUDA machine, within 5 minutes of GPU time.

    python benchmarks/gpu_check.py /path/to/data [--out DIR]      # on the GPU machine
    python benchmarks/gpu_check.py /path/to/data --device cpu --quick   # a dry run here

The data folder is an argument (a GPU machine may have no network and no copy of the usual
data folder); it holds ``DRIVE/`` and ``isbi2012/`` (synthetic stand-ins are written there when
absent). In order:

1. the CUDA-marked tests (``pytest -m cuda tests``);
2. a smoke training run on the device, stopped half-way and resumed;
3. ``python -m unet_train predict --device ...`` on two DRIVE test images;
4. a timing table: training and inference output pixels per second, fp32 and bf16 autocast,
   for the paper network (width 64, valid padding, 572 tiles, batch 1) and the ``cpu``
   profile's network (width 16, same padding, 128 patches, batch 8), synchronised timings.

Writes ``gpu_check.json`` and ``gpu_check.md`` into ``--out`` (default
``benchmarks/results``). Needs only torch, numpy, scipy, scikit-image, scikit-learn, Pillow,
tifffile and tqdm; without albumentations the training run uses ``augmentation="none"``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unet_core.data.resolve import resolve_dataset  # noqa: E402
from unet_core.losses import make_loss  # noqa: E402
from unet_core.model import UNet  # noqa: E402
from unet_train.atomic import write_json, write_text  # noqa: E402
from unet_train.config import TrainConfig  # noqa: E402
from unet_train.devices import choose_precision, environment, pick_device, synchronize  # noqa: E402, I001
from unet_train.train import train  # noqa: E402

NETWORKS = {  # name: (width, padding, input side, batch)
    "paper (64, valid, 572)": (64, "valid", 572, 1),
    "cpu profile (16, same, 128)": (16, "same", 128, 8),
}


def _sh(cmd: list[str], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
    return {"cmd": " ".join(cmd), "returncode": out.returncode,
            "seconds": round(time.perf_counter() - t0, 1), "tail": tail}


def check_training(data: Path, device: str, work: Path) -> dict[str, Any]:
    aug = "albumentations" if importlib.util.find_spec("albumentations") else "none"
    cfg = TrainConfig.from_profile("smoke", device=device, steps=40, eval_every=20,
                                   augmentation=aug, deterministic=device == "cuda")
    t0 = time.perf_counter()
    half = train(cfg, work / "run", data_root=data, progress=False, stop_after=20)
    done = train(cfg, work / "run", data_root=data, progress=False)
    fresh = train(cfg, work / "fresh", data_root=data, progress=False)
    a, b = (torch.load(r.run_dir / "model.pt", weights_only=True)["model"] for r in (done, fresh))
    return {"augmentation": aug, "stopped_at": half.steps, "resumed_from": done.resumed_from,
            "steps": done.steps, "test_auc": done.metrics["test"]["pooled"]["auc_roc"],
            "resumed_equals_uninterrupted": all(torch.equal(a[k], b[k]) for k in a),
            "seconds": round(time.perf_counter() - t0, 1), "model": str(done.run_dir / "model.pt")}


def _rate(model: UNet, x: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None,
          training: bool, device: torch.device, iters: int) -> float:
    loss_fn = make_loss("bce", out_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    model.train(training)

    def once() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            if training:
                loss = loss_fn(model(x).float(), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            else:
                with torch.inference_mode():
                    model(x)

    for _ in range(max(2, iters // 4)):
        once()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        once()
    synchronize(device)
    out = target.shape[-1]
    return iters * x.shape[0] * out * out / (time.perf_counter() - t0)


def timing_table(device: torch.device, iters: int) -> list[dict[str, Any]]:
    rows = []
    for name, (width, padding, side, batch) in NETWORKS.items():
        torch.manual_seed(0)
        model = UNet(1, 1, width, 4, padding).to(device).to(memory_format=torch.channels_last)
        x = torch.rand(batch, 1, side, side, device=device).contiguous(
            memory_format=torch.channels_last)
        out = model.output_size(side)
        target = (torch.rand(batch, out, out, device=device) > 0.5).long()
        bf16 = choose_precision(device, True).autocast
        for phase in ("training", "inference"):
            row = {"network": name, "phase": phase, "batch": batch, "output_side": out,
                   "fp32_px_s": _rate(model, x, target, None, phase == "training", device, iters)}
            row["bf16_px_s"] = (_rate(model, x, target, bf16, phase == "training", device, iters)
                                if bf16 is torch.bfloat16 else None)
            rows.append(row)
    return rows


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# GPU check ({report['date']})", "",
             f"{env.get('gpu', env['device'])}, torch {env['torch']}"
             + (f", CUDA {env['cuda']}" if "cuda" in env else "")
             + f"; total {report['seconds']} s",
             "", "| network | phase | batch | fp32 Mpx/s | bf16 Mpx/s | bf16 / fp32 |",
             "|---|---|---:|---:|---:|---:|"]
    for r in report["timing"]:
        fp, bf = r["fp32_px_s"], r["bf16_px_s"]
        bf_text, ratio = ("n/a", "n/a") if bf is None else (f"{bf / 1e6:.2f}", f"{bf / fp:.2f}x")
        lines.append(f"| {r['network']} | {r['phase']} | {r['batch']} | {fp / 1e6:.2f} | "
                     f"{bf_text} | {ratio} |")
    t = report["training"]
    lines += ["", f"Training: stopped at {t['stopped_at']}, resumed from {t['resumed_from']}, "
              f"{t['steps']} steps; resumed equals uninterrupted: "
              f"{t['resumed_equals_uninterrupted']}; tests: exit {report['tests']['returncode']}; "
              f"predict: exit {report['predict']['returncode']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="folder holding DRIVE/ and isbi2012/")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true", help="few timing iterations (a dry run)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available here", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    device = pick_device(args.device)
    report: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                              "environment": environment(device, choose_precision(device, True))}
    report["tests"] = _sh([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests",
                           "-p", "no:cacheprovider"], timeout=120)
    with tempfile.TemporaryDirectory() as tmp:
        report["training"] = check_training(args.data, args.device, Path(tmp))
        images = resolve_dataset("drive", args.data).root / "test" / "images"
        report["predict"] = _sh([sys.executable, "-m", "unet_train", "predict", "--checkpoint",
                                 report["training"]["model"], "--device", args.device,
                                 "--output", str(Path(tmp) / "pred"),
                                 *map(str, sorted(images.iterdir())[:2])], timeout=120)
    report["timing"] = timing_table(device, 3 if args.quick else 20)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.out / "gpu_check.json", report)
    write_text(args.out / "gpu_check.md", markdown(report))
    print(markdown(report))
    ok = (report["tests"]["returncode"] in (0, 5) and report["predict"]["returncode"] == 0
          and report["training"]["resumed_equals_uninterrupted"])
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
