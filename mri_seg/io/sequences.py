"""MRI sequences by name: which input channel is which, and how inputs map to the model's order.

Names (canonical, lower case): ``pre`` (pre-contrast T1), ``flair`` (T2-FLAIR), ``post``
(post-contrast T1, gadolinium) and ``t2`` (accepted in inputs, never a model input: ignored
with a note). Aliases used by BraTS, nnU-Net and scanners are accepted wherever names are
read (``t1``/``t1w`` -> pre, ``t1ce``/``t1gd``/``t1c`` -> post, ``t2w`` -> t2).

The training data fixes the model's order. The Kaggle TIFFs store pre-contrast, FLAIR,
post-contrast as R, G, B (the dataset's README; checked on the lgg-dev slices: the third
stored sample shows enhancing vessels and the sagittal sinus, the first does not, the
second is bright in the tumour and dark in CSF). OpenCV, which reads every training slice,
returns B, G, R, so the model sees ``(post, flair, pre)``: :data:`TRAINING_SEQUENCES`.
Checkpoints record their order (key ``sequences``); one without it gets this default.

A sequence the model needs that an input lacks is replaced by FLAIR, as the dataset does
for its patients with a missing pre- or post-contrast sequence (and as training simulates
with ``augment.missing_sequence_p``); FLAIR itself is required.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np

from mri_seg.config.names import ALIASES, INPUT_NAMES, MODEL_NAMES, canonical, parse_names  # noqa: F401 (re-exported)
from mri_seg.io.scan import ChannelWarning, Scan, ScanError

FLAIR = "flair"
KAGGLE_OPENCV_ORDER = ("post", "flair", "pre")  # a Kaggle TIFF's R,G,B = pre,FLAIR,post, as OpenCV returns them
TRAINING_SEQUENCES = KAGGLE_OPENCV_ORDER  # what every model trained on the Kaggle TIFFs takes
FLAIR_CHANNEL = TRAINING_SEQUENCES.index(FLAIR)  # FLAIR's channel in a model input (the middle one either way)
IMAGE_CHANNEL_SOURCES = ("blue", "green", "red")  # a 3-channel image's channels in OpenCV's order
DESCRIPTION = {"pre": "pre-contrast", "flair": "FLAIR", "post": "post-contrast", "t2": "T2"}


def flair_in_every_channel(image: np.ndarray) -> np.ndarray:
    """A slice or volume (channels last, the model's order) with FLAIR copied into every channel: the
    input a FLAIR-only scan gives the model (what evaluation's ``flair_only`` and the FLAIR view feed it)."""
    if image.ndim < 3:
        return image
    return np.repeat(image[..., FLAIR_CHANNEL : FLAIR_CHANNEL + 1], image.shape[-1], axis=-1)


def flair_of(volume: np.ndarray) -> np.ndarray:
    """The FLAIR channel of a ``D x H x W x C`` volume (channels last, the model's order; a one-channel
    volume's only channel); a ``D x H x W`` volume is one sequence already and is returned as it is."""
    if volume.ndim < 4:
        return volume
    return volume[..., FLAIR_CHANNEL if volume.shape[-1] > FLAIR_CHANNEL else 0]


def is_flair_only(image: np.ndarray) -> bool:
    """Whether every channel of ``image`` (channels last) already equals its FLAIR channel."""
    if image.ndim < 3 or image.shape[-1] == 1:
        return True
    flair = image[..., FLAIR_CHANNEL : FLAIR_CHANNEL + 1]
    return bool(np.all(image == flair))


def model_sequences(values: Sequence[str] | None, key: str = "checkpoint sequences") -> tuple[str, ...]:
    """A model's input order: the recorded names, or :data:`TRAINING_SEQUENCES` when none are recorded."""
    if values is None:
        return TRAINING_SEQUENCES
    names = parse_names(values, key, MODEL_NAMES)
    if FLAIR not in names:
        raise ValueError(f"{key}: {list(values)} has no flair (every model input order includes FLAIR)")
    return names


def assemble(
    stack: np.ndarray, names: Sequence[str], sources: Sequence[str], model: Sequence[str], label: object
) -> tuple[np.ndarray, str]:
    """Inputs ``... x K`` named ``names`` -> ``... x C`` in the ``model`` order, and a description.

    ``sources[k]`` says where input ``k`` came from (``channel 0``, a file name): the
    description, one ``name=source`` per model input in model order (``; ``-joined,
    substituted ones ``name=flair (missing: substituted)``, then inputs left unused), goes
    to ``predictions.csv``. Missing sequences are replaced by FLAIR with a
    :class:`ChannelWarning`. No copy when the inputs already are in the model's order;
    a single FLAIR channel is broadcast (a read-only view, no 3x copy).
    """
    names, model = list(names), list(model)
    if stack.shape[-1] != len(names) or len(sources) != len(names):
        raise ScanError(f"{label}: {stack.shape[-1]} input channels for {len(names)} declared names {names}")
    if FLAIR not in names:
        present = ", ".join(f"{n} ({s})" for n, s in zip(names, sources))
        raise ScanError(f"{label}: no FLAIR among the inputs ({present}); FLAIR is required "
                        "(other missing sequences are replaced by it)")  # fmt: skip
    index = [names.index(m) if m in names else names.index(FLAIR) for m in model]
    missing = [m for m in model if m not in names]
    if len(names) == 1:
        warnings.warn(f"{label}: 1 channel replicated to {len(model)} (the model expects {len(model)} sequences)",
                      ChannelWarning, stacklevel=2)  # fmt: skip
        array = np.broadcast_to(stack, (*stack.shape[:-1], len(model)))
    else:
        if missing:
            what = " and ".join(DESCRIPTION[m] for m in missing)
            warnings.warn(f"{label}: no {what} input; FLAIR used in its place (as the training data does for "
                          "missing sequences)", ChannelWarning, stacklevel=2)  # fmt: skip
        array = stack if index == list(range(len(names))) else stack[..., index]
    parts = [f"{m}={sources[names.index(m)]}" if m in names else f"{m}=flair (missing: substituted)" for m in model]
    parts += [f"{n}={s} (not used)" for n, s in zip(names, sources) if n not in model]
    return array, "; ".join(parts)


def image_channels(array: np.ndarray, label: object) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Name an image file's channels by count (the Kaggle file convention), ``... x C`` last.

    3 channels: R, G, B hold pre-contrast, FLAIR, post-contrast, as in the Kaggle TIFFs (so
    OpenCV returns them as :data:`KAGGLE_OPENCV_ORDER`); 1 channel: FLAIR (a grayscale
    slice); RGBA with a constant alpha: the colour channels (alpha dropped with a warning);
    anything else is an error naming the file.
    """
    have = array.shape[-1]
    if have == 4:
        alpha = array[..., 3]
        if alpha.size and alpha.min() == alpha.max():
            warnings.warn(f"{label}: constant alpha channel dropped", ChannelWarning, stacklevel=2)
            array, have = array[..., :3], 3
        else:
            raise ScanError(f"{label}: 4 channels with a non-constant alpha channel; expected 3 channels or 1")
    if have == 3:
        return array, KAGGLE_OPENCV_ORDER, IMAGE_CHANNEL_SOURCES
    if have == 1:
        return array, (FLAIR,), ("gray",)
    raise ScanError(f"{label}: {have} channels; expected 3 (the model's input sequences) or 1")


def to_model(scan: Scan, model: Sequence[str]) -> Scan:
    """``scan`` with its channels in the ``model``'s sequence order (see :func:`assemble`)."""
    array, names, sources = scan.array, scan.channels, scan.channel_sources
    if names is None:
        array, names, sources = image_channels(array, scan.path)
    assert sources is not None, "readers that name the channels also give their sources"
    mapped, description = assemble(array, names, sources, model, scan.path)
    return dataclasses.replace(scan, array=mapped, sequences=description,
                               loaded_shape=scan.loaded_shape or tuple(scan.array.shape))  # fmt: skip
