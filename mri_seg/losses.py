"""Training loss: sigmoid BCE on logits + soft Dice (MONAI), weighted from TrainConfig.

Both terms are computed in float32 from logits (``BCEWithLogitsLoss`` uses the
log-sum-exp form, so large logits do not overflow), also under mixed precision.

Dice is the *batch* soft Dice (``DiceLoss(batch=True)``: one ratio over all pixels of
the batch) with smoothing 1 in numerator and denominator. Why: most slices have no
tumour; a per-slice Dice on an empty slice is ~1 for any non-zero soft prediction and
makes training noisy. Defined empty behaviour: on an all-empty batch the Dice term is
``1 - 1 / (sum(sigmoid(logits)) + 1)`` -- 0 for a confident empty prediction, rising
towards 1 as predicted mass grows -- and BCE does the rest.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn

from mri_seg.config import TrainConfig


class SegmentationLoss(nn.Module):
    """``total = bce_weight * BCE + dice_weight * Dice``; forward returns ``(total, parts)``."""

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0):
        super().__init__()
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got bce={bce_weight}, dice={dice_weight}")
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.bce = nn.BCEWithLogitsLoss()
        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=smooth, smooth_dr=smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        logits = logits.float()
        target = target.float()
        bce = self.bce(logits, target)
        dice = self.dice(logits, target)
        total = self.bce_weight * bce + self.dice_weight * dice
        return total, {"bce": bce.detach(), "dice": dice.detach()}


def build_loss(cfg: TrainConfig) -> SegmentationLoss:
    return SegmentationLoss(bce_weight=cfg.bce_weight, dice_weight=cfg.dice_weight)
