"""A training process whose second checkpoint write stalls half-way (for tests/test_faults.py).

    python tests/helpers/slow_checkpoint_worker.py RUN_DIR DATA_DIR

It trains the config of :func:`config` and, on the second call of ``torch.save`` inside a
checkpoint write, writes half of the bytes, creates ``RUN_DIR/stalled`` and sleeps, so that
the test can SIGKILL it in the middle of an atomic write.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import torch

from unet_train import checkpoint
from unet_train.config import TrainConfig
from unet_train.train import train


def config() -> TrainConfig:
    return TrainConfig.from_profile("smoke", patch_size=32, eval_tile=32, steps=8,
                                    eval_every=8, checkpoint_every=2, threads=1, seed=11)


def main() -> None:
    run_dir, data_dir = Path(sys.argv[1]), Path(sys.argv[2])
    real_save, calls = torch.save, []

    def stalling_save(obj, f, *args, **kwargs):  # noqa: ANN001, ANN202
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        (run_dir / "stalled").write_text("half written")
        time.sleep(600)

    checkpoint.torch.save = stalling_save  # the module's torch.save, used by save_checkpoint
    train(config(), run_dir, data_root=data_dir, progress=False)


if __name__ == "__main__":
    main()
