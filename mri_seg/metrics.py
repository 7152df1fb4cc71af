"""Segmentation metrics on binary masks (slices or patient volumes), and their aggregation.

Empty-case conventions (used everywhere, tested; also written into every summary.json):

* Dice, IoU: both truth and prediction empty -> 1.0 (nothing to find, nothing found);
  exactly one empty -> 0.0.
* Precision (PPV = TP / predicted) and sensitivity (TP / true): the same rule for a zero
  denominator -> 1.0 when both are empty, 0.0 when only the denominator's mask is empty
  (an empty prediction of a real tumour has precision 0.0; a prediction on a tumour-free
  volume has sensitivity 0.0). So these four are always defined.
* HD95, ASD (symmetric average surface distance): computed by MONAI on the whole patient
  volume (slices stacked in slice order, 3D surfaces, unit spacing on every axis, so units
  are pixels and one slice step counts as one pixel). Both empty -> 0.0; exactly one empty ->
  NaN (undefined: no surface to measure to). NaNs are reported per patient, excluded from
  the aggregate statistics, and counted (``hd95_n_undefined``).
* volume_rel_error = (pred - true) / true; true = 0: 0.0 if pred = 0, else NaN.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

CONVENTIONS = (
    "Dice/IoU: both truth and prediction empty -> 1, exactly one empty -> 0. "
    "Precision/sensitivity: zero denominator -> 1 if both masks are empty, else 0. "
    "HD95/ASD (pixels; MONAI, 3D surfaces of the stacked patient volume, unit spacing, ASD symmetric): "
    "both empty -> 0, exactly one empty -> NaN (excluded from means, counted in <metric>_n_undefined). "
    "volume_rel_error = (pred - true) / true; true = 0 -> 0 if pred = 0 else NaN. "
    "fp_slices: slices with prediction but no true tumour; fn_slices: tumour slices with an empty prediction."
)

SUMMARY_METRICS = ("dice", "iou", "hd95", "asd", "precision", "sensitivity", "volume_rel_error")


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs truth {truth.shape}")
    return pred, truth


def _ratio(num: int, den: int, both_empty: bool) -> float:
    """``num / den``; a zero denominator gives 1.0 when both masks are empty, else 0.0."""
    if den == 0:
        return 1.0 if both_empty else 0.0
    return num / den


def dice_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary arrays of the same shape (any dimensionality)."""
    pred, truth = _pair(pred, truth)
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total


def iou_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union (Jaccard); both empty -> 1.0."""
    pred, truth = _pair(pred, truth)
    union = int(np.logical_or(pred, truth).sum())
    if union == 0:
        return 1.0
    return int(np.logical_and(pred, truth).sum()) / union


def precision_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Positive predictive value TP / predicted pixels (see module conventions for empties)."""
    pred, truth = _pair(pred, truth)
    both_empty = not pred.any() and not truth.any()
    return _ratio(int(np.logical_and(pred, truth).sum()), int(pred.sum()), both_empty)


def sensitivity_score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Recall TP / true pixels (see module conventions for empties)."""
    pred, truth = _pair(pred, truth)
    both_empty = not pred.any() and not truth.any()
    return _ratio(int(np.logical_and(pred, truth).sum()), int(truth.sum()), both_empty)


def _surface_inputs(pred: np.ndarray, truth: np.ndarray) -> tuple[torch.Tensor, torch.Tensor] | float:
    """Batch/channel tensors for MONAI, or the conventional value when a mask is empty."""
    pred, truth = _pair(pred, truth)
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred and not has_truth:
        return 0.0
    if has_pred != has_truth:
        return math.nan
    return torch.from_numpy(pred)[None, None].float(), torch.from_numpy(truth)[None, None].float()


def hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels (2D or 3D masks, unit spacing)."""
    inputs = _surface_inputs(pred, truth)
    if isinstance(inputs, float):
        return inputs
    with warnings.catch_warnings():  # MONAI warns about its own deprecated internal argument
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(inputs[0], inputs[1], include_background=True, percentile=95, spacing=1.0)
    return float(value.item())


def average_surface_distance(pred: np.ndarray, truth: np.ndarray) -> float:
    """Symmetric average surface distance in pixels (2D or 3D masks, unit spacing)."""
    inputs = _surface_inputs(pred, truth)
    if isinstance(inputs, float):
        return inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_average_surface_distance(
            inputs[0], inputs[1], include_background=True, symmetric=True, spacing=1.0
        )
    return float(value.item())


def volume_relative_error(pred_volume: int, true_volume: int) -> float:
    """(pred - true) / true; true = 0 -> 0.0 if pred = 0, else NaN."""
    if true_volume == 0:
        return 0.0 if pred_volume == 0 else math.nan
    return (pred_volume - true_volume) / true_volume


def patient_metrics(pred_vol: np.ndarray, true_vol: np.ndarray) -> dict[str, float | int]:
    """All per-patient metrics of a ``D x H x W`` predicted and true volume (slices in order)."""
    pred_vol, true_vol = _pair(pred_vol, true_vol)
    if pred_vol.ndim != 3:
        raise ValueError(f"patient volumes must be D x H x W, got shape {pred_vol.shape}")
    pred_per_slice = pred_vol.reshape(len(pred_vol), -1).any(axis=1)
    true_per_slice = true_vol.reshape(len(true_vol), -1).any(axis=1)
    true_volume, pred_volume = int(true_vol.sum()), int(pred_vol.sum())
    return {
        "dice": dice_score(pred_vol, true_vol),
        "iou": iou_score(pred_vol, true_vol),
        "hd95": hd95(pred_vol, true_vol),
        "asd": average_surface_distance(pred_vol, true_vol),
        "precision": precision_score(pred_vol, true_vol),
        "sensitivity": sensitivity_score(pred_vol, true_vol),
        "true_volume": true_volume,
        "pred_volume": pred_volume,
        "volume_rel_error": volume_relative_error(pred_volume, true_volume),
        "true_tumour_slices": int(true_per_slice.sum()),
        "pred_tumour_slices": int(pred_per_slice.sum()),
        "fp_slices": int((pred_per_slice & ~true_per_slice).sum()),
        "fn_slices": int((true_per_slice & ~pred_per_slice).sum()),
    }


def slice_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float | int]:
    """Per-slice Dice, IoU and pixel counts of one ``H x W`` slice."""
    pred, truth = _pair(pred, truth)
    return {
        "dice": dice_score(pred, truth),
        "iou": iou_score(pred, truth),
        "true_pixels": int(truth.sum()),
        "pred_pixels": int(pred.sum()),
    }


# --------------------------------------------------------------------------- aggregation


def bootstrap_mean_ci(
    values: Sequence[float], n_samples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (NaNs dropped); deterministic for a given seed."""
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return (math.nan, math.nan)
    if arr.size == 1 or n_samples <= 0:
        return (float(arr.mean()), float(arr.mean()))
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, arr.size, size=(n_samples, arr.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def describe(values: Sequence[float] | np.ndarray, name: str, n_bootstrap: int = 2000, seed: int = 0) -> dict[str, Any]:
    """``<name>_mean/median/std/min/max/ci95/n_undefined`` over the defined (non-NaN) values."""
    arr = np.asarray(values, dtype=float)
    defined = arr[~np.isnan(arr)]
    out: dict[str, Any] = {}
    if defined.size:
        out[f"{name}_mean"] = float(defined.mean())
        out[f"{name}_median"] = float(np.median(defined))
        out[f"{name}_std"] = float(defined.std(ddof=1)) if defined.size > 1 else 0.0
        out[f"{name}_min"] = float(defined.min())
        out[f"{name}_max"] = float(defined.max())
    else:
        for stat in ("mean", "median", "std", "min", "max"):
            out[f"{name}_{stat}"] = math.nan
    out[f"{name}_ci95"] = list(bootstrap_mean_ci(defined, n_bootstrap, seed))
    out[f"{name}_n_undefined"] = int(arr.size - defined.size)
    return out
