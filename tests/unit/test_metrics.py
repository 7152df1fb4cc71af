"""Metrics on hand-made masks with known values, and the empty-case conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mri_seg.metrics import (
    average_surface_distance,
    bootstrap_mean_ci,
    describe,
    dice_score,
    hd95,
    iou_score,
    patient_metrics,
    precision_score,
    sensitivity_score,
    slice_metrics,
    volume_relative_error,
)


def _square(shape=(40, 40), top=10, left=10, size=10) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top : top + size, left : left + size] = True
    return m


def test_dice_iou_known_overlap():
    a = _square(left=10)
    b = _square(left=15)  # 10x10 squares overlapping in 10x5
    assert dice_score(a, b) == pytest.approx(2 * 50 / 200)
    assert iou_score(a, b) == pytest.approx(50 / 150)
    assert precision_score(b, a) == pytest.approx(0.5)
    assert sensitivity_score(b, a) == pytest.approx(0.5)


def test_precision_sensitivity_asymmetric():
    truth = _square(size=10)
    pred = _square(size=5)  # inside the truth
    assert precision_score(pred, truth) == 1.0
    assert sensitivity_score(pred, truth) == pytest.approx(25 / 100)


def test_empty_conventions():
    empty = np.zeros((20, 20), bool)
    full = _square((20, 20), 5, 5, 5)
    assert dice_score(empty, empty) == 1.0 and iou_score(empty, empty) == 1.0
    assert dice_score(full, empty) == 0.0 and dice_score(empty, full) == 0.0
    assert iou_score(full, empty) == 0.0
    assert hd95(empty, empty) == 0.0 and average_surface_distance(empty, empty) == 0.0
    assert math.isnan(hd95(full, empty)) and math.isnan(hd95(empty, full))
    assert math.isnan(average_surface_distance(empty, full))
    # zero denominator: 1 when both empty, 0 otherwise
    assert precision_score(empty, empty) == 1.0 and sensitivity_score(empty, empty) == 1.0
    assert precision_score(empty, full) == 0.0  # nothing predicted on a real tumour
    assert sensitivity_score(full, empty) == 0.0  # prediction on a tumour-free mask
    assert volume_relative_error(0, 0) == 0.0
    assert math.isnan(volume_relative_error(5, 0))
    assert volume_relative_error(150, 100) == pytest.approx(0.5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        dice_score(np.zeros((4, 4)), np.zeros((4, 5)))


def test_hd95_asd_parallel_lines_offset_by_k():
    # every surface point is exactly k from the other line -> HD95 = ASD = k
    for k in (1, 3, 7):
        a = np.zeros((40, 40), bool)
        b = a.copy()
        a[5:35, 10] = True
        b[5:35, 10 + k] = True
        assert hd95(a, b) == pytest.approx(k)
        assert average_surface_distance(a, b) == pytest.approx(k)


def test_hd95_single_points_euclidean():
    a = np.zeros((3, 20, 20), bool)
    b = a.copy()
    a[1, 5, 5] = True
    b[1, 8, 9] = True  # 3-4-5 triangle
    assert hd95(a, b) == pytest.approx(5.0)
    c = a.copy()
    c[1, 5, 5] = False
    c[2, 5, 5] = True  # one slice apart counts as one pixel (unit spacing)
    assert hd95(a, c) == pytest.approx(1.0)


def test_hd95_shifted_squares_3d():
    truth = np.zeros((5, 40, 40), bool)
    truth[1:4] = _square()
    for k in (2, 4):
        pred = np.roll(truth, k, axis=2)
        value = hd95(pred, truth)
        assert 0 < value <= k + 1e-6
        assert value == pytest.approx(k)  # the square edges are k apart along the shift
        assert 0 < average_surface_distance(pred, truth) < k
    assert hd95(truth, truth) == 0.0


def test_patient_metrics_slice_counts():
    truth = np.zeros((6, 30, 30), bool)
    pred = np.zeros_like(truth)
    truth[1:4, 10:20, 10:20] = True  # tumour on slices 1,2,3
    pred[2:4, 10:20, 10:20] = True  # found on 2,3; missed on 1
    pred[5, 0:3, 0:3] = True  # false positive slice 5
    m = patient_metrics(pred, truth)
    assert m["true_tumour_slices"] == 3 and m["pred_tumour_slices"] == 3
    assert m["fp_slices"] == 1 and m["fn_slices"] == 1
    assert m["true_volume"] == 300 and m["pred_volume"] == 209
    assert m["volume_rel_error"] == pytest.approx((209 - 300) / 300)
    assert m["dice"] == pytest.approx(2 * 200 / 509)
    assert m["precision"] == pytest.approx(200 / 209) and m["sensitivity"] == pytest.approx(200 / 300)
    with pytest.raises(ValueError, match="D x H x W"):
        patient_metrics(pred[0], truth[0])


def test_patient_metrics_empty_patient():
    empty = np.zeros((3, 10, 10), bool)
    m = patient_metrics(empty, empty)
    assert m["dice"] == 1.0 and m["hd95"] == 0.0 and m["fp_slices"] == 0 and m["volume_rel_error"] == 0.0


def test_slice_metrics():
    s = slice_metrics(_square(size=4), _square(size=2))
    assert s == {"dice": pytest.approx(2 * 4 / 20), "iou": pytest.approx(4 / 16), "true_pixels": 4, "pred_pixels": 16}


def test_bootstrap_ci_contains_mean_and_is_seeded():
    rng = np.random.default_rng(3)
    values = rng.uniform(0.4, 0.95, size=25)
    lo, hi = bootstrap_mean_ci(values, n_samples=1000, seed=7)
    assert lo < values.mean() < hi
    assert (lo, hi) == bootstrap_mean_ci(values, n_samples=1000, seed=7)
    assert (lo, hi) != bootstrap_mean_ci(values, n_samples=1000, seed=8)
    assert hi - lo < 0.2
    assert bootstrap_mean_ci([0.7]) == (0.7, 0.7)
    assert all(math.isnan(v) for v in bootstrap_mean_ci([math.nan]))


def test_describe_excludes_and_counts_nan():
    d = describe([1.0, math.nan, 3.0], "hd95", n_bootstrap=200)
    assert d["hd95_mean"] == 2.0 and d["hd95_median"] == 2.0 and d["hd95_min"] == 1.0 and d["hd95_max"] == 3.0
    assert d["hd95_n_undefined"] == 1
    assert d["hd95_std"] == pytest.approx(math.sqrt(2))
    lo, hi = d["hd95_ci95"]
    assert 1.0 <= lo <= 2.0 <= hi <= 3.0
    none = describe([math.nan], "asd")
    assert math.isnan(none["asd_mean"]) and none["asd_n_undefined"] == 1
