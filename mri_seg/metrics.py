"""Segmentation metrics on binary masks (slices or patient volumes).

Empty-case convention (used everywhere, tested): when both truth and prediction are
empty, Dice and IoU are 1.0 (nothing to find, nothing found); when exactly one is
empty they are 0.0.
"""

from __future__ import annotations

import numpy as np


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary arrays of the same shape (any dimensionality)."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs truth {truth.shape}")
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total
