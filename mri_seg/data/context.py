"""2.5D input: each slice with its ``k`` neighbours on either side, as extra channels.

``data.context_slices = k`` (0 = plain 2D). The model sees, for slice ``i`` of a volume,
slices ``i-k .. i+k`` of the *same* volume (patient) in slice order, concatenated along
the channel axis: channel block ``j`` (``0 <= j <= 2k``) holds slice ``i - k + j``, so
the centre slice is block ``k`` and a ``C``-sequence input becomes ``C * (2k + 1)``
channels (``model.in_channels`` counts them). Past the first or last slice the end
slice is replicated. A single 2D image is a volume of one slice: every block is itself.

:func:`stack_context` is the one definition: the training dataset, validation,
evaluation and inference all build their inputs with it, so slice ``i`` gets the same
input wherever it is predicted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def context_indices(depth: int, index: int, k: int) -> list[int]:
    """Slice indices ``index - k .. index + k``, clamped to ``[0, depth - 1]`` (ends replicated)."""
    if depth < 1:
        raise ValueError(f"a volume needs at least one slice, got depth {depth}")
    if not 0 <= index < depth:
        raise IndexError(f"slice {index} outside a volume of {depth} slices")
    if k < 0:
        raise ValueError(f"data.context_slices must be >= 0, got {k}")
    return [min(max(index + offset, 0), depth - 1) for offset in range(-k, k + 1)]


def stack_context(
    volume: np.ndarray | Sequence[np.ndarray], k: int, indices: Sequence[int] | None = None
) -> np.ndarray:
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
