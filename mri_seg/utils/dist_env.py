"""Where this process stands under ``torchrun``: rank, world size, local rank.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without it we are rank 0
of 1. Training (DDP) and batch inference (sharding scans) both start from this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when several processes run together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes shared outputs."""
        return self.rank == 0


def env_context() -> DistContext:
    """Rank/world size from the torchrun environment (defaults: single process)."""
    ctx = DistContext(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )
    if not 0 <= ctx.rank < ctx.world_size:
        raise ValueError(f"bad torchrun environment: RANK={ctx.rank}, WORLD_SIZE={ctx.world_size}")
    return ctx
