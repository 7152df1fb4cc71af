"""Training loss: a pixel term + an overlap term on logits (MONAI losses), chosen by ``train.loss``.

``train.loss``:

* ``dice_bce`` (default): ``bce_weight`` x BCE + ``dice_weight`` x soft Dice (MONAI ``DiceLoss``);
* ``tversky_bce``: ``bce_weight`` x BCE + ``dice_weight`` x Tversky loss (MONAI ``TverskyLoss``,
  ``train.tversky_alpha`` weighs false positives, ``train.tversky_beta`` false negatives:
  beta > alpha pushes against under-segmentation; alpha = beta = 0.5 is Dice);
* ``dice_focal``: ``bce_weight`` x focal loss (MONAI ``FocalLoss``, sigmoid form,
  ``train.focal_gamma``; gamma 0 is BCE) + ``dice_weight`` x soft Dice -- MONAI's
  ``DiceFocalLoss``, kept as two terms so both are logged.

``train.bce_topk`` < 1 (dice_bce, tversky_bce): the BCE term is the mean over only that fraction
of the batch's pixels with the highest loss (nnU-Net's TopK loss), so pixels the model already
gets right stop diluting the ones it gets confidently wrong (a missed tumour scored as
background); 1 (default) is plain BCE.

``train.boundary_weight`` > 0 (any loss) adds that weight x the boundary loss (Kervadec et al. 2019;
MONAI ``BoundaryLoss``): the mean over an image's pixels of the predicted probability times the
target's signed distance map (pixels, negative inside the tumour), so a tumour pixel deep inside a
missed region and a false positive far from the tumour cost more than an error at its edge; an image
without tumour adds nothing. 0 (default) is off.

So ``bce_weight`` always weighs the pixel term and ``dice_weight`` the overlap term; the
training log's ``train_bce`` / ``train_dice_loss`` columns hold those two terms (the boundary
term is in ``train_loss`` only).

All terms are computed in float32 from logits (``BCEWithLogitsLoss`` and MONAI's focal
loss use log-sigmoid forms, so large logits do not overflow), also under mixed precision.

``train.dice_batch`` (default true): the overlap term is one ratio over all pixels of the
batch (MONAI's ``batch=True``) instead of the mean of per-image ratios. Why the default:
most slices have no tumour; a per-image Dice on an empty slice is ~1 for any non-zero
soft prediction and makes training noisy. Smoothing is 1 in numerator and denominator.
Defined empty behaviour (batch Dice): on an all-empty batch the Dice term is
``1 - 1 / (sum(sigmoid(logits)) + 1)`` -- 0 for a confident empty prediction, rising
towards 1 as predicted mass grows -- and the pixel term does the rest.

Deep supervision (``model.name: dynunet`` in training mode): the model returns
``B x (1 + n) x 1 x H x W``, the main head first, then ``n`` auxiliary heads already
upsampled to full size. The loss is the weighted mean over heads with weights
``0.5 ** i`` normalised to sum 1 (nnU-Net's scheme), so the main head counts most; the
logged parts are weighted the same way. Validation and inference see only the main head.
"""

from __future__ import annotations

import math

import torch
from monai.losses import BoundaryLoss, DiceLoss, FocalLoss, TverskyLoss
from torch import nn

from mri_seg.config import TrainConfig
from mri_seg.config.names import LOSSES

SMOOTH = 1.0  # added to numerator and denominator of Dice/Tversky (defined value on empty masks)


class TopKBCE(nn.Module):
    """BCE with logits averaged over the ``fraction`` of pixels (of the whole batch) with the highest loss."""

    def __init__(self, fraction: float):
        super().__init__()
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"train.bce_topk must be in (0, 1], got {fraction}")
        self.fraction = float(fraction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten()
        k = max(1, math.ceil(self.fraction * per_pixel.numel()))
        return per_pixel.topk(k, sorted=False).values.mean()


def deep_supervision_weights(heads: int) -> list[float]:
    """``0.5 ** i`` for head ``i`` (0 = main), normalised to sum 1."""
    raw = [0.5**i for i in range(heads)]
    return [w / sum(raw) for w in raw]


class SegmentationLoss(nn.Module):
    """``total = bce_weight * pixel_term + dice_weight * overlap_term``; forward returns ``(total, parts)``.

    ``parts``: ``{"bce": pixel term, "dice": overlap term}`` (detached), see the module docstring.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = SMOOTH,
        loss: str = "dice_bce",
        dice_batch: bool = True,
        tversky_alpha: float = 0.5,
        tversky_beta: float = 0.5,
        focal_gamma: float = 2.0,
        bce_topk: float = 1.0,
        boundary_weight: float = 0.0,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown train.loss '{loss}' (known: {', '.join(LOSSES)})")
        if bce_weight < 0 or dice_weight < 0 or bce_weight + dice_weight == 0:
            raise ValueError(f"loss weights must be >= 0 and not both 0, got bce={bce_weight}, dice={dice_weight}")
        if loss == "tversky_bce" and (tversky_alpha < 0 or tversky_beta < 0 or tversky_alpha + tversky_beta == 0):
            raise ValueError(
                f"train.tversky_alpha and train.tversky_beta must be >= 0 and not both 0, "
                f"got {tversky_alpha}, {tversky_beta}"
            )
        if loss == "dice_focal" and focal_gamma < 0:
            raise ValueError(f"train.focal_gamma must be >= 0, got {focal_gamma}")
        if loss == "dice_focal" and bce_topk != 1.0:
            raise ValueError(
                f"train.bce_topk ({bce_topk}) applies to the BCE term of dice_bce and tversky_bce; "
                "dice_focal's focal term already weighs the hard pixels (set train.bce_topk: 1)"
            )
        if boundary_weight < 0:
            raise ValueError(f"train.boundary_weight must be >= 0, got {boundary_weight}")
        self.name = loss
        self.boundary_weight = float(boundary_weight)
        self.boundary = BoundaryLoss(sigmoid=True) if boundary_weight > 0 else None
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        if loss == "dice_focal":
            self.pixel: nn.Module = FocalLoss(gamma=float(focal_gamma), use_softmax=False)
        elif bce_topk < 1.0:
            self.pixel = TopKBCE(bce_topk)
        else:
            self.pixel = nn.BCEWithLogitsLoss()
        if loss == "tversky_bce":
            self.overlap: nn.Module = TverskyLoss(
                sigmoid=True, alpha=float(tversky_alpha), beta=float(tversky_beta),
                batch=dice_batch, smooth_nr=smooth, smooth_dr=smooth,
            )  # fmt: skip
        else:
            self.overlap = DiceLoss(sigmoid=True, batch=dice_batch, smooth_nr=smooth, smooth_dr=smooth)

    def _single(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pixel = self.pixel(logits, target)
        overlap = self.overlap(logits, target)
        total = self.bce_weight * pixel + self.dice_weight * overlap
        if self.boundary is not None:
            total = total + self.boundary_weight * self.boundary(logits, target)
        return total, pixel, overlap

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        target = target.float()
        if logits.ndim == target.ndim + 1:  # deep supervision: B x heads x C x H x W
            heads = logits.unbind(1)
        else:
            heads = (logits,)
        for head in heads:
            if head.shape != target.shape:
                raise ValueError(f"logits {tuple(head.shape)} and target {tuple(target.shape)} differ in shape")
        weights = deep_supervision_weights(len(heads))
        terms = [self._single(head.float(), target) for head in heads]
        total, pixel, overlap = (weights[0] * x for x in terms[0])
        for w, (t, p, o) in zip(weights[1:], terms[1:]):
            total, pixel, overlap = total + w * t, pixel + w * p, overlap + w * o
        return total, {"bce": pixel.detach(), "dice": overlap.detach()}


def build_loss(cfg: TrainConfig) -> SegmentationLoss:
    return SegmentationLoss(
        bce_weight=cfg.bce_weight,
        dice_weight=cfg.dice_weight,
        loss=cfg.loss,
        dice_batch=cfg.dice_batch,
        tversky_alpha=cfg.tversky_alpha,
        tversky_beta=cfg.tversky_beta,
        focal_gamma=cfg.focal_gamma,
        bce_topk=cfg.bce_topk,
        boundary_weight=cfg.boundary_weight,
    )
