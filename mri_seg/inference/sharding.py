"""Splitting a batch of scans over ``torchrun`` processes.

Scan ``i`` (after sorting) goes to rank ``i % world_size``. The process group is only
used for one barrier before rank 0 merges the per-rank tables, so it is always Gloo
(CPU), also when each rank segments on its own GPU, with a long timeout because ranks
may finish their shares far apart.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch.distributed as dist

T = TypeVar("T")
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's share: items ``rank, rank + world_size, ...``."""
        return list(items[self.rank :: self.world_size])


def shard_from_env() -> Shard:
    """Rank and world size as set by ``torchrun`` (a single process otherwise)."""
    shard = Shard(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )
    if not 0 <= shard.rank < shard.world_size:
        raise ValueError(f"bad torchrun environment: RANK={shard.rank}, WORLD_SIZE={shard.world_size}")
    return shard


@contextlib.contextmanager
def process_group(shard: Shard) -> Iterator[None]:
    """Join (and leave) a Gloo group when running under torchrun with several processes."""
    created = False
    if shard.distributed and not dist.is_initialized():
        dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world_size, timeout=BARRIER_TIMEOUT)
        created = True
    try:
        yield
    finally:
        if created:
            dist.destroy_process_group()


def barrier(shard: Shard) -> None:
    if shard.distributed:
        dist.barrier()
