"""Review-flag uncertainty on hand-made pass stacks: entropy over the region, volume spread, score, flag."""

from __future__ import annotations

import numpy as np
import pytest

from mri_seg.uncertainty import (
    UncertaintyAccumulator,
    binary_entropy,
    review_flag,
    scan_uncertainty,
    volume_spread,
)


def _square(size: int, lo: int, hi: int, value: float) -> np.ndarray:
    p = np.zeros((size, size), np.float32)
    p[lo:hi, lo:hi] = value
    return p


def test_binary_entropy_values():
    np.testing.assert_allclose(binary_entropy(np.array([0.0, 0.5, 1.0])), [0.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(binary_entropy(np.array([0.25])), [0.811278], atol=1e-5)


def test_volume_spread():
    assert volume_spread(np.array([100, 100])) == 0.0
    assert volume_spread(np.array([50, 150])) == pytest.approx(1.0)  # (150-50)/100
    assert volume_spread(np.array([90, 110, 100])) == pytest.approx(0.2)
    assert volume_spread(np.array([0, 0])) == 0.0  # nothing predicted by any pass
    assert volume_spread(np.array([0, 10])) == 1.0  # capped at 1
    assert volume_spread(np.array([42])) == 0.0  # a single pass cannot disagree


def test_confident_agreeing_passes_score_zero():
    p = _square(16, 4, 12, 1.0)
    u = scan_uncertainty(np.stack([p, p])[:, None])  # P x D x H x W
    assert u.entropy == pytest.approx(0.0, abs=1e-4)
    assert u.volume_spread == 0.0 and u.score == pytest.approx(0.0, abs=1e-4)
    assert u.region_pixels == 64 and u.n_passes == 2


def test_soft_map_has_entropy_one_at_half():
    p = _square(16, 4, 12, 0.5)
    u = scan_uncertainty(np.stack([p, p]))  # one slice, P x H x W
    assert u.entropy == pytest.approx(1.0, abs=1e-4)
    assert u.volume_spread == 0.0
    assert u.score == pytest.approx(0.5, abs=1e-4)


def test_disagreeing_passes_raise_both_parts():
    a = _square(16, 4, 12, 0.9)  # 64 px
    b = _square(16, 5, 11, 0.9)  # 36 px, inside a
    u = scan_uncertainty(np.stack([a, b]))
    # region = union (64 px): 36 px have mean 0.9, 28 px have mean 0.45
    expected_entropy = (36 * binary_entropy(np.array([0.9]))[0] + 28 * binary_entropy(np.array([0.45]))[0]) / 64
    assert u.entropy == pytest.approx(expected_entropy, abs=1e-5)
    assert u.volume_spread == pytest.approx((64 - 36) / 50)
    assert u.score == pytest.approx(0.5 * (expected_entropy + (64 - 36) / 50), abs=1e-5)
    assert u.score > scan_uncertainty(np.stack([a, a])).score


def test_empty_prediction_scores_zero():
    p = np.full((2, 3, 8, 8), 0.1, np.float32)
    u = scan_uncertainty(p)
    assert u.region_pixels == 0 and u.entropy == 0.0 and u.score == 0.0


def test_accumulating_slices_equals_the_whole_volume():
    rng = np.random.default_rng(0)
    passes = rng.uniform(0, 1, (2, 5, 12, 12)).astype(np.float32)
    acc = UncertaintyAccumulator(0.5)
    for d in range(passes.shape[1]):
        acc.add(passes[:, d])
    whole = scan_uncertainty(passes, 0.5)
    assert acc.result().score == pytest.approx(whole.score, abs=1e-9)
    assert acc.result().region_pixels == whole.region_pixels


def test_threshold_defines_the_region():
    p = _square(8, 2, 6, 0.4)[None]
    assert scan_uncertainty(p, 0.5).region_pixels == 0
    assert scan_uncertainty(p, 0.3).region_pixels == 16


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="threshold must be in"):
        UncertaintyAccumulator(1.5)
    acc = UncertaintyAccumulator()
    acc.add(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="got 3 passes after 2"):
        acc.add(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="P x H x W"):
        acc.add(np.zeros((4, 4)))


def test_review_flag_is_strictly_above_threshold():
    assert review_flag(0.31, 0.3) is True
    assert review_flag(0.3, 0.3) is False
    u = scan_uncertainty(np.stack([_square(8, 2, 6, 0.5)] * 2))
    cols = u.columns(0.3)
    assert cols["review_flag"] is True and cols["uncertainty"] == pytest.approx(0.5, abs=1e-5)
    assert set(cols) == {"uncertainty", "uncertainty_entropy", "uncertainty_volume_spread", "review_flag"}


def test_spearman_and_review_summary():
    from mri_seg.uncertainty import review_summary, spearman

    dice = np.array([0.9, 0.8, 0.5, 0.2, 0.1, 0.85])
    unc = np.array([0.1, 0.2, 0.35, 0.4, 0.5, 0.15])
    assert spearman(unc, dice) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.array([1.0, 2.0]), np.array([1.0, 2.0])))
    s = review_summary(unc, dice, threshold=0.3, worst_n=3)
    assert s == {
        "threshold": 0.3, "n": 6, "n_flagged": 3, "spearman_uncertainty_dice": pytest.approx(-1.0),
        "worst_n": 3, "worst_flagged": 3, "below_half": 2, "below_half_flagged": 2,
    }
    assert review_summary(unc, dice, threshold=0.45, worst_n=3)["worst_flagged"] == 1


def test_an_ensemble_is_scored_member_by_member_on_one_models_scale():
    from mri_seg.uncertainty import scan_uncertainty

    rng = np.random.default_rng(0)
    one = np.clip(rng.normal(0.8, 0.05, (2, 3, 8, 8)), 0, 1).astype(np.float32)  # one member: plain + flipped
    one[:, :, :2] = 0.0
    alone = scan_uncertainty(one, 0.5, passes_per_member=2)
    # five identical members: the same score as one (pooling would not change it either)
    assert scan_uncertainty(np.concatenate([one] * 5), 0.5, passes_per_member=2).score == pytest.approx(alone.score)
    # two members that disagree with each other but are each sure of themselves: pooled, the
    # spread between members counts; member by member, each member's own (low) score
    other = one.copy()
    other[:, :, :, 4:] = 0.0  # the second member sees half the tumour
    both = np.concatenate([one, other])
    pooled = scan_uncertainty(both, 0.5)
    by_member = scan_uncertainty(both, 0.5, passes_per_member=2)
    assert by_member.n_passes == 4 and pooled.score > by_member.score
    expected = np.mean([scan_uncertainty(one, 0.5).score, scan_uncertainty(other, 0.5).score])
    assert by_member.score == pytest.approx(expected)
    with pytest.raises(ValueError, match="not whole members"):
        scan_uncertainty(both[:3], 0.5, passes_per_member=2)


def test_budget_threshold_flags_the_budget_share_of_the_most_uncertain():
    from mri_seg.uncertainty import budget_threshold

    scores = np.array([0.1, 0.5, 0.3, 0.9, 0.7, 0.2, 0.8, 0.4, 0.6, 0.05])
    for budget, n in ((0.2, 2), (0.3, 3), (0.0, 0), (1.0, 10), (0.15, 1)):
        threshold = budget_threshold(scores, budget)
        assert int((scores > threshold).sum()) == n, budget
    with pytest.raises(ValueError, match="budget must be in"):
        budget_threshold(scores, 1.5)
    with pytest.raises(ValueError, match="no scores"):
        budget_threshold(np.array([]), 0.2)


def test_review_summary_counts_the_failures_the_flag_catches():
    from mri_seg.uncertainty import review_summary

    summary = review_summary(np.array([0.9, 0.1, 0.8, 0.2]), np.array([0.3, 0.4, 0.9, 0.8]), 0.5)
    assert summary["below_half"] == 2 and summary["below_half_flagged"] == 1
