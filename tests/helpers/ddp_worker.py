"""One training process for tests/test_distributed.py, started by ``torchrun`` or plainly.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/helpers/ddp_worker.py \
        --run-dir R --data-dir D --mode fixed|record [--steps N]

``fixed``: every step's *global* batch is drawn from ``default_rng([99, step])`` and each rank
trains on its slice (the test hook ``train(batches=...)``), so a 2-process run and a 1-process
run see the same patches per step and must end with the same weights (the gradients are
averaged). ``record``: the real patch sampler, with a SHA-256 of every batch each rank drew
written to ``<run-dir>/patches-rank<r>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from unet_core.data.sampler import PatchBatch, PatchSampler
from unet_train.config import TrainConfig
from unet_train.distributed import Distributed
from unet_train.train import train

SIZE, GLOBAL_BATCH = 32, 4


def fixed_batch(step: int, group: Distributed) -> PatchBatch:
    rng = np.random.default_rng([99, step])
    image = rng.random((GLOBAL_BATCH, 1, SIZE, SIZE), dtype=np.float32)
    target = (image[:, 0] > 0.5).astype(np.int64)  # a learnable rule: bright is foreground
    per = GLOBAL_BATCH // group.world_size
    part = slice(group.rank * per, (group.rank + 1) * per)
    return PatchBatch(torch.from_numpy(image[part]), torch.from_numpy(target[part]),
                      torch.ones(per, SIZE, SIZE, dtype=torch.bool), None)


def config(mode: str, steps: int) -> TrainConfig:
    if mode == "fixed":  # fp32, no batch norm, a loss that averages over equal pixel counts
        return TrainConfig.from_profile(
            "smoke", dataset="isbi2012", loss="bce", batch_norm=False, bf16=False,
            channels_last=False, val_images=0, tune_threshold=False, patch_size=SIZE,
            eval_tile=64, batch_size=GLOBAL_BATCH, steps=steps, eval_every=steps, threads=1,
            checkpoint_every=2, augmentation="none")
    return TrainConfig.from_profile("smoke", patch_size=SIZE, eval_tile=32, batch_size=4,
                                    steps=steps, eval_every=10, threads=1, checkpoint_every=2)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--mode", choices=("fixed", "record"), required=True)
    p.add_argument("--steps", type=int, default=6)
    args = p.parse_args()
    cfg = config(args.mode, args.steps)
    if args.mode == "record":
        drawn: list[str] = []
        real = PatchSampler.sample

        def recording(self: PatchSampler, n: int) -> PatchBatch:
            batch = real(self, n)
            drawn.append(hashlib.sha256(batch.image.numpy().tobytes()).hexdigest()[:16])
            return batch

        PatchSampler.sample = recording  # type: ignore[method-assign]
        result = train(cfg, args.run_dir, data_root=args.data_dir, progress=False)
        rank = int(os.environ.get("RANK", 0))
        (args.run_dir / f"patches-rank{rank}.json").write_text(json.dumps(drawn))
        print(f"rank {rank}: {len(drawn)} batches, {result.steps} steps")
    else:
        train(cfg, args.run_dir, data_root=args.data_dir, progress=False, batches=fixed_batch)


if __name__ == "__main__":
    main()
