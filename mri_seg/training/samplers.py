"""Epoch samplers: shuffled (DistributedSampler) or tumour-oversampled, both rank-aware.

Both are seeded by ``(seed, epoch)`` through ``set_epoch``, so an epoch draws the same
indices whether the run was interrupted and resumed or not, and every rank agrees on
the draw before taking its shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Iterator, cast

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


def oversample_weights(
    has_tumour: np.ndarray,
    tumour_fraction: float,
    patient_ids: Sequence[str] | None = None,
    patient_balance: float = 0.0,
) -> np.ndarray:
    """Per-slice weights whose expected share of tumour slices is ``tumour_fraction``.

    Each empty slice gets ``(1 - f) / n_empty``. The tumour slices share ``f``: with
    ``patient_balance`` 0 each gets ``f / n_tumour`` (a patient's share grows with its
    number of tumour slices, so small tumours are drawn least); with 1 each patient with a
    tumour gets ``f / n_patients`` spread over its own tumour slices (a tumour on 3 slices is
    drawn as often as one on 30); in between, the mix of the two. If one class is absent
    the weights are uniform (nothing to rebalance).
    """
    if not 0.0 <= tumour_fraction < 1.0:
        raise ValueError(f"train.tumour_oversample must be in [0, 1), got {tumour_fraction}")
    if not 0.0 <= patient_balance <= 1.0:
        raise ValueError(f"train.tumour_patient_balance must be in [0, 1], got {patient_balance}")
    has_tumour = np.asarray(has_tumour, dtype=bool)
    n_t = int(has_tumour.sum())
    n_e = has_tumour.size - n_t
    if n_t == 0 or n_e == 0:
        return np.full(has_tumour.size, 1.0 / max(has_tumour.size, 1))
    per_tumour_slice = np.full(has_tumour.size, 1.0 / n_t)
    if patient_balance > 0:
        if patient_ids is None or len(patient_ids) != has_tumour.size:
            raise ValueError("train.tumour_patient_balance needs one patient id per slice")
        ids = pd.Series(np.asarray(patient_ids, dtype=str))
        slices_of_patient = ids[has_tumour].value_counts()  # tumour slices per patient with a tumour
        by_patient = 1.0 / (len(slices_of_patient) * ids.map(slices_of_patient).fillna(1).to_numpy(float))
        per_tumour_slice = (1.0 - patient_balance) * per_tumour_slice + patient_balance * by_patient
    return np.where(has_tumour, tumour_fraction * per_tumour_slice, (1.0 - tumour_fraction) / n_e)


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
    has_tumour: np.ndarray,
    tumour_oversample: float,
    num_replicas: int,
    rank: int,
    seed: int,
    patient_ids: Sequence[str] | None = None,
    patient_balance: float = 0.0,
) -> TrainSampler:
    """Oversampling when ``tumour_oversample > 0``, else a seeded shuffle; both support DDP."""
    if tumour_oversample > 0:
        weights = oversample_weights(has_tumour, tumour_oversample, patient_ids, patient_balance)
        return DistributedWeightedSampler(weights, num_replicas=num_replicas, rank=rank, seed=seed)
    return DistributedSampler(
        cast(Dataset, range(len(has_tumour))),  # only its length is used
        num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False,
    )  # fmt: skip
