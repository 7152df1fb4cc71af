"""The in-memory form of one input scan, whatever file type it came from.

Every reader returns a :class:`Scan`: the pixel array plus what a writer needs to put
the mask back in the input's format and geometry. Arrays always carry a channel
axis: ``H x W x C`` for a 2D image, ``D x H x W x C`` for a volume (slices along
axis 0, in the order they are segmented). Volumes are in the training layout (axial
slices, rows anterior->posterior, columns patient right->left, see
:mod:`mri_seg.io.orientation`) and channels are in the model's sequence order (see
:mod:`mri_seg.io.sequences`), whatever the input's own layout and channel order.
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ScanError(ValueError):
    """A scan cannot be read or used (corrupt file, unsupported shape or channels)."""


class ScanWarning(UserWarning):
    """Something about a scan the user should know; it goes to stderr and ``predictions.csv``."""


class ChannelWarning(ScanWarning):
    """A scan's channels were adapted to the model (1 channel replicated, opaque alpha dropped)."""


class OrientationWarning(ScanWarning):
    """A volume could not be oriented from its affine and was sliced in index space."""
class NonFiniteWarning(ScanWarning):
    """NaN/inf intensities were replaced by the background value 0."""


class PageWarning(ScanWarning):
    """A multi-page TIFF: only one page is segmented."""


@dataclass
class Scan:
    """One input scan.

    ``format``: tiff | png | jpeg | nifti | kaggle (a patient folder of Kaggle TIFF slices)
    | brats | nnunet (a case of one NIfTI file per sequence).
    ``array``: the model's input, channels in the model's sequence order (a 1-channel
    input is a read-only broadcast view, not a copy).
    ``geometry``: format-specific data the writers need, e.g. for NIfTI the image's
    ``affine``, ``header``, ``layout`` and ``voxel_mm``; for Kaggle the ``slice_paths``.
    ``sequences``: where each model input came from (``predictions.csv`` column).
    ``loaded_shape``: the input as read, before channels were mapped (``shape`` column).
    ``channels`` / ``channel_sources``: as read, the name of each channel of ``array`` and
    where it came from; None for image files, whose channels are named by count (see
    :func:`mri_seg.io.sequences.to_model`, which maps any scan to the model's order).
    """

    path: Path
    format: str
    array: np.ndarray
    geometry: dict[str, Any] = field(default_factory=dict)
    sequences: str = ""
    loaded_shape: tuple[int, ...] | None = None
    channels: tuple[str, ...] | None = None
    channel_sources: tuple[str, ...] | None = None

    @property
    def is_volume(self) -> bool:
        return self.array.ndim == 4

    @property
    def slices(self) -> np.ndarray:
        """The scan as ``D x H x W x C`` (a 2D image is a volume of one slice)."""
        return self.array if self.is_volume else self.array[None]

    @property
    def voxel_mm3(self) -> float | None:
        """Volume of one voxel in mm^3 when the file states it, else None."""
        voxel = self.geometry.get("voxel_mm")
        return float(np.prod(voxel)) if voxel is not None else None

    @property
    def slice_spacing_mm(self) -> float | None:
        """Distance between the slices in mm when the file states it (NIfTI, DICOM), else None."""
        voxel, layout = self.geometry.get("voxel_mm"), self.geometry.get("layout")
        axis = getattr(layout, "slice_axis", None)
        if voxel is None or axis is None or not self.is_volume:
            return None
        return float(voxel[axis])

    def shape_text(self) -> str:
        """The loaded shape as ``D x H x W x C`` / ``H x W x C`` text for tables (input channels)."""
        return "x".join(str(s) for s in (self.loaded_shape or self.array.shape))


def to_model_channels(array: np.ndarray, channels: int, name: str | Path) -> np.ndarray:
    """Adapt the channel axis (last) of ``array`` to the model's ``channels``.

    Why these rules: the model was trained on 3 MRI sequences, so 3 channels pass
    unchanged; a single channel (grayscale PNG, 3D NIfTI) is replicated with a
    warning because the model still runs but sees no sequence contrast; an RGBA image
    whose alpha is fully opaque is a 3-channel image with a padding channel, so alpha
    is dropped with a warning; everything else is ambiguous and an error.
    """
    have = array.shape[-1]
    if have == channels:
        return array
    if have == 1:
        warnings.warn(f"{name}: 1 channel replicated to {channels} (the model expects {channels} sequences)",
                      ChannelWarning, stacklevel=2)
        return np.repeat(array, channels, axis=-1)
    if have == channels + 1 == 4:
        alpha = array[..., 3]
        if alpha.size and alpha.min() == alpha.max():
            warnings.warn(f"{name}: constant alpha channel dropped", ChannelWarning, stacklevel=2)
            return array[..., :3]
        raise ScanError(f"{name}: 4 channels with a non-constant alpha channel; expected {channels} channels or 1")
    raise ScanError(f"{name}: {have} channels; expected {channels} (the model's input sequences) or 1")


BACKGROUND = 0  # the value NaN/inf intensities become: background, which the normalisation leaves at 0


def replace_nonfinite(array: np.ndarray, name: str | Path) -> np.ndarray:
    """``array`` with NaN/inf replaced by :data:`BACKGROUND` (a new array; the input is untouched).

    Why replace rather than refuse: a few NaN voxels (a failed reconstruction, a
    division in a preprocessing tool) would otherwise make the per-image normalisation
    NaN and the whole slice's mask silently empty; as background they only affect
    themselves. The :class:`NonFiniteWarning` (recorded in ``predictions.csv``) says how
    many voxels in how many slices, so a badly damaged scan is visible.
    """
    if array.dtype.kind != "f":
        return array
    bad = ~np.isfinite(array)
    if not bad.any():
        return array
    voxels = bad.any(axis=-1) if array.ndim >= 3 else bad  # a voxel counts once, whatever its channels
    where = ""
    if array.ndim == 4:
        per_slice = voxels.reshape(voxels.shape[0], -1).any(axis=1)
        where = f" in {int(per_slice.sum())} of {len(per_slice)} slices"
    warnings.warn(f"{name}: {int(np.count_nonzero(voxels))} voxel(s) with NaN/inf intensities{where} replaced by "
                  f"{BACKGROUND} (background)", NonFiniteWarning, stacklevel=2)  # fmt: skip
    return np.where(bad, np.asarray(BACKGROUND, dtype=array.dtype), array)


_SPECIAL = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))  # fmt: skip


def unusable_reason(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a scan file (broken link, link loop, FIFO...), or None.

    Readers call this before opening: reading a FIFO would block forever, and a link
    loop or dangling link deserves its own message rather than a decoder's.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)" if os.path.islink(path) else "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself)"
        return f"cannot be accessed ({exc.strerror or exc})"
    for test, kind in _SPECIAL:
        if test(mode):
            return f"not a regular file but {kind}"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def require_scan_file(path: str | Path) -> Path:
    """``path`` if it is a readable regular file, else :class:`ScanError` saying why."""
    reason = unusable_reason(path)
    if reason is not None:
        raise ScanError(f"{path}: {reason}")
    return Path(path)
