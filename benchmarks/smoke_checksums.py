"""Checksums of seeded smoke runs: the same seed must give bit-identical weights and identical
test metrics before and after a change that should not change behaviour (a refactoring).

    python benchmarks/smoke_checksums.py --out before.json
    ... change the code ...
    python benchmarks/smoke_checksums.py --compare before.json

Each variant trains the ``smoke`` profile (with one field changed) on a deterministic
synthetic data set written into a temporary folder, single-threaded, and records a SHA-256 of
the final weights (every tensor of ``model.pt``, by name) and the test metrics. The weights are
bit-identical only on the same machine and torch build: compare runs made here, not across
machines.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from unet_core.data import write_synthetic_drive, write_synthetic_isbi2012
from unet_train.atomic import write_json
from unet_train.checkpoint import load_checkpoint
from unet_train.config import TrainConfig
from unet_train.train import train

VARIANTS: dict[str, dict[str, Any]] = {
    "smoke": {},
    "weighted_ce": {"loss": "weighted_ce"},
    "valid_padding": {"padding": "valid", "patch_size": 60, "eval_tile": 188},
    "paper_deformation": {"augmentation": "paper"},
    "isbi2012": {"dataset": "isbi2012", "loss": "weighted_ce", "val_images": 0,
                 "tune_threshold": False},
}


def weights_digest(path: Path) -> str:
    state = load_checkpoint(path)["model"]
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def run_all(work: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    data = work / "data"
    write_synthetic_drive(data / "DRIVE", n_train=4, n_test=2, size=(96, 92), seed=3)
    write_synthetic_isbi2012(data / "isbi2012", n_train=8, n_test=1, size=64, seed=3,
                             scale=0.5)
    out: dict[str, Any] = {}
    for name, changes in VARIANTS.items():
        cfg = TrainConfig.from_profile("smoke", seed=7, threads=1, **changes)
        res = train(cfg, work / "runs" / name, resume=False, progress=False, data_root=data,
                    log=lambda _: None)
        test = res.metrics["test"]
        out[name] = {"weights_sha256": weights_digest(res.run_dir / "model.pt"),
                     "threshold": test["threshold"], "pooled": test["pooled"],
                     "isbi": test.get("isbi")}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, help="write the checksums here")
    p.add_argument("--compare", type=Path, help="compare with checksums written earlier")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_all(Path(tmp))
    if args.out:
        write_json(args.out, result)
    if args.compare:
        before = json.loads(args.compare.read_text())
        bad = [k for k in VARIANTS if before.get(k) != result.get(k)]
        for k in VARIANTS:
            print(f"{k:18s} {'identical' if k not in bad else 'DIFFERENT'} "
                  f"{result[k]['weights_sha256'][:16]} AUC {result[k]['pooled']['auc_roc']:.6f}")
        return 1 if bad else 0
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
