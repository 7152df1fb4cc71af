"""Voxel orientation: NIfTI volumes laid out like the training slices, and back.

The training layout (checked on the lgg-dev slices, see README "Orientation"): a Kaggle
patient is a stack of axial slices; slice numbers run inferior -> superior (slice 1 shows
the jaw or nose, the last one the vertex); rows run anterior -> posterior (eyes at the top);
columns run from the patient's right to left (radiological view: the patient's right on the
image's left; ``data.csv``'s ``laterality`` code 3 = right puts every lgg-dev tumour in the
left half of the image, code 1 = left in the right half, code 2 = midline in the middle).
In nibabel's axis codes (the direction each index *increases* towards) a ``D x H x W``
volume in that layout is :data:`TRAINING_AXCODES` = ``("S", "P", "L")``.

A NIfTI volume with a usable affine (sform or qform code > 0) is brought to that layout
with nibabel's orientation tools: ``io_orientation`` finds which array axis is closest to
each world axis, ``ornt_transform`` + ``apply_orientation`` permute and flip the array
(views, no resampling: an oblique volume is sliced along its nearest axes). The mask goes
back with the inverse transform, so it lines up voxel for voxel with the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel.orientations import aff2axcodes, apply_orientation, axcodes2ornt, io_orientation, ornt_transform

TRAINING_AXCODES = ("S", "P", "L")  # slices inferior->superior, rows anterior->posterior, columns right->left
STACKED_SLICES_AXCODES = ("P", "L", "S")  # Kaggle slices stacked as H x W x D (np.stack(slices, axis=2))
AUTO = "auto"
AUTO_INDEX_AXIS = 2  # axis sliced along when `auto` meets a volume without a usable affine


def has_usable_affine(header) -> bool:
    """NIfTI rule: the sform or the qform is meaningful only when its code is > 0."""
    return int(header["sform_code"]) > 0 or int(header["qform_code"]) > 0


def parse_axis(value: int | str, key: str = "infer.nifti_axis") -> int | str:
    """``auto`` or an array axis 0/1/2; ValueError naming ``key`` otherwise."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return value
    raise ValueError(f"{key} must be auto, 0, 1 or 2, got {value!r}")


@dataclass(frozen=True)
class Layout:
    """How a stored ``X x Y x Z (x K)`` array became ``D x H x W (x K)`` slices, and how to go back.

    ``to_training`` / ``to_input``: nibabel orientation transforms (``None`` for index-space
    slicing, which moves ``axis`` to the front). ``input_axcodes``: the file's own codes
    (``("R", "A", "S")`` ...), None without a usable affine.
    """

    axis: int | None = None
    to_training: np.ndarray | None = None
    to_input: np.ndarray | None = None
    input_axcodes: tuple[str, ...] | None = None

    @property
    def oriented(self) -> bool:
        return self.to_training is not None

    @property
    def slice_axis(self) -> int | None:
        """The stored array's spatial axis that became the slice axis (None: not known)."""
        if self.to_training is not None:
            return int(np.flatnonzero(self.to_training[:, 0] == 0)[0])
        return self.axis

    def describe(self) -> str:
        if self.oriented:
            assert self.input_axcodes is not None, "oriented_layout sets the transforms and axcodes together"
            return f"{''.join(self.input_axcodes)} -> {''.join(TRAINING_AXCODES)}"
        return f"index space, axis {self.axis}"

    def forward(self, data: np.ndarray) -> np.ndarray:
        """Stored array (3 spatial axes first) -> slices first, training layout (a view)."""
        if self.to_training is not None:  # self.oriented
            return apply_orientation(data, self.to_training)
        return np.moveaxis(data, self._index_axis(), 0)

    def inverse(self, slices: np.ndarray) -> np.ndarray:
        """Exact inverse of :meth:`forward` (a view)."""
        if self.oriented:
            assert self.to_input is not None, "oriented_layout sets both transforms"
            return apply_orientation(slices, self.to_input)
        return np.moveaxis(slices, 0, self._index_axis())

    def _index_axis(self) -> int:
        assert self.axis is not None, "index_layout sets the axis of an index-space layout"
        return self.axis


def oriented_layout(affine: np.ndarray) -> Layout | None:
    """The transform to the training layout for ``affine``, or None when it has no clear axes."""
    ornt = io_orientation(affine)
    if np.isnan(ornt).any():  # a zero or degenerate column: no world direction for that axis
        return None
    target = axcodes2ornt(TRAINING_AXCODES)
    return Layout(
        to_training=ornt_transform(ornt, target),
        to_input=ornt_transform(target, ornt),
        input_axcodes=tuple(aff2axcodes(affine)),
    )


def axcodes_affine(axcodes: tuple[str, ...], zooms=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A 4x4 affine whose array axes point along ``axcodes`` (RAS+ world), with voxel sizes ``zooms``.

    E.g. ``axcodes_affine(STACKED_SLICES_AXCODES, (0.94, 0.94, 3.0))`` is the affine of Kaggle
    slices stacked as ``H x W x D``: the volume a TIFF patient folder describes.
    """
    ornt = axcodes2ornt(axcodes)
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for axis, (world, sign) in enumerate(ornt):
        affine[int(world), axis] = sign * float(zooms[axis])
    affine[:3, 3] = origin
    return affine


def index_layout(axis: int | str) -> Layout:
    return Layout(axis=AUTO_INDEX_AXIS if axis == AUTO else int(axis))
