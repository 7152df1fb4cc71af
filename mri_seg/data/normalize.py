"""Intensity normalisation, defined once and stored in every checkpoint.

``zscore_nonzero``: per image and per channel, subtract the mean and divide by the
standard deviation of the non-zero (inside-head) pixels; background stays 0.
Why per image: the dataset's slices come from many scanners and institutions with
different intensity scales, and inference inputs (PNG, NIfTI in scanner units) have
no common range; a per-image z-score makes the model independent of that scale and
needs no dataset statistics at inference time.
"""

from __future__ import annotations

import numpy as np

METHODS = ("zscore_nonzero",)
_EPS = 1e-6
_MIN_FOREGROUND = 16  # fewer non-zero pixels than this: use all pixels for the statistics


def normalise_image(image: np.ndarray, method: str = "zscore_nonzero") -> np.ndarray:
    """Normalise an ``H x W x C`` image to float32 with ``method``; returns a new array."""
    if method not in METHODS:
        raise ValueError(f"unknown normalisation '{method}' (known: {', '.join(METHODS)})")
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    out = np.zeros_like(img)
    for c in range(img.shape[2]):
        channel = img[:, :, c]
        fg = channel != 0
        values = channel[fg] if fg.sum() >= _MIN_FOREGROUND else channel.ravel()
        mean = float(values.mean()) if values.size else 0.0
        std = float(values.std()) if values.size else 1.0
        out[:, :, c] = np.where(fg, (channel - mean) / max(std, _EPS), 0.0)
    return out


def normalisation_spec(method: str) -> dict:
    """What a checkpoint stores so inference can repeat the exact normalisation."""
    if method not in METHODS:
        raise ValueError(f"unknown normalisation '{method}' (known: {', '.join(METHODS)})")
    return {"method": method}
