"""The slice size the model sees: one definition for training and inference.

A model trained with ``data.scale`` s sees slices resized to ``round(h*s) x round(w*s)``;
inference must compute exactly the same size, or predictions shift by a pixel.
"""

from __future__ import annotations


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(h, w)`` after resizing by ``scale`` (rounded to the nearest pixel, at least 1)."""
    if scale <= 0:
        raise ValueError(f"data.scale must be > 0, got {scale}")
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))
