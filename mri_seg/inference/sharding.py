"""Splitting a batch of scans over ``torchrun`` processes.

Scan ``i`` (after sorting) goes to rank ``i % world_size``. The process group is only
used for one barrier before rank 0 merges the per-rank tables, so it is always Gloo
(CPU), also when each rank segments on its own GPU, with a long timeout because ranks
may finish their shares far apart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch.distributed as dist

from mri_seg.utils.dist_env import DistContext, env_context

T = TypeVar("T")
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class Shard(DistContext):
    """This process's place under torchrun, and its share of a list of scans."""

    @property
    def distributed(self) -> bool:
        return self.enabled

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's share: items ``rank, rank + world_size, ...``."""
        return list(items[self.rank :: self.world_size])


def shard_from_env() -> Shard:
    """Rank and world size as set by ``torchrun`` (a single process otherwise)."""
    ctx = env_context()
    return Shard(rank=ctx.rank, world_size=ctx.world_size, local_rank=ctx.local_rank)


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
