"""One process or many: the rank and world of a run under ``torchrun``, and the sampler that
gives each rank its share of a seeded epoch order (resumable mid-epoch)."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.distributed as dist

__all__ = ["rank_and_world", "is_main", "barrier", "all_reduce_sum", "EpochShardSampler", "init_from_env"]


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if rank_and_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


class EpochShardSampler(torch.utils.data.Sampler):
    """Indices of epoch ``epoch``: one permutation of the dataset seeded by ``(seed, epoch)``, cut
    to a whole number of global batches, rank ``rank`` taking its ``batch`` indices of each global
    batch, the first ``skip`` batches left out (resuming mid-epoch). Every rank draws the same
    permutation, so the ranks' shares of a global batch are exactly the batch one process would
    take."""

    def __init__(self, size: int, batch: int, seed: int, epoch: int, rank: int = 0, world: int = 1, skip: int = 0) -> None:
        self.size, self.batch, self.seed, self.epoch = size, batch, seed, epoch
        self.rank, self.world, self.skip = rank, world, skip

    def batches_per_epoch(self) -> int:
        return self.size // (self.batch * self.world)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        g = self.batch * self.world
        for b in range(self.skip, self.batches_per_epoch()):
            start = b * g + self.rank * self.batch
            yield from order[start:start + self.batch]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.skip) * self.batch


def init_from_env() -> bool:
    """Join the process group ``torchrun`` describes in the environment (gloo on CPU, NCCL when
    this process has a GPU); False when run as one plain process."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return True
