"""Optimiser and LR schedule from TrainConfig.

``cosine``: linear warm-up over ``warmup_epochs`` then cosine decay to 1% of ``lr``,
stepped once per optimiser step (``LambdaLR``), so resuming from a checkpoint's
scheduler state lands at the same point of the curve. With a wall-time budget
(``train.max_time_minutes``) the decay follows whichever is further along: the steps
done or the budget used -- on a slow or busy machine the LR still reaches its minimum
when the budget stops training, instead of being cut off at a high LR.
``plateau``: ``ReduceLROnPlateau`` on the mean val patient Dice (halve after 3 checks
without improvement), stepped after each validation.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from mri_seg.config import TrainConfig

SCHEDULERS = ("cosine", "plateau")
MIN_LR_RATIO = 0.01
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 3


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def warmup_cosine(
    step: int, warmup_steps: int, total_steps: int, min_ratio: float = MIN_LR_RATIO, time_fraction: float = 0.0
) -> float:
    """LR multiplier at optimiser step ``step`` (0-based); ``time_fraction``: budget used, in [0, 1]."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max((step - warmup_steps) / span, time_fraction, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class TimeProgress:
    """Fraction of the wall-time budget used; set once per epoch (by rank 0, broadcast) so
    every DDP rank uses the same LR."""

    def __init__(self) -> None:
        self.value = 0.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, time_progress: TimeProgress | None = None
) -> LRScheduler | ReduceLROnPlateau:
    if cfg.scheduler == "cosine":
        warmup = cfg.warmup_epochs * steps_per_epoch
        total = cfg.epochs * steps_per_epoch
        clock = time_progress or TimeProgress()
        return LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total, time_fraction=clock.value))
    if cfg.scheduler == "plateau":
        return ReduceLROnPlateau(optimizer, mode="max", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE)
    raise ValueError(f"unknown train.scheduler '{cfg.scheduler}' (known: {', '.join(SCHEDULERS)})")


def step_per_batch(scheduler) -> None:
    if not isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step()


def step_after_validation(scheduler, metric: float) -> None:
    if isinstance(scheduler, ReduceLROnPlateau):
        scheduler.step(metric)


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
