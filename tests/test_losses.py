"""SegmentationLoss on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch

from mri_seg.config import TrainConfig
from mri_seg.losses import SegmentationLoss, build_loss


def _square_mask(n: int = 2, size: int = 16) -> torch.Tensor:
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 4:10, 5:12] = 1.0
    return mask


def test_perfect_prediction_gives_near_zero_loss():
    mask = _square_mask()
    logits = (mask * 2 - 1) * 30.0  # +30 inside, -30 outside
    total, parts = SegmentationLoss()(logits, mask)
    assert total.item() < 1e-4
    assert parts["bce"].item() < 1e-6 and parts["dice"].item() < 1e-4


def test_zero_logits_give_ln2_bce_and_known_dice():
    mask = _square_mask(n=1)
    logits = torch.zeros_like(mask)
    total, parts = SegmentationLoss(bce_weight=1.0, dice_weight=0.5)(logits, mask)
    assert parts["bce"].item() == pytest.approx(math.log(2), abs=1e-6)
    t, p = mask.sum().item(), 0.5 * mask.numel()
    inter = 0.5 * t
    expected_dice = 1 - (2 * inter + 1) / (t + p + 1)
    assert parts["dice"].item() == pytest.approx(expected_dice, abs=1e-5)
    assert total.item() == pytest.approx(math.log(2) + 0.5 * expected_dice, abs=1e-5)


def test_known_bce_value_single_pixel():
    logits = torch.tensor([2.0]).view(1, 1, 1, 1)
    target = torch.tensor([0.0]).view(1, 1, 1, 1)
    _, parts = SegmentationLoss()(logits, target)
    assert parts["bce"].item() == pytest.approx(math.log1p(math.exp(2.0)), abs=1e-6)


def test_all_empty_mask_behaviour():
    empty = torch.zeros(2, 1, 8, 8)
    confident = torch.full_like(empty, -30.0)
    total, parts = SegmentationLoss()(confident, empty)
    assert total.item() < 1e-6  # nothing to find, nothing found
    unsure = torch.zeros_like(empty)
    _, parts = SegmentationLoss()(unsure, empty)
    assert parts["dice"].item() == pytest.approx(1 - 1 / (0.5 * empty.numel() + 1), abs=1e-6)
    assert parts["bce"].item() == pytest.approx(math.log(2), abs=1e-6)


def test_wrong_prediction_costs_more_than_right_one():
    mask = _square_mask()
    good, _ = SegmentationLoss()((mask * 2 - 1) * 3, mask)
    bad, _ = SegmentationLoss()((1 - mask * 2) * 3, mask)
    assert bad.item() > good.item() + 1.0


def test_stable_for_huge_logits_and_half_precision():
    mask = _square_mask()
    logits = (1 - mask * 2) * 1e4  # confidently wrong, huge
    total, _ = SegmentationLoss()(logits, mask)
    assert torch.isfinite(total)
    total16, _ = SegmentationLoss()(((mask * 2 - 1) * 20).to(torch.bfloat16), mask)
    assert torch.isfinite(total16) and total16.dtype == torch.float32


def test_gradients_flow_and_weights_from_config():
    loss = build_loss(TrainConfig(bce_weight=2.0, dice_weight=0.0))
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    total, parts = loss(logits, torch.ones(1, 1, 4, 4))
    assert total.item() == pytest.approx(2 * parts["bce"].item())
    total.backward()
    assert logits.grad is not None and (logits.grad < 0).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        SegmentationLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError, match="weights"):
        SegmentationLoss(bce_weight=0.0, dice_weight=0.0)
