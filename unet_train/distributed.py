"""Training one model with several processes: ``torchrun`` and DistributedDataParallel.

Launch with the engine PyTorch ships, on one machine or several::

    torchrun --standalone --nproc-per-node 2 -m unet_train train --profile cpu
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29500 -m unet_train train --profile cpu   # on machine 0
    (the same with --node-rank 1 on machine 1)

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`from_environment` reads
them and joins the process group: gloo on CPUs, NCCL on CUDA (one GPU per process, chosen by
``LOCAL_RANK``). How training uses it (:mod:`unet_train.train`):

* ``batch_size`` is the **global** batch: each of the ``world_size`` processes draws
  ``batch_size / world_size`` patches per step from its own stream, seeded from
  ``(seed, rank)``, and DDP averages the gradients, so a step sees ``batch_size`` patches as on
  one process and the learning rate stays as it is (no scaling rule is needed).
* Batch norm: on CUDA the layers become ``SyncBatchNorm`` (statistics over the global batch).
  PyTorch's ``SyncBatchNorm`` runs on GPUs only, so on CPUs each process normalises with the
  statistics of its own patches and DDP broadcasts rank 0's running statistics to the others
  at every forward pass; a CPU run with batch norm is therefore not exactly a one-process run
  with the global batch.
* Only rank 0 writes the run folder and evaluates; the others wait at barriers.
* Every stop is agreed: each step all processes exchange one small tensor saying whether the
  loss was finite, whether a stop was asked for (SIGTERM/SIGINT) and whether the time budget is
  spent, and all take the same decision, so that no process waits forever in an all-reduce.
* A checkpoint holds every rank's random states; a resumed run with the same ``world_size``
  continues exactly; another ``world_size`` is refused.

Chapter 5 and the Reproduce page show the commands (also under SLURM).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

#: Flags exchanged every step (:meth:`Distributed.agree`).
STOP_FLAGS: tuple[str, ...] = ("nonfinite", "interrupted", "time")


@dataclass
class Distributed:
    """This process's place in the group (``world_size == 1``: a plain single process)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def agree(self, device: torch.device, **flags: bool) -> dict[str, bool]:
        """Each flag is true on return when it was true on any process (one all-reduce)."""
        if not self.active:
            return {k: bool(flags.get(k, False)) for k in STOP_FLAGS}
        t = torch.tensor([float(flags.get(k, False)) for k in STOP_FLAGS],
                         device=device if self.backend == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return {k: bool(v) for k, v in zip(STOP_FLAGS, t.tolist(), strict=True)}

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (a list indexed by rank) on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def from_environment(device_type: str, timeout_min: float = 30.0) -> Distributed:
    """Join the process group that ``torchrun`` set up (a single process when not launched
    by it): gloo on CPU, NCCL on CUDA."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return Distributed()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_min))
    return Distributed(rank, local, world, backend)


def rank_device(device: torch.device, group: Distributed) -> torch.device:
    """A CUDA process trains on the GPU of its ``LOCAL_RANK``."""
    if device.type == "cuda" and group.active:
        return torch.device("cuda", group.local_rank)
    return device
