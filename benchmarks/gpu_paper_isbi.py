"""The paper's recipe at the paper's width on a GPU: one stated cell beside claim C4.

    python benchmarks/gpu_paper_isbi.py /path/to/data [--out DIR]          # on a CUDA machine
    python benchmarks/gpu_paper_isbi.py /path/to/data --device cpu --quick  # a dry run here

Trains the ``paper`` profile at its full first-level width (64 channels; valid padding, one
572-pixel tile per step, SGD with momentum 0.99, the weighted cross-entropy with the weight
map, the paper's elastic deformation, drop-out) on ISBI 2012 with ``isbi_recipe``'s split
(slices 0-20 train, 21-22 validate, 23-24 gap, 25-29 held out), seed 0, for at most
``--minutes`` of training (default 3.5, so that training and evaluation fit in 5 minutes of
GPU time), then evaluates the held-out slices as the study cells are evaluated: the
challenge's instruments (thinned V_rand and V_info at the threshold chosen on the validation
slices, the warping error; :mod:`unet_book.scoring`) and the older ones (Rand error, VI,
pixel error at 0.5). The data folder is an argument: a GPU machine has no copy of the usual one.

Writes ``gpu_paper_isbi.json`` into ``--out`` (default ``benchmarks/results/studies``): one
cell in the study cells' format (arm, seed, steps, minutes, fingerprint, machine, date,
metrics, curve) plus ``device`` and ``source_digest``, the hash of the covered ``unet_core``
sources (the GPU machine's libraries differ from the pinned CPU build, so its code
fingerprint, probed with them, may differ: the book compares the sources). The book shows
this cell beside C4, outside the verdicts: one seed, a time budget, another machine.
Needs only what the GPU machine's image has (torch, numpy, scipy, scikit-image).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unet_book.scoring import evaluated_probabilities, score_cell  # noqa: E402
from unet_book.studies import STUDIES_DIR, get_study, result_fields, source_digest  # noqa: E402
from unet_train.atomic import write_json  # noqa: E402
from unet_train.compute import code_version  # noqa: E402
from unet_train.config import TrainConfig  # noqa: E402
from unet_train.runs import ENVIRONMENT  # noqa: E402
from unet_train.train import train  # noqa: E402

ARM = "paper_w64_gpu"
LABEL = "paper profile at full width (64 channels), GPU, time budget"


def config(device: str, minutes: float, quick: bool) -> TrainConfig:
    """``isbi_recipe``'s base with the ``paper`` profile at width 64, stopped by time."""
    values = {k: v for k, v in get_study("isbi_recipe").base.items() if k != "profile"}
    extra: dict[str, Any] = ({"steps": 4, "eval_every": 2, "base_channels": 8} if quick else
                             {"steps": 100_000, "eval_every": 500, "base_channels": 64})
    return TrainConfig.from_profile("paper", **values, **extra, seed=0, device=device,
                                    time_budget_min=minutes, checkpoint_every=1000)


def run(data: Path, device: str, minutes: float, quick: bool) -> dict[str, Any]:
    cfg = config(device, minutes, quick)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        result = train(cfg, run_dir, data_root=data, progress=False,
                       log=lambda m: print("  " + m, flush=True))
        used = json.loads((run_dir / ENVIRONMENT).read_text())  # the device training ran on
        fields = result_fields(result)
        scored = score_cell(run_dir, cfg, fields["threshold"], data_root=data,
                            computed=evaluated_probabilities(result))
    fields["metrics"] = {**fields["metrics"], **scored["metrics"]}
    return {
        "arm": ARM, "label": LABEL, "seed": cfg.seed, "steps": result.steps,
        "config": cfg.to_dict(), "config_key": cfg.key(), **fields,
        "challenge": scored["challenge"],
        "wall_minutes": round((time.perf_counter() - t0) / 60, 5),
        "source_digest": source_digest(), "device": used,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "code_version": code_version(),
        "quick": quick,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path, help="folder holding isbi2012/ (a synthetic stand-in is "
                                           "used when it is absent)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--minutes", type=float, default=3.5, help="training budget (default 3.5)")
    p.add_argument("--out", type=Path, default=STUDIES_DIR)
    p.add_argument("--quick", action="store_true", help="4 steps at width 8 (a dry run)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available here", file=sys.stderr)
        return 2
    if not args.data.is_dir():
        print(f"error: data folder {args.data} does not exist", file=sys.stderr)
        return 2
    if not 0 < args.minutes <= 4.5:
        print(f"error: --minutes {args.minutes}: expected more than 0 and at most 4.5 "
              "(training and evaluation within 5 minutes of GPU time)", file=sys.stderr)
        return 2
    cell = run(args.data, args.device, args.minutes, args.quick)
    write_json(args.out / "gpu_paper_isbi.json", cell, indent=1)
    m = cell["metrics"]
    print(f"{LABEL}: {cell['steps']} steps in {cell['minutes']:.2f} min on "
          f"{cell['device'].get('gpu', cell['device']['device'])}; held-out thinned V_rand "
          f"{m.get('v_rand')}, warping error {m.get('warping_error')}, Rand error (unthinned, "
          f"0.5) {m.get('rand_error')} -> {args.out / 'gpu_paper_isbi.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
