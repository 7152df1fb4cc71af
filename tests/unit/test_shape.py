"""Shape features on hand-made masks."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from mri_seg.shape import irregularity, prefixed_shape_features, shape_features, solidity


def test_filled_square():
    vol = np.zeros((5, 64, 64), bool)
    vol[1:4, 10:30, 12:27] = True  # 20 rows x 15 cols x 3 slices
    f = shape_features(vol)
    assert f["volume"] == 3 * 300
    assert f["largest_slice_area"] == 300
    assert (f["bbox_rows"], f["bbox_cols"], f["bbox_slices"]) == (20, 15, 3)
    assert f["solidity"] == pytest.approx(1.0)


def test_l_shape_solidity_below_one():
    m = np.zeros((64, 64), bool)
    m[10:40, 10:20] = True
    m[30:40, 10:40] = True
    s = solidity(m)
    assert 0.6 < s < 0.9
    f = shape_features(m)
    assert (f["bbox_rows"], f["bbox_cols"], f["bbox_slices"]) == (30, 30, 1)
    assert f["volume"] == 300 + 200


def test_largest_slice_used_and_bbox_spans_slices():
    vol = np.zeros((10, 50, 50), bool)
    vol[2, 5:8, 5:8] = True  # small, slice 2
    vol[7, 20:40, 20:40] = True  # largest, slice 7
    f = shape_features(vol)
    assert f["largest_slice_area"] == 400 and f["bbox_slices"] == 6
    assert (f["bbox_rows"], f["bbox_cols"]) == (35, 35)
    assert f["solidity"] == pytest.approx(1.0)


def test_irregularity_disc_vs_ragged():
    disc = np.zeros((200, 200), np.uint8)
    cv2.circle(disc, (100, 100), 50, 1, -1)
    star = np.zeros((200, 200), np.uint8)
    pts = []
    for i in range(16):
        r = 70 if i % 2 == 0 else 25
        a = i * math.pi / 8
        pts.append([100 + r * math.cos(a), 100 + r * math.sin(a)])
    cv2.fillPoly(star, [np.array(pts, np.int32)], 1)
    d, s = irregularity(disc.astype(bool)), irregularity(star.astype(bool))
    assert 0.9 < d < 1.2
    assert s > 1.8 * d
    assert solidity(star.astype(bool)) < 0.75 < solidity(disc.astype(bool))


def test_empty_mask_and_prefixes():
    empty = np.zeros((3, 20, 20), bool)
    f = shape_features(empty)
    assert f["volume"] == 0 and f["bbox_rows"] == 0 and math.isnan(f["solidity"]) and math.isnan(f["irregularity"])
    truth = empty.copy()
    truth[1, 5:10, 5:10] = True
    p = prefixed_shape_features(empty, truth)
    assert p["true_volume"] == 25 and p["pred_volume"] == 0
    assert set(p) == {f"{pre}_{k}" for pre in ("true", "pred") for k in f}
