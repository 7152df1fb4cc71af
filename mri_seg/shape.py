"""Tumour shape features of a binary patient volume (``D x H x W``, slices in order).

Why: Dice alone does not say *which* tumours fail; comparing the true and predicted
shape (size, extent, compactness) per patient shows whether errors concentrate on
small, elongated or irregular tumours.

Features (all in pixels; empty mask -> sizes 0, ratios NaN):

* ``volume``: tumour pixels in the volume.
* ``largest_slice_area``: tumour pixels on the slice with the most tumour.
* ``bbox_rows`` / ``bbox_cols`` / ``bbox_slices``: extent of the tumour's bounding box
  (max - min + 1 along each axis).
* ``solidity``: on the largest slice, tumour pixels / pixels of the filled convex hull of
  all its tumour pixels (cv2.convexHull + fillPoly), 1.0 for a convex shape, < 1 for
  concave or fragmented tumours.
* ``irregularity``: on the largest slice, perimeter^2 / (4 pi area), perimeter summed over
  the outer contours (cv2.findContours + arcLength, pixel-centre polygon), area as pixel
  count. About 1 for a disc, larger for elongated or ragged outlines.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SHAPE_FEATURES = (
    "volume",
    "largest_slice_area",
    "bbox_rows",
    "bbox_cols",
    "bbox_slices",
    "solidity",
    "irregularity",
)


def _extent(mask_along_axis: np.ndarray | np.bool_) -> int:
    idx = np.flatnonzero(mask_along_axis)
    return int(idx[-1] - idx[0] + 1) if idx.size else 0


def _outer_contours(mask2d: np.ndarray) -> list[np.ndarray]:
    contours, _ = cv2.findContours(mask2d.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return list(contours)


def solidity(mask2d: np.ndarray) -> float:
    """Tumour pixels / filled convex-hull pixels of a 2D mask; NaN when empty."""
    mask2d = np.asarray(mask2d, dtype=bool)
    area = int(mask2d.sum())
    if area == 0:
        return math.nan
    points = cv2.findNonZero(mask2d.astype(np.uint8))
    hull = cv2.convexHull(points)
    hull_mask = np.zeros(mask2d.shape, dtype=np.uint8)
    cv2.fillPoly(hull_mask, [hull], 1)
    hull_mask |= mask2d.astype(np.uint8)  # the hull polygon always covers its own pixels
    return area / int(hull_mask.sum())


def irregularity(mask2d: np.ndarray) -> float:
    """perimeter^2 / (4 pi area) of a 2D mask's outer contours; NaN when empty."""
    mask2d = np.asarray(mask2d, dtype=bool)
    area = int(mask2d.sum())
    if area == 0:
        return math.nan
    perimeter = sum(cv2.arcLength(c, closed=True) for c in _outer_contours(mask2d))
    return perimeter**2 / (4.0 * math.pi * area)


def shape_features(volume: np.ndarray) -> dict[str, float | int]:
    """The features above for one ``D x H x W`` (or ``H x W``) binary mask."""
    vol = np.asarray(volume, dtype=bool)
    if vol.ndim == 2:
        vol = vol[None]
    if vol.ndim != 3:
        raise ValueError(f"shape features need a D x H x W mask, got shape {vol.shape}")
    per_slice = vol.reshape(len(vol), -1).sum(axis=1)
    total = int(per_slice.sum())
    if total == 0:
        return {
            "volume": 0,
            "largest_slice_area": 0,
            "bbox_rows": 0,
            "bbox_cols": 0,
            "bbox_slices": 0,
            "solidity": math.nan,
            "irregularity": math.nan,
        }
    largest = vol[int(np.argmax(per_slice))]
    return {
        "volume": total,
        "largest_slice_area": int(per_slice.max()),
        "bbox_rows": _extent(vol.any(axis=(0, 2))),
        "bbox_cols": _extent(vol.any(axis=(0, 1))),
        "bbox_slices": _extent(per_slice > 0),
        "solidity": solidity(largest),
        "irregularity": irregularity(largest),
    }


def prefixed_shape_features(pred_vol: np.ndarray, true_vol: np.ndarray) -> dict[str, float | int]:
    """``true_*`` and ``pred_*`` shape features of one patient."""
    out: dict[str, float | int] = {}
    for prefix, vol in (("true", true_vol), ("pred", pred_vol)):
        out.update({f"{prefix}_{k}": v for k, v in shape_features(vol).items()})
    return out
