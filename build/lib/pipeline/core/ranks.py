"""Ranks of a torchrun launch for phase one.

`torchrun --nproc-per-node N --no-python c2f extract ...` starts N copies; torchrun's
environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) says which one this is. The
ranks only need to agree at three moments (rank 0 holds the cache lock; every rank has read
the index before anyone writes; every rank has finished, so rank 0 can judge completeness),
so the process group carries one small tensor: gloo on the CPU, NCCL on GPUs. Without torchrun this is a single rank and nothing is started.
"""
from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import InUseError
from .files import FolderLock


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")    # where the group's tensors live

    @classmethod
    def start(cls, device: torch.device) -> tuple["Ranks", torch.device]:
        """Join torchrun's process group when there is one; returns the ranks and this rank's device."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(), device
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), dist.get_world_size(), device), device

    def all_true(self, flag: bool) -> bool:
        """True only if `flag` is true on every rank (a barrier too)."""
        if self.world == 1:
            return flag
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())

    def barrier(self) -> None:
        self.all_true(True)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()

    def slice(self, items: list) -> list:
        """This rank's disjoint share, interleaved so that long and short videos spread evenly."""
        return items[self.rank::self.world]


def lock_for_the_whole_run(stack: ExitStack, out: Path, ranks: Ranks, what: str = "extraction") -> None:
    """Rank 0 holds the folder's lock for the run; if it cannot, every rank refuses together
    (extraction locks its cache, prediction its output folder)."""
    refusal = None
    if ranks.rank == 0:
        try:
            stack.enter_context(FolderLock(out, what=what))
        except InUseError as err:
            refusal = err
    if not ranks.all_true(refusal is None):
        raise refusal or InUseError(f"{out} is in use by another {what} (rank 0 could not lock it)",
                                    "wait for it to finish or use another --out")
