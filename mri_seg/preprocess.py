"""One preprocessing path from a slice to the model's input: used by the training dataset and the predictor.

Steps, in the order both sides apply them (training augments the resized uint8 slices
between steps 2 and 3; inference first checks and adapts its input's channels):

1. **Size** (:func:`scaled_size`, :func:`resize_image`, :func:`resize_mask`): a model
   trained with ``data.scale`` s sees slices resized to ``round(h*s) x round(w*s)``
   (``INTER_AREA`` for images, in the input's dtype where OpenCV can; ``INTER_NEAREST``
   for masks); inference computes exactly the same size, or predictions shift by a pixel.
2. **2.5D context** (:func:`stack_context`), see below.
3. **Normalisation** (:func:`normalise_image`, :func:`volume_stats`), see below.

2.5D input: each slice with its ``k`` neighbours on either side, as extra channels.
``data.context_slices = k`` (0 = plain 2D). The model sees, for slice ``i`` of a volume,
slices ``i-k .. i+k`` of the *same* volume (patient) in slice order, concatenated along
the channel axis: channel block ``j`` (``0 <= j <= 2k``) holds slice ``i - k + j``, so
the centre slice is block ``k`` and a ``C``-sequence input becomes ``C * (2k + 1)``
channels (``model.in_channels`` counts them). Past the first or last slice the end
slice is replicated. A single 2D image is a volume of one slice: every block is itself.

:func:`stack_context` is the one definition: the training dataset, validation,
evaluation and inference all build their inputs with it, so slice ``i`` gets the same
input wherever it is predicted.

Intensity normalisation, defined once and stored in every checkpoint (``data.normalisation``).
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

``zscore_head``: per patient volume like ``zscore_volume``, but over the *head*
(:class:`Head`, :func:`head_threshold`, :func:`head_mask`), not the non-zero voxels, and 0
outside it. Why: "non-zero" is a storage convention, not anatomy. The Kaggle slices keep the
scanner's noise around the head (most of a volume's non-zero voxels can lie outside it), a
skull-stripped scan has no scalp, a z-scored export has a constant non-zero background:
each puts different voxels into the statistics, and the same tumour gets different inputs.
The head mask is derived from FLAIR alone, the same way for every source (one threshold per volume at
10% of its robust intensity range, then per slice: closing, the components of at least a tenth of the largest,
holes filled), and is invariant to a linear rescaling of the intensities.

Either way, fewer than 16 foreground values in a channel: all its values are used.

Background is 0 in the training data. Inference reads scans from other pipelines, whose
background may be another constant (a z-scored volume's minimum, a shifted export):
:func:`border_background` finds it on the slices' outer frame (``infer.background: border``,
opt-in), and the normalisation then treats that value as it treats 0 in training.

Spacing of the 2.5D neighbours: in training they are the adjacent slices (the Kaggle
files store no spacing; TCGA LGG slices are typically ~3 mm apart). Where a scan states
its slice spacing, inference can take them :func:`context_step` slices apart, so they sit
about ``infer.context_mm`` apart as in training (opt-in: 0 by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import cv2
import numpy as np

from mri_seg.config.names import NORMALISATION_METHODS
from mri_seg.io.sequences import FLAIR_CHANNEL

# ----------------------------------------------------------------------------- size

_CV2_RESIZE_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(h, w)`` after resizing by ``scale`` (rounded to the nearest pixel, at least 1)."""
    if scale <= 0:
        raise ValueError(f"data.scale must be > 0, got {scale}")
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """An ``H x W x C`` image resized by ``scale`` (``INTER_AREA``); identity at 1.0.

    The input's dtype is kept where OpenCV can resize it (uint8 for training slices), other
    dtypes are resized as float32.
    """
    if scale == 1.0:
        return image
    if image.dtype not in _CV2_RESIZE_DTYPES:
        image = image.astype(np.float32)
    h, w = scaled_size(image.shape[0], image.shape[1], scale)
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return out[:, :, None] if out.ndim == 2 else out


def resize_mask(mask: np.ndarray, scale: float) -> np.ndarray:
    """An ``H x W`` mask resized by ``scale`` (``INTER_NEAREST``: labels stay labels); identity at 1.0."""
    if scale == 1.0:
        return mask
    h, w = scaled_size(mask.shape[0], mask.shape[1], scale)
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)


def resize_pair(image: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A training slice and its mask resized together (:func:`resize_image`, :func:`resize_mask`)."""
    return resize_image(image, scale), resize_mask(mask, scale)


# ----------------------------------------------------------------------------- 2.5D context


class SliceSequence(Protocol):
    """What :func:`stack_context` reads of a volume: its length and slice ``j`` (an ndarray,
    a list of slices, or a lazy sequence that reads or prepares slices on access)."""

    def __len__(self) -> int: ...

    def __getitem__(self, j: int, /) -> np.ndarray: ...


def context_indices(depth: int, index: int, k: int, step: int = 1) -> list[int]:
    """Slice indices ``index - k*step, .., index, .., index + k*step`` (every ``step``-th slice),
    clamped to ``[0, depth - 1]`` (ends replicated)."""
    if depth < 1:
        raise ValueError(f"a volume needs at least one slice, got depth {depth}")
    if not 0 <= index < depth:
        raise IndexError(f"slice {index} outside a volume of {depth} slices")
    if k < 0:
        raise ValueError(f"data.context_slices must be >= 0, got {k}")
    if step < 1:
        raise ValueError(f"the context step must be >= 1 slice, got {step}")
    return [min(max(index + offset * step, 0), depth - 1) for offset in range(-k, k + 1)]


def context_step(slice_spacing_mm: float | None, context_mm: float) -> int:
    """How many slices apart the 2.5D neighbours are taken in a scan whose slices are
    ``slice_spacing_mm`` apart, so that they sit about ``context_mm`` apart as in training.

    Why: the model learnt what the neighbours ~3 mm away look like (``infer.context_mm``);
    in a 1 mm volume the adjacent slices are nearly copies of the centre one, so the
    neighbours are taken ``round(context_mm / spacing)`` slices apart instead (at least 1).
    Unknown spacing (TIFF/PNG slices, NIfTI without units) or ``context_mm`` 0: adjacent slices.
    """
    if context_mm < 0:
        raise ValueError(f"infer.context_mm must be >= 0, got {context_mm}")
    if not context_mm or slice_spacing_mm is None or not np.isfinite(slice_spacing_mm) or slice_spacing_mm <= 0:
        return 1
    return max(1, int(round(context_mm / slice_spacing_mm)))


def stack_context(volume: SliceSequence, k: int, indices: Sequence[int] | None = None) -> np.ndarray:
    """``D x H x W x C`` volume -> ``N x H x W x C*(2k+1)`` inputs of slices ``indices`` (default: all).

    ``volume`` may also be any sequence of ``H x W x C`` slices (indexing and ``len``
    only): only the slices the requested inputs need are read. With ``k = 0`` and one
    index the result is a view of that slice (no copy of a large image); treat it as read-only.
    """
    depth = len(volume)
    indices = range(depth) if indices is None else indices
    out = []
    for i in indices:
        blocks = [np.asarray(volume[j]) for j in context_indices(depth, int(i), k)]
        if any(b.ndim != 3 for b in blocks):
            raise ValueError(f"stack_context needs H x W x C slices, got shape {blocks[0].shape}")
        out.append(blocks[0] if k == 0 else np.concatenate(blocks, axis=-1))
    if not out:
        raise ValueError("stack_context: no slices requested")
    return out[0][None] if len(out) == 1 else np.stack(out)


def channels_per_slice(in_channels: int, k: int) -> int:
    """Input sequences per slice for a model of ``in_channels`` stacked channels; must divide evenly."""
    width = 2 * k + 1
    if k < 0:
        raise ValueError(f"data.context_slices must be >= 0, got {k}")
    if in_channels % width:
        raise ValueError(
            f"model.in_channels={in_channels} is not a multiple of 2 * data.context_slices + 1 = {width} "
            f"(the model sees {width} slices of C sequences: in_channels = C * {width})"
        )
    return in_channels // width


def check_input_channels(in_channels: int, k: int, sequences: int, where: str) -> None:
    """``model.in_channels`` must be ``sequences * (2k + 1)``; the error says what to set."""
    width = 2 * k + 1
    if in_channels != sequences * width:
        raise ValueError(
            f"model.in_channels={in_channels} does not match the input of {where}: {sequences} channels per slice "
            f"x {width} slices (2 * data.context_slices + 1, context_slices={k}) = {sequences * width}; "
            f"set model.in_channels={sequences * width}"
        )


# ----------------------------------------------------------------------------- normalisation

NORMALISATIONS = NORMALISATION_METHODS  # declared once, with the config key data.normalisation
VOLUME_NORMALISATIONS = ("zscore_volume", "zscore_head")  # methods whose statistics come from the whole volume
HEAD_NORMALISATIONS = ("zscore_head",)  # methods whose foreground is the derived head mask (:class:`Head`)
_EPS = 1e-6
_MIN_FOREGROUND = 16  # fewer non-zero pixels than this: use all pixels for the statistics


def check_normalisation(method: str) -> None:
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation '{method}' (data.normalisation; known: {', '.join(NORMALISATIONS)})")


def is_background(values: np.ndarray, background: float = 0.0) -> np.ndarray:
    """Where ``values`` equal the background value: exactly 0 (the training data's convention),
    or within a relative 1e-5 of a non-zero ``background`` (a constant survives resizing only
    up to float rounding)."""
    if background == 0:
        return values == 0
    return np.abs(values - background) <= 1e-5 * abs(background)


def border_background(slices: Iterable[np.ndarray], share: float) -> np.ndarray:
    """Per channel, the background value of a volume of ``H x W x C`` slices: the value that at
    least ``share`` of the pixels on the slices' outer frame have exactly, else 0.

    Why: the training slices' background is 0 and the normalisation treats 0 as "outside the
    head" (it is left out of the statistics and stays 0). Scans from other pipelines store the
    background as another constant (z-scored volumes: a negative value; shifted or rescaled
    exports); read as head, it would swamp the statistics. A constant frame around the image
    is the background whatever its value. A frame that is not that constant (noise, a head
    touching the border) keeps the 0 convention, so training-like scans are unchanged.
    """
    frames = []
    for image in slices:
        img = np.asarray(image)
        img = img[:, :, None] if img.ndim == 2 else img
        frames += [img[0], img[-1], img[1:-1, 0], img[1:-1, -1]]
    if not frames:
        raise ValueError("border_background needs at least one slice")
    frame = np.concatenate(frames, axis=0)  # N x C
    out = np.zeros(frame.shape[1], np.float64)
    for c in range(frame.shape[1]):
        values, counts = np.unique(frame[:, c], return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] >= share * frame.shape[0] and np.isfinite(values[top]):
            out[c] = float(values[top])
    return out


# ----------------------------------------------------------------------------- head mask

_HEAD_SAMPLES = 4096  # FLAIR values per slice the volume's threshold is computed from (a regular subsample)
_HEAD_FRACTION = 0.1  # the threshold's place in the volume's robust FLAIR range (:func:`robust_threshold`)
_HEAD_CLOSE = 5  # closing kernel (pixels at the model's scale)
_HEAD_KEEP = 0.1  # components of at least this fraction of the largest one's area stay in the head


def robust_threshold(values: np.ndarray, fraction: float = _HEAD_FRACTION) -> float:
    """``p2 + fraction * (p98 - p2)`` of ``values`` (their 2nd and 98th percentiles): the head
    threshold of brain-extraction tools (FSL BET's default: 10% of the robust range). A linear
    rescaling of ``values`` rescales it alike; a few outliers do not move it. Otsu's threshold,
    tried first, splits dark tissue (the posterior fossa on FLAIR) off the head."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    low, high = np.percentile(v, [2.0, 98.0])
    return float(low + fraction * (high - low))


def flair_index(channels_per_slice: int) -> int:
    """FLAIR's channel within one slice's sequences (a 1-sequence model: its only channel)."""
    return FLAIR_CHANNEL if channels_per_slice > FLAIR_CHANNEL else 0


def head_threshold(slices: Iterable[np.ndarray], channels_per_slice: int) -> float:
    """The volume's head threshold: :func:`robust_threshold` of its FLAIR values (``H x W x C``
    slices of ``channels_per_slice`` sequences, a regular subsample of each slice)."""
    flair = flair_index(channels_per_slice)
    samples = []
    for image in slices:
        img = np.asarray(image)
        plane = img if img.ndim == 2 else img[:, :, flair]
        stride = max(1, int(np.ceil(np.sqrt(plane.size / _HEAD_SAMPLES))))
        samples.append(np.asarray(plane[::stride, ::stride], dtype=np.float64).ravel())
    if not samples:
        raise ValueError("head_threshold needs at least one slice")
    return robust_threshold(np.concatenate(samples))


def head_mask(flair: np.ndarray, threshold: float) -> np.ndarray:
    """``H x W`` bool: the head in one FLAIR slice: above the volume's ``threshold``, closed,
    the components of at least :data:`_HEAD_KEEP` of the largest one's area, holes filled."""
    above = (np.asarray(flair, dtype=np.float32) > np.float32(threshold)).astype(np.uint8)
    if not above.any():
        return np.zeros(above.shape, bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_HEAD_CLOSE, _HEAD_CLOSE))
    above = cv2.morphologyEx(above, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.size == 0:
        return np.zeros(above.shape, bool)
    keep = np.isin(labels, 1 + np.flatnonzero(areas >= _HEAD_KEEP * areas.max()))
    return fill_holes(keep)  # dark CSF and cysts inside the head


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``H x W`` bool: ``mask`` with every region it encloses filled (its outer contours, drawn filled)."""
    region = np.asarray(mask).astype(np.uint8)
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(region)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


class Head:
    """A volume's head: its FLAIR threshold (:func:`head_threshold`) and the slices' layout;
    :meth:`foreground` gives each channel of an ``H x W x C`` image (a slice, or a 2.5D stack
    of slices) the head mask of its own slice's FLAIR."""

    def __init__(self, threshold: float, channels_per_slice: int):
        self.threshold = float(threshold)
        self.channels_per_slice = int(channels_per_slice)

    @classmethod
    def of_volume(cls, slices: Iterable[np.ndarray], channels_per_slice: int) -> "Head":
        return cls(head_threshold(slices, channels_per_slice), channels_per_slice)

    def masks(self, image: np.ndarray) -> np.ndarray:
        """``H x W x B`` bool: the head mask of each of the image's ``B`` slices (2.5D blocks)."""
        img = np.asarray(image)
        img = img[:, :, None] if img.ndim == 2 else img
        cps = self.channels_per_slice
        if img.shape[2] % cps:
            raise ValueError(f"{img.shape[2]} channels are not whole slices of {cps} sequences")
        flair = flair_index(cps)
        return np.stack([head_mask(img[:, :, s + flair], self.threshold) for s in range(0, img.shape[2], cps)], axis=2)

    def slice_masks(self, image: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """``H x W x B`` bool: the head mask of each of the image's slices; ``masks``: those masks where
        already known (training: derived once per slice, moved with the augmentation)."""
        return self.masks(image) if masks is None else np.asarray(masks, dtype=bool).reshape(*np.shape(image)[:2], -1)

    def foreground(self, image: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """``H x W x C`` bool: each channel inside its slice's head (``masks`` as :meth:`slice_masks`)."""
        return np.repeat(self.slice_masks(image, masks), self.channels_per_slice, axis=2)


def _backgrounds(background: np.ndarray | None, channels: int) -> np.ndarray:
    if background is None:
        return np.zeros(channels)
    background = np.asarray(background, dtype=np.float64).reshape(-1)
    if background.shape != (channels,):
        raise ValueError(f"one background value per channel needed ({channels}), got {background.shape[0]}")
    return background


def volume_stats(
    slices: Iterable[np.ndarray], background: np.ndarray | None = None, head: Head | None = None
) -> np.ndarray:
    """``2 x C`` float64 (mean, std) per channel over the foreground voxels of ``H x W x C`` slices:
    those not equal to the channel's ``background`` value (default 0, see :func:`border_background`),
    or, given a ``head``, those inside its mask (``zscore_head``; ``background`` is then not used)."""
    sums = None
    for image in slices:
        img = np.asarray(image, dtype=np.float64)
        img = img[:, :, None] if img.ndim == 2 else img
        flat = img.reshape(-1, img.shape[-1])
        if head is not None:
            fg = head.foreground(img).reshape(-1, img.shape[-1])
        elif background is None or not np.any(background):
            fg = flat != 0
        else:
            bg = _backgrounds(background, flat.shape[1])
            fg = ~np.stack([is_background(flat[:, c], bg[c]) for c in range(flat.shape[1])], axis=1)
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


def normalise_image(
    image: np.ndarray, method: str = "zscore_nonzero", stats: np.ndarray | None = None,
    background: np.ndarray | None = None, head: Head | None = None, head_masks: np.ndarray | None = None,
    channels_first: bool = False,
) -> np.ndarray:  # fmt: skip
    """Normalise an ``H x W x C`` image to float32 with ``method``; returns a new array
    (``C x H x W``, C-contiguous, with ``channels_first``: the tensor layout, without another copy).

    ``zscore_volume`` and ``zscore_head`` need ``stats``: the ``2 x C`` (mean, std) of the
    image's volume (:func:`volume_stats`); ``zscore_head`` also the volume's ``head`` (and, where
    known, the slices' ``head_masks``, ``H x W x B``: else derived from the image).
    ``background``: the value per channel that is background (default 0;
    :func:`border_background`); background (outside the head for ``zscore_head``) becomes 0.
    """
    check_normalisation(method)
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if method in VOLUME_NORMALISATIONS:
        if stats is None or np.shape(stats) != (2, arr.shape[2]):
            raise ValueError(
                f"normalisation '{method}' needs the volume's (mean, std) per channel, shape (2, {arr.shape[2]}), "
                f"got {None if stats is None else np.shape(stats)}"
            )
    if method in HEAD_NORMALISATIONS:  # all channels at once (per training item)
        if head is None:
            raise ValueError(f"normalisation '{method}' needs the volume's head (preprocess.Head)")
        assert stats is not None  # checked above (a volume method)
        means = np.asarray(stats[0], np.float32)[:, None, None]
        stds = np.maximum(np.asarray(stats[1], np.float64), _EPS).astype(np.float32)[:, None, None]
        blocks = head.slice_masks(arr, head_masks)  # H x W x B: one mask per stacked slice
        # channel-first and in place: the training loader's hot path (5x faster than in H x W x C), with the
        # same float32 operations as (x - mean) / std inside the head; outside it x * 0 + 0 is exactly +0.0
        out = arr.transpose(2, 0, 1).astype(np.float32, order="C")
        out -= means
        out /= stds
        c, h, w = out.shape
        per_slice = out.reshape(blocks.shape[2], c // blocks.shape[2], h, w)
        per_slice *= blocks.transpose(2, 0, 1)[:, None].astype(np.float32)
        per_slice += np.float32(0.0)
        return out if channels_first else out.transpose(1, 2, 0)
    img = arr.astype(np.float32, copy=False)
    out = np.zeros_like(img)
    bg = _backgrounds(background, img.shape[2])
    for c in range(img.shape[2]):
        channel = img[:, :, c]
        fg = ~is_background(channel, float(bg[c]))
        if stats is not None and method in VOLUME_NORMALISATIONS:
            mean, std = float(stats[0, c]), float(stats[1, c])
        else:
            values = channel[fg] if fg.sum() >= _MIN_FOREGROUND else channel.ravel()
            mean = float(values.mean()) if values.size else 0.0
            std = float(values.std()) if values.size else 1.0
        out[:, :, c] = np.where(fg, (channel - mean) / max(std, _EPS), 0.0)
    return np.ascontiguousarray(out.transpose(2, 0, 1)) if channels_first else out


def normalisation_spec(method: str) -> dict:
    """What a checkpoint stores so inference can repeat the exact normalisation."""
    check_normalisation(method)
    return {"method": method}
