"""Intensity normalisation, defined once and stored in every checkpoint (``data.normalisation``).

``zscore_nonzero`` (default): per image and per channel, subtract the mean and divide by
the standard deviation of the non-zero (inside-head) pixels; background stays 0.
Why per image: the dataset's slices come from many scanners and institutions with
different intensity scales, and inference inputs (PNG, NIfTI in scanner units) have
no common range; a per-image z-score makes the model independent of that scale and
needs no dataset statistics at inference time.

``zscore_volume``: the same z-score, but with one mean and standard deviation per
patient volume and channel (over the non-zero voxels of all its slices, at the model's
scale): a slice's intensity keeps its relation to the rest of the scan (a slice that is
mostly tumour is not stretched to unit variance on its own). Training computes the
statistics over each patient's slices, inference over the scan's own slices (a 2D
image is a one-slice volume, which makes it ``zscore_nonzero``), both with
:func:`volume_stats`.

Either way, fewer than 16 non-zero values in a channel: all its values are used.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mri_seg.config.names import NORMALISATION_METHODS as METHODS

VOLUME_METHODS = ("zscore_volume",)  # methods whose statistics come from the whole volume
_EPS = 1e-6
_MIN_FOREGROUND = 16  # fewer non-zero pixels than this: use all pixels for the statistics


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown normalisation '{method}' (data.normalisation; known: {', '.join(METHODS)})")


def volume_stats(slices: Iterable[np.ndarray]) -> np.ndarray:
    """``2 x C`` float64 (mean, std) per channel over the non-zero voxels of ``H x W x C`` slices."""
    sums = None
    for image in slices:
        img = np.asarray(image, dtype=np.float64)
        img = img[:, :, None] if img.ndim == 2 else img
        flat = img.reshape(-1, img.shape[-1])
        fg = flat != 0
        part = np.stack([
            fg.sum(0), np.where(fg, flat, 0).sum(0), np.where(fg, flat * flat, 0).sum(0),
            np.full(flat.shape[1], flat.shape[0], np.float64), flat.sum(0), (flat * flat).sum(0),
        ])  # fmt: skip
        if sums is not None and part.shape != sums.shape:
            raise ValueError(f"volume slices have different channel counts: {part.shape[1]} and {sums.shape[1]}")
        sums = part if sums is None else sums + part
    if sums is None:
        raise ValueError("volume_stats needs at least one slice")
    n_fg, s_fg, q_fg, n_all, s_all, q_all = sums
    use_fg = n_fg >= _MIN_FOREGROUND
    n = np.where(use_fg, n_fg, n_all)
    mean = np.where(use_fg, s_fg, s_all) / np.maximum(n, 1)
    var = np.where(use_fg, q_fg, q_all) / np.maximum(n, 1) - mean**2
    return np.stack([mean, np.sqrt(np.maximum(var, 0.0))])


def normalise_image(image: np.ndarray, method: str = "zscore_nonzero", stats: np.ndarray | None = None) -> np.ndarray:
    """Normalise an ``H x W x C`` image to float32 with ``method``; returns a new array.

    ``zscore_volume`` needs ``stats``: the ``2 x C`` (mean, std) of the image's volume
    (:func:`volume_stats`); background (0) stays 0 either way.
    """
    check_method(method)
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = img[:, :, None]
    if method in VOLUME_METHODS:
        if stats is None or np.shape(stats) != (2, img.shape[2]):
            raise ValueError(
                f"normalisation '{method}' needs the volume's (mean, std) per channel, shape (2, {img.shape[2]}), "
                f"got {None if stats is None else np.shape(stats)}"
            )
    out = np.zeros_like(img)
    for c in range(img.shape[2]):
        channel = img[:, :, c]
        fg = channel != 0
        if stats is not None and method in VOLUME_METHODS:
            mean, std = float(stats[0, c]), float(stats[1, c])
        else:
            values = channel[fg] if fg.sum() >= _MIN_FOREGROUND else channel.ravel()
            mean = float(values.mean()) if values.size else 0.0
            std = float(values.std()) if values.size else 1.0
        out[:, :, c] = np.where(fg, (channel - mean) / max(std, _EPS), 0.0)
    return out


def normalisation_spec(method: str) -> dict:
    """What a checkpoint stores so inference can repeat the exact normalisation."""
    check_method(method)
    return {"method": method}
