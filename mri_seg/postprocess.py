"""Probabilities -> binary mask: threshold, then drop connected components (per slice, then in 3D).

Steps, each off by default (``eval.postprocess`` / ``infer.postprocess``):

1. ``prob >= threshold``;
2. ``min_component_pixels``: drop 8-connected components smaller than this *per 2D slice*
   (``cv2.connectedComponentsWithStats``). Per slice because slices can be far apart
   (Kaggle volumes have 2.5-5 mm spacing, arbitrary NIfTI may be anisotropic), so it
   means the same thing for a PNG slice and for a slice of a volume;
3. ``min_component_voxels``: drop components of the stacked ``D x H x W`` volume smaller
   than this many voxels (26-connectivity: slices touching across the slice axis, also
   diagonally, are one component). A tumour spans several slices; a false positive is
   usually a speck on one or two;
4. ``largest_only``: keep only the largest 3D component, dropping every predicted
   component not connected to it (LGGs are almost always one lesion). A slice predicted
   empty inside a tumour splits it into two components, of which only the larger is kept.
   ``component_rule`` says what "largest" means: ``size`` (most voxels) or ``mass`` (the
   most probability: the sum of the probabilities inside it, so a confident small tumour
   beats a larger but doubtful false blob) or ``bright`` (the most voxels bright on FLAIR: at or
   above the scan's ``bright_quantile`` of its head, so a confident false blob over dark fluid, the
   ventricles, does not outgrow a FLAIR-bright tumour; the LGG masks are the FLAIR abnormality);
   ``keep_ratio`` < 1 also keeps every other component that scores at least that fraction of the
   kept one.
5. ``grow_threshold`` (0: off): hysteresis. The components kept by the steps above grow into
   every 26-connected voxel whose probability is at least this (lower) threshold: the high
   threshold decides *where* a tumour is, the low one *how far* it extends. Doubtful voxels
   far from a kept component are never added, so the low threshold cannot admit a false blob
   elsewhere; a tumour found in part (the measured failure of large heterogeneous tumours:
   high precision, low sensitivity) is completed where the model gave its rest a lower score.
6. ``flair_view_threshold`` (0: off): a second prediction of the same scan with FLAIR copied into
   every channel (the *FLAIR view*, computed by the caller: evaluation and inference) adds each of
   its 26-connected components at or above this threshold that overlaps the kept tumour and is at
   least ``flair_view_min_ratio`` times its size. The measured failure it answers: a lesion FLAIR
   shows whose T1 look (a cyst, enhancing parts) the 3-sequence models reject, so they find a part
   of it (docs/accuracy.md, tenth session); a FLAIR view of about the kept tumour's size adds nothing,
   and a FLAIR-only scan's view is its prediction;
7. ``close_radius`` (0: off): a morphological closing of each slice's mask (a dilation, then an
   erosion, by a disc whose radius is this fraction of the slice's width; :func:`close_slices`): gaps
   and bays narrower than the disc between parts of the kept tumour are filled, nothing apart from it
   is added. Whole-tumour labels are compact; a large cystic tumour found in fragments (its dark parts
   scored as background) is not (docs/accuracy.md, twentieth session);
8. ``fill_holes``: every region a slice's mask encloses becomes tumour (2D, slice by slice).
   Whole-tumour labels have no holes (on lgg-dev 148 of 887,442 tumour pixels lie in one), while a
   cystic tumour whose dark core the model scores as background comes out as a ring.

A 2D image is a one-slice volume: steps 3 and 4 then act on its 2D (8-connected) components.
Evaluation and batch inference both call :func:`apply_postprocess` on whole volumes. A FLAIR-only scan
(FLAIR in every channel) is thresholded with ``flair_only_threshold`` / ``flair_only_keep_ratio`` where
they are set (:func:`for_flair_only`): its prediction is less confident than a 3-sequence scan's, and the
cv stage chooses its own pair on the out-of-fold FLAIR view.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, TypeVar

import cv2
import numpy as np
from scipy import ndimage

from mri_seg.config.names import COMPONENT_RULES

_CONNECTIVITY_3D = ndimage.generate_binary_structure(3, 3)  # 26-neighbourhood
Settings = TypeVar("Settings")  # a dataclass with PostprocessConfig's fields (PostprocessConfig, EvalOptions)


class PostprocessSettings(Protocol):
    """What :func:`apply_postprocess` reads (:class:`mri_seg.config.PostprocessConfig` has it).

    Read-only members, so a frozen dataclass (``EvalOptions``) satisfies it too.
    """

    @property
    def threshold(self) -> float: ...

    @property
    def min_component_pixels(self) -> int: ...

    @property
    def min_component_voxels(self) -> int: ...

    @property
    def largest_only(self) -> bool: ...

    @property
    def component_rule(self) -> str: ...

    @property
    def keep_ratio(self) -> float: ...

    @property
    def bright_quantile(self) -> float: ...

    @property
    def grow_threshold(self) -> float: ...

    @property
    def close_radius(self) -> float: ...

    @property
    def fill_holes(self) -> bool: ...

    @property
    def flair_view_threshold(self) -> float: ...

    @property
    def flair_view_min_ratio(self) -> float: ...


def remove_small_components(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """Drop 8-connected components smaller than ``min_pixels`` from an ``H x W`` bool mask."""
    if min_pixels <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_pixels
    return keep[labels]


def to_native_size(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """A model-resolution ``h x w`` probability map resized (bilinear) to the slice's ``height x width``,
    clipped to [0, 1]; a new float32 array. Inference and training validation both use it, so the
    validation Dice in train_log.csv is the Dice evaluate reports for the same checkpoint."""
    prob = np.asarray(prob, dtype=np.float32)
    if prob.shape != (height, width):
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        prob = prob.copy()  # never hand out a view of the caller's buffer
    return np.clip(prob, 0.0, 1.0, out=prob)


def bright_voxels(flair: np.ndarray, quantile: float) -> np.ndarray:
    """Bool, the shape of ``flair``: voxels at or above the ``quantile`` of the head's FLAIR, the head being
    every voxel brighter than the scan's darkest value (its background: 0 in Kaggle slices, a constant
    in z-scored or skull-stripped scans). A quantile, so scaling and z-scoring do not change it."""
    flair = np.asarray(flair)
    head = flair > flair.min()
    if not head.any():
        return np.zeros(flair.shape, dtype=bool)
    return head & (flair >= np.quantile(flair[head], quantile))


def component_scores(
    labels: np.ndarray, n: int, rule: str, prob: np.ndarray | None, bright: np.ndarray | None = None
) -> np.ndarray:
    """Score of each label ``0..n`` (0: background) under ``rule``: voxels (``size``), summed probability
    (``mass``) or voxels of ``bright`` (:func:`bright_voxels`, for ``bright``)."""
    if rule not in COMPONENT_RULES:
        raise ValueError(f"component_rule must be one of {', '.join(COMPONENT_RULES)}, got '{rule}'")
    if rule == "mass":
        if prob is None or prob.shape != labels.shape:
            raise ValueError("component_rule 'mass' needs the probabilities of the volume")
        return np.bincount(labels.ravel(), weights=prob.ravel().astype(np.float64), minlength=n + 1)
    if rule == "bright":
        if bright is None or bright.shape != labels.shape:
            got = "none" if bright is None else str(bright.shape)
            raise ValueError(f"component_rule 'bright' needs the scan's FLAIR, a value per voxel {labels.shape} (got {got})")
        return np.bincount(labels.ravel(), weights=bright.ravel().astype(np.float64), minlength=n + 1)
    return np.bincount(labels.ravel(), minlength=n + 1).astype(np.float64)


def filter_components_3d(
    volume: np.ndarray,
    min_voxels: int = 0,
    largest_only: bool = False,
    rule: str = "size",
    prob: np.ndarray | None = None,
    keep_ratio: float = 1.0,
    flair: np.ndarray | None = None,
    bright_quantile: float = 0.75,
) -> np.ndarray:
    """Drop 26-connected components of a ``D x H x W`` bool volume smaller than ``min_voxels``,
    then (``largest_only``) all but the best under ``rule`` (``prob``: the probabilities, for
    ``mass``; ``flair``: the scan's FLAIR, for ``bright``, whose :func:`bright_voxels` are computed
    only where there are components to compare) and those scoring at least ``keep_ratio`` x the
    best; ties keep the first in label order."""
    if (min_voxels <= 1 and not largest_only) or not volume.any():
        return volume
    labels, n = ndimage.label(volume, structure=_CONNECTIVITY_3D)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = sizes[1:] >= max(min_voxels, 1)
    if largest_only and keep.any():
        bright = None
        if rule == "bright" and flair is not None:  # one candidate: nothing to compare, no quantile needed
            bright = bright_voxels(flair, bright_quantile) if np.count_nonzero(keep) > 1 else np.zeros(labels.shape, bool)
        scores = np.where(keep, component_scores(labels, n, rule, prob, bright), -1.0)
        best = int(np.argmax(scores))
        keep = scores >= keep_ratio * scores[best] if keep_ratio < 1.0 else np.zeros(n + 1, dtype=bool)
        keep[0] = False
        keep[best] = True
    return keep[labels]


def _touching(labels: np.ndarray, n: int, kept: np.ndarray) -> np.ndarray:
    """Per label ``0..n``, whether its component shares a voxel with ``kept`` (label 0, background: never)."""
    touched = np.zeros(n + 1, dtype=bool)
    touched[np.unique(labels[kept])] = True
    touched[0] = False
    return touched


def close_slices(planes: np.ndarray, radius_fraction: float) -> np.ndarray:
    """Each ``H x W`` slice of ``planes`` (bool) closed by a disc of radius ``radius_fraction`` x W pixels
    (rounded; under 1 pixel: unchanged). The slice is padded first, so a mask touching the border is
    closed as anywhere else; a closing never removes a pixel."""
    if radius_fraction < 0.0:
        raise ValueError(f"close_radius must be >= 0, got {radius_fraction}")
    radius = int(round(radius_fraction * planes.shape[-1]))
    if radius < 1:
        return planes
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    out = planes.copy()
    for i, plane in enumerate(planes):
        if not plane.any():
            continue
        padded = cv2.copyMakeBorder(plane.astype(np.uint8), radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
        closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, disc)[radius:-radius, radius:-radius]
        out[i] = plane | closed.astype(bool)
    return out


def grow_into(kept: np.ndarray, prob: np.ndarray, grow_threshold: float) -> np.ndarray:
    """``kept`` (bool, the shape of ``prob``) plus every voxel with ``prob >= grow_threshold`` that is
    26-connected to it through such voxels (hysteresis thresholding); a new array."""
    if not kept.any():
        return kept.copy()
    labels, n = ndimage.label((prob >= grow_threshold) | kept, structure=_CONNECTIVITY_3D)
    return _touching(labels, n, kept)[labels]


def add_view_components(
    kept: np.ndarray, view_prob: np.ndarray, view_threshold: float, min_ratio: float
) -> np.ndarray:
    """``kept`` (bool ``D x H x W``) plus every 26-connected component of ``view_prob >= view_threshold``
    that overlaps it and has at least ``min_ratio`` x its voxels; a new array."""
    if view_prob.shape != kept.shape:
        raise ValueError(f"the FLAIR view's probabilities {view_prob.shape} do not match the volume {kept.shape}")
    if not kept.any():
        return kept.copy()
    labels, n = ndimage.label(view_prob >= view_threshold, structure=_CONNECTIVITY_3D)
    large = np.bincount(labels.ravel(), minlength=n + 1) >= min_ratio * int(kept.sum())
    return kept | (_touching(labels, n, kept) & large)[labels]


def postprocess(
    prob: np.ndarray,
    threshold: float = 0.5,
    min_component_pixels: int = 0,
    min_component_voxels: int = 0,
    largest_only: bool = False,
    component_rule: str = "size",
    keep_ratio: float = 1.0,
    grow_threshold: float = 0.0,
    fill_holes: bool = False,
    view_prob: np.ndarray | None = None,
    view_threshold: float = 0.0,
    view_min_ratio: float = 1.5,
    flair: np.ndarray | None = None,
    bright_quantile: float = 0.75,
    close_radius: float = 0.0,
) -> np.ndarray:
    """``H x W`` or ``D x H x W`` probabilities -> bool mask of the same shape (steps in the module docstring).

    ``view_prob``: the FLAIR view's probabilities (same shape), used where ``view_threshold`` > 0;
    ``flair``: the scan's FLAIR (same shape), needed by ``component_rule`` ``bright``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if min_component_pixels < 0:
        raise ValueError(f"min_component_pixels must be >= 0, got {min_component_pixels}")
    if min_component_voxels < 0:
        raise ValueError(f"min_component_voxels must be >= 0, got {min_component_voxels}")
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    if not 0.0 <= grow_threshold <= 1.0:
        raise ValueError(f"grow_threshold must be in [0, 1], got {grow_threshold}")
    if not 0.0 <= view_threshold <= 1.0:
        raise ValueError(f"flair_view_threshold must be in [0, 1], got {view_threshold}")
    if view_min_ratio <= 0.0:
        raise ValueError(f"flair_view_min_ratio must be > 0, got {view_min_ratio}")
    if not 0.0 < bright_quantile < 1.0:
        raise ValueError(f"bright_quantile must be in (0, 1), got {bright_quantile}")
    prob = np.asarray(prob)
    if prob.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or D x H x W array, got shape {prob.shape}")
    planes = (prob >= threshold) if prob.ndim == 3 else (prob >= threshold)[None]
    if min_component_pixels > 1:
        planes = np.stack([remove_small_components(p, min_component_pixels) for p in planes])
    volume = prob if prob.ndim == 3 else prob[None]
    flair_volume = None
    if largest_only and component_rule == "bright" and flair is not None:
        if np.shape(flair) != prob.shape:
            raise ValueError(f"the FLAIR {np.shape(flair)} does not match the probabilities {prob.shape}")
        flair_volume = np.asarray(flair).reshape(volume.shape)
    planes = filter_components_3d(
        planes, min_component_voxels, largest_only, component_rule, volume, keep_ratio, flair_volume, bright_quantile
    )
    if 0.0 < grow_threshold < threshold:
        planes = grow_into(planes, volume, grow_threshold)
    if view_threshold > 0.0 and view_prob is not None:
        view = np.asarray(view_prob)
        planes = add_view_components(planes, view if view.ndim == 3 else view[None], view_threshold, view_min_ratio)
    if close_radius > 0.0:
        planes = close_slices(planes, close_radius)
    if fill_holes:
        planes = np.stack([ndimage.binary_fill_holes(p) if p.any() else p for p in planes])
    return planes if prob.ndim == 3 else planes[0]


def apply_postprocess(
    prob: np.ndarray,
    settings: PostprocessSettings,
    view_prob: np.ndarray | None = None,
    flair: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`postprocess` with every setting of a ``PostprocessConfig`` (or ``EvalOptions``);
    ``view_prob``: the FLAIR view's probabilities, where ``settings.flair_view_threshold`` > 0;
    ``flair``: the scan's FLAIR, where ``settings.component_rule`` is ``bright``."""
    return postprocess(
        prob,
        settings.threshold,
        settings.min_component_pixels,
        settings.min_component_voxels,
        settings.largest_only,
        settings.component_rule,
        settings.keep_ratio,
        settings.grow_threshold,
        settings.fill_holes,
        view_prob,
        settings.flair_view_threshold,
        settings.flair_view_min_ratio,
        flair,
        settings.bright_quantile,
        settings.close_radius,
    )


def for_flair_only(settings: Settings) -> Settings:
    """``settings`` for a FLAIR-only scan: ``flair_only_threshold`` and ``flair_only_keep_ratio`` (where
    set, > 0) in place of ``threshold`` and ``keep_ratio``; the rest unchanged."""
    changes = {}
    if getattr(settings, "flair_only_threshold", 0.0) > 0.0:
        changes["threshold"] = float(settings.flair_only_threshold)  # type: ignore[attr-defined]
    if getattr(settings, "flair_only_keep_ratio", 0.0) > 0.0:
        changes["keep_ratio"] = float(settings.flair_only_keep_ratio)  # type: ignore[attr-defined]
    return replace(settings, **changes) if changes else settings  # type: ignore[type-var]
