"""Epoch samplers: shuffled (DistributedSampler) or tumour-oversampled, both rank-aware.

Both are seeded by ``(seed, epoch)`` through ``set_epoch``, so an epoch draws the same
indices whether the run was interrupted and resumed or not, and every rank agrees on
the draw before taking its shard.
"""

from __future__ import annotations

from typing import Iterator, cast

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


def oversample_weights(has_tumour: np.ndarray, tumour_fraction: float) -> np.ndarray:
    """Per-slice weights whose expected share of tumour slices is ``tumour_fraction``.

    Each tumour slice gets ``f / n_tumour``, each empty one ``(1 - f) / n_empty``. If one
    class is absent the weights are uniform (nothing to rebalance).
    """
    if not 0.0 <= tumour_fraction < 1.0:
        raise ValueError(f"train.tumour_oversample must be in [0, 1), got {tumour_fraction}")
    has_tumour = np.asarray(has_tumour, dtype=bool)
    n_t = int(has_tumour.sum())
    n_e = has_tumour.size - n_t
    if n_t == 0 or n_e == 0:
        return np.full(has_tumour.size, 1.0 / max(has_tumour.size, 1))
    return np.where(has_tumour, tumour_fraction / n_t, (1.0 - tumour_fraction) / n_e)


class DistributedWeightedSampler(Sampler[int]):
    """``len(weights)`` draws with replacement per epoch, split across ranks.

    All ranks draw the same sequence from a generator seeded with ``seed + epoch`` and
    keep every ``num_replicas``-th index starting at ``rank``.
    """

    def __init__(self, weights: np.ndarray, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        if rank < 0 or rank >= num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.weights = torch.as_tensor(np.asarray(weights), dtype=torch.double)
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.num_samples = -(-len(self.weights) // num_replicas)  # ceil
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, self.total_size, replacement=True, generator=g)
        return iter(draw[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


TrainSampler = DistributedWeightedSampler | DistributedSampler  # both: len(), set_epoch(), DDP-aware


def build_train_sampler(
    has_tumour: np.ndarray, tumour_oversample: float, num_replicas: int, rank: int, seed: int
) -> TrainSampler:
    """Oversampling when ``tumour_oversample > 0``, else a seeded shuffle; both support DDP."""
    if tumour_oversample > 0:
        return DistributedWeightedSampler(
            oversample_weights(has_tumour, tumour_oversample), num_replicas=num_replicas, rank=rank, seed=seed
        )
    return DistributedSampler(
        cast(Dataset, range(len(has_tumour))),  # only its length is used
        num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False,
    )  # fmt: skip
