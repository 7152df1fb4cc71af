"""SegmentationLoss on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch

from mri_seg.config import TrainConfig
from mri_seg.losses import SegmentationLoss, TopKBCE, build_loss


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


# --------------------------------------------------------------------------- loss variants (train.loss)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_tversky_known_value_and_equals_dice_at_half_half():
    mask = _square_mask(n=1)
    logits = torch.zeros_like(mask)  # p = 0.5 everywhere
    t, n = mask.sum().item(), mask.numel()
    tp, fp, fn = 0.5 * t, 0.5 * (n - t), 0.5 * t
    alpha, beta = 0.3, 0.7
    _, parts = SegmentationLoss(loss="tversky_bce", tversky_alpha=alpha, tversky_beta=beta)(logits, mask)
    assert parts["dice"].item() == pytest.approx(1 - (tp + 1) / (tp + alpha * fp + beta * fn + 1), abs=1e-6)
    assert parts["bce"].item() == pytest.approx(math.log(2), abs=1e-6)
    # alpha = beta = 0.5 is Dice (up to where the smoothing constant sits)
    _, half = SegmentationLoss(loss="tversky_bce")(logits, mask)
    assert half["dice"].item() == pytest.approx(1 - (tp + 1) / (tp + 0.5 * fp + 0.5 * fn + 1), abs=1e-6)


def test_tversky_beta_penalises_missed_tumour_more():
    mask = _square_mask(n=1)
    under = torch.full_like(mask, -3.0)  # misses everything
    over = torch.full_like(mask, 3.0)  # predicts everything
    fn_heavy = SegmentationLoss(loss="tversky_bce", tversky_alpha=0.3, tversky_beta=0.7)
    _, miss = fn_heavy(under, mask)
    _, extra = fn_heavy(over, mask)
    _, miss_sym = SegmentationLoss(loss="tversky_bce")(under, mask)
    assert miss["dice"].item() > miss_sym["dice"].item()  # beta > 0.5 makes false negatives cost more
    _, extra_sym = SegmentationLoss(loss="tversky_bce")(over, mask)
    assert extra["dice"].item() < extra_sym["dice"].item()  # and false positives less


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_known_value_single_pixel(gamma):
    logits = torch.tensor([2.0]).view(1, 1, 1, 1)
    target = torch.tensor([0.0]).view(1, 1, 1, 1)
    _, parts = SegmentationLoss(loss="dice_focal", focal_gamma=gamma)(logits, target)
    bce = math.log1p(math.exp(2.0))
    assert parts["bce"].item() == pytest.approx(bce * _sig(2.0) ** gamma, rel=1e-5)  # gamma 0 is BCE


def test_focal_down_weights_easy_pixels():
    mask = _square_mask()
    easy = (mask * 2 - 1) * 4.0  # right and confident
    _, bce = SegmentationLoss(loss="dice_bce")(easy, mask)
    _, focal = SegmentationLoss(loss="dice_focal", focal_gamma=2.0)(easy, mask)
    assert focal["bce"].item() < 0.01 * bce["bce"].item()
    assert focal["dice"].item() == pytest.approx(bce["dice"].item(), abs=1e-7)  # same Dice term


def test_dice_batch_false_is_the_mean_of_per_image_dice():
    mask = torch.zeros(2, 1, 16, 16)
    mask[1, :, 4:10, 5:12] = 1.0  # image 0 empty, image 1 has a tumour
    logits = torch.zeros_like(mask)
    per_image = []
    for i in range(2):
        t, p = mask[i].sum().item(), 0.5 * mask[i].numel()
        per_image.append(1 - (2 * 0.5 * t + 1) / (t + p + 1))
    _, parts = SegmentationLoss(dice_batch=False)(logits, mask)
    assert parts["dice"].item() == pytest.approx(sum(per_image) / 2, abs=1e-6)
    t, p = mask.sum().item(), 0.5 * mask.numel()
    _, batch = SegmentationLoss(dice_batch=True)(logits, mask)
    assert batch["dice"].item() == pytest.approx(1 - (t + 1) / (t + p + 1), abs=1e-6)
    assert batch["dice"].item() != pytest.approx(parts["dice"].item(), abs=1e-3)


def test_deep_supervision_weights_heads_half_per_level():
    from mri_seg.losses import deep_supervision_weights

    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    mask = _square_mask()
    main, aux = (mask * 2 - 1) * 3.0, torch.zeros_like(mask)
    loss = SegmentationLoss(loss="tversky_bce", tversky_beta=0.7, tversky_alpha=0.3)
    stacked = torch.stack([main, aux], dim=1)  # B x heads x 1 x H x W, as DynUNet returns in training
    total, parts = loss(stacked, mask)
    (t_main, p_main), (t_aux, p_aux) = loss(main, mask), loss(aux, mask)
    assert total.item() == pytest.approx(2 / 3 * t_main.item() + 1 / 3 * t_aux.item(), rel=1e-6)
    assert parts["bce"].item() == pytest.approx(2 / 3 * p_main["bce"].item() + 1 / 3 * p_aux["bce"].item(), rel=1e-6)
    same, _ = loss(torch.stack([main, main, main], dim=1), mask)
    assert same.item() == pytest.approx(t_main.item(), rel=1e-6)


VARIANTS = [
    dict(loss="dice_bce"),
    dict(loss="dice_bce", dice_batch=False),
    dict(loss="tversky_bce", tversky_alpha=0.3, tversky_beta=0.7),
    dict(loss="dice_focal", focal_gamma=2.0, dice_batch=False),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_every_variant_has_finite_gradients_and_trains_one_step(variant):
    from untrained import tiny_config

    from mri_seg.models import build_model

    loss = build_loss(TrainConfig(**variant))
    mask = _square_mask(n=2)
    for logits in ((1 - mask * 2) * 1e4, torch.zeros_like(mask)):  # confidently wrong and unsure
        logits = logits.clone().requires_grad_(True)
        total, _ = loss(logits, mask)
        total.backward()
        assert torch.isfinite(total) and torch.isfinite(logits.grad).all()
    torch.manual_seed(0)
    model = build_model(tiny_config().model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    images = torch.randn(2, 3, 16, 16)
    before = [p.detach().clone() for p in model.parameters()]
    total, parts = loss(model(images), mask)
    total.backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert set(parts) == {"bce", "dice"}


def test_bad_variant_settings_raise():
    with pytest.raises(ValueError, match="unknown train.loss 'dice'.*dice_bce, tversky_bce, dice_focal"):
        SegmentationLoss(loss="dice")
    with pytest.raises(ValueError, match="tversky_alpha"):
        SegmentationLoss(loss="tversky_bce", tversky_alpha=0.0, tversky_beta=0.0)
    with pytest.raises(ValueError, match="focal_gamma"):
        SegmentationLoss(loss="dice_focal", focal_gamma=-1.0)


# --------------------------------------------------------------------------- train.bce_topk


def test_bce_topk_averages_only_the_hardest_pixels():
    """8 pixels: two confidently wrong (logit -4 on tumour), six right (logit -4 on background)."""
    target = torch.zeros(1, 1, 2, 4)
    target[0, 0, 0, :2] = 1.0
    logits = torch.full((1, 1, 2, 4), -4.0)
    wrong, right = math.log(1 + math.exp(4.0)), math.log(1 + math.exp(-4.0))  # BCE of each kind of pixel
    plain = SegmentationLoss(dice_weight=0.0)(logits, target)[1]["bce"].item()
    quarter = SegmentationLoss(dice_weight=0.0, bce_topk=0.25)(logits, target)[1]["bce"].item()
    half = SegmentationLoss(dice_weight=0.0, bce_topk=0.5)(logits, target)[1]["bce"].item()
    assert plain == pytest.approx((2 * wrong + 6 * right) / 8, rel=1e-5)
    assert quarter == pytest.approx(wrong, rel=1e-5)  # the 2 of 8 hardest: both missed tumour pixels
    assert half == pytest.approx((2 * wrong + 2 * right) / 4, rel=1e-5)
    assert SegmentationLoss(dice_weight=0.0, bce_topk=1.0)(logits, target)[1]["bce"].item() == pytest.approx(plain)


def test_bce_topk_from_config_and_refused_where_it_does_not_apply():
    loss = build_loss(TrainConfig(loss="tversky_bce", tversky_alpha=0.3, tversky_beta=0.7, bce_topk=0.1))
    assert isinstance(loss.pixel, TopKBCE) and loss.pixel.fraction == 0.1
    pixel_only = build_loss(TrainConfig(bce_topk=0.1, dice_weight=0.0))
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    pixel_only(logits, _square_mask())[0].backward()
    assert logits.grad is not None and int((logits.grad != 0).sum()) == math.ceil(0.1 * logits.numel())
    with pytest.raises(ValueError, match="bce_topk"):
        SegmentationLoss(loss="dice_focal", bce_topk=0.5)
    with pytest.raises(ValueError, match="bce_topk"):
        SegmentationLoss(bce_topk=0.0)


# --------------------------------------------------------------------------- train.boundary_weight


def _boundary_part(loss: SegmentationLoss, logits: torch.Tensor, target: torch.Tensor) -> float:
    """What the boundary term adds to the total: total minus the weighted pixel and overlap terms."""
    total, parts = loss(logits, target)
    return total.item() - loss.bce_weight * parts["bce"].item() - loss.dice_weight * parts["dice"].item()


def test_boundary_term_costs_a_false_positive_by_its_distance_from_the_tumour():
    """16x16, tumour rows 4-9 / cols 5-11; one false-positive pixel beside the edge or in the far corner."""
    mask = _square_mask(n=1)
    base = (mask * 2 - 1) * 30.0  # a perfect prediction
    near, far = base.clone(), base.clone()
    near[0, 0, 4, 12] = 30.0  # 1 pixel right of the tumour
    far[0, 0, 15, 0] = 30.0  # the opposite corner: distance sqrt(6^2 + 5^2)
    loss = SegmentationLoss(boundary_weight=1.0)
    inside = _boundary_part(loss, base, mask)  # the perfect prediction's own value
    assert inside < 0  # probability inside the tumour is rewarded (signed distance < 0 there)
    assert _boundary_part(loss, near, mask) - inside == pytest.approx(1.0 / 256, rel=1e-3)
    assert _boundary_part(loss, far, mask) - inside == pytest.approx(math.hypot(6, 5) / 256, rel=1e-3)
    # weight 0: no boundary term at all; an image without tumour adds nothing whatever the prediction
    assert SegmentationLoss().boundary is None
    assert _boundary_part(SegmentationLoss(), far, mask) == pytest.approx(0.0, abs=1e-6)
    empty = torch.zeros_like(mask)
    assert _boundary_part(loss, torch.randn_like(mask) * 5, empty) == pytest.approx(0.0, abs=1e-6)


def test_boundary_weight_from_config_scales_the_term_and_is_refused_below_zero():
    mask, logits = _square_mask(), torch.randn(2, 1, 16, 16)
    one = _boundary_part(build_loss(TrainConfig(boundary_weight=1.0)), logits, mask)
    tenth = _boundary_part(build_loss(TrainConfig(boundary_weight=0.1)), logits, mask)
    assert one != pytest.approx(0.0, abs=1e-4) and tenth == pytest.approx(0.1 * one, rel=1e-4)
    with pytest.raises(ValueError, match="boundary_weight"):
        SegmentationLoss(boundary_weight=-0.1)
