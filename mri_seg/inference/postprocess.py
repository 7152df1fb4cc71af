"""Probabilities -> binary mask: threshold, then drop small connected components.

Components are found per 2D slice (8-connectivity, ``cv2.connectedComponentsWithStats``),
also for volumes. Why per slice: the model predicts each slice independently, slices
can be far apart (Kaggle volumes have 2.5-5 mm spacing, arbitrary NIfTI may be
anisotropic), and evaluation uses the same rule, so ``min_component_pixels`` means the
same thing for a PNG slice and for a slice of a volume.
"""

from __future__ import annotations

import cv2
import numpy as np


def remove_small_components(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Drop 8-connected components smaller than ``min_pixels`` from an ``H x W`` bool mask."""
    if min_pixels <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels
    return keep[labels]


def postprocess(prob: np.ndarray, threshold: float = 0.5, min_component_pixels: int = 0) -> np.ndarray:
    """``prob >= threshold`` (``H x W`` or ``D x H x W``), small components removed per slice; bool."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if min_component_pixels < 0:
        raise ValueError(f"min_component_pixels must be >= 0, got {min_component_pixels}")
    prob = np.asarray(prob)
    if prob.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or D x H x W array, got shape {prob.shape}")
    mask = prob >= threshold
    if min_component_pixels > 1:
        planes = mask if mask.ndim == 3 else mask[None]
        planes = np.stack([remove_small_components(p, min_component_pixels) for p in planes])
        mask = planes if mask.ndim == 3 else planes[0]
    return mask
