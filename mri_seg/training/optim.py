"""Optimiser and LR schedule from TrainConfig.

``cosine``: linear warm-up over ``warmup_epochs`` then cosine decay to 1% of ``lr`` over
``train.epochs``, stepped once per optimiser step (``LambdaLR``), so resuming from a
checkpoint's scheduler state lands at the same point of the curve. The schedule depends
on the configured epochs only, never on wall time, so a busy machine trains the same
model as a quiet one (``train.max_time_minutes`` is only a safety cap).
``plateau``: ``ReduceLROnPlateau`` on the mean val patient Dice (halve after 3 checks
without improvement), stepped after each validation.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau

from mri_seg.config import TrainConfig
from mri_seg.config.names import SCHEDULERS

MIN_LR_RATIO = 0.01
PLATEAU_FACTOR = 0.5
PLATEAU_PATIENCE = 3


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = MIN_LR_RATIO) -> float:
    """LR multiplier at optimiser step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> LRScheduler | ReduceLROnPlateau:
    if cfg.scheduler == "cosine":
        warmup = cfg.warmup_epochs * steps_per_epoch
        total = cfg.epochs * steps_per_epoch
        return LambdaLR(optimizer, lambda step: warmup_cosine(step, warmup, total))
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
