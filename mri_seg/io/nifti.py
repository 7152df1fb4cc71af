"""NIfTI volumes (``.nii``, ``.nii.gz``) read and written with nibabel.

Slicing (``infer.nifti_axis``): ``auto`` (default) reorients a volume with a usable affine
(sform or qform code > 0) to the training layout with nibabel's orientation tools (see
:mod:`mri_seg.io.orientation`): axial slices, rows anterior->posterior, columns patient
right->left. A volume without one is sliced along array axis 2 in index space, with an
:class:`OrientationWarning`. An explicit axis 0/1/2 slices the stored array along that axis
in index space (``np.moveaxis(data, axis, 0)``), whatever the affine says. Either way the
mask goes back with the exact inverse, so it overlays the input voxel for voxel; the
input's affine, qform/sform codes and header are kept (data type set to uint8, intensity
scaling and display range reset).

Accepted shapes: 3D ``X x Y x Z`` (one sequence, taken as FLAIR; the others are replaced by
it with a warning) and 4D ``X x Y x Z x K`` whose last axis holds the sequences named, in
order, by ``infer.sequences`` (default ``[post, flair, pre]``, the Kaggle TIFF order as
OpenCV reads it; ``[pre, flair, post]`` for the natural order). ``X x Y x Z x 1`` is 3D.
Intensities are read with the file's scaling applied (``get_fdata``; unscaled 8/16-bit
integers keep their dtype).
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from mri_seg.io.options import ReadOptions, as_options
from mri_seg.io.orientation import AUTO, Layout, has_usable_affine, index_layout, oriented_layout
from mri_seg.io.scan import OrientationWarning, Scan, ScanError, require_scan_file
from mri_seg.utils.atomic import atomic_write_bytes

_MM_PER_UNIT = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


def is_nifti(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def nifti_stem(path: str | Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    name = Path(path).name
    return name[: -len(nifti_suffix(path))]


def nifti_suffix(path: str | Path) -> str:
    return ".nii.gz" if Path(path).name.lower().endswith(".nii.gz") else ".nii"


def _load(path: Path) -> nib.Nifti1Image:
    require_scan_file(path)
    try:
        image = nib.load(str(path))
    except Exception as exc:
        raise ScanError(f"{path}: not a readable NIfTI file ({exc})") from exc
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ScanError(f"{path}: not a NIfTI-1/2 image ({type(image).__name__})")
    return image


def _voxel_mm(header) -> tuple[float, float, float] | None:
    """Spatial voxel size in mm, or None when the file gives no usable spatial information.

    Units mm / meter / micron are converted. Unknown units are taken as mm (what ITK,
    FSL and ANTs assume) when the file has a spatial transform (sform or qform code > 0);
    with no transform and no units the pixdims are placeholders, so the size is unknown.
    """
    unit = header.get_xyzt_units()[0]
    if unit == "unknown" and int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        return None
    factor = _MM_PER_UNIT.get(unit, 1.0 if unit == "unknown" else None)
    zooms = header.get_zooms()[:3]
    if factor is None or any(z <= 0 for z in zooms):
        return None
    return float(zooms[0]) * factor, float(zooms[1]) * factor, float(zooms[2]) * factor


def _intensities(image) -> np.ndarray:
    """Voxel values with the file's scaling applied.

    Unscaled 8/16-bit integer data stays in its own dtype (``dataobj``), like the uint8
    TIFF slices the model was trained on, so resizing rounds the same way and a volume
    stacked from Kaggle slices segments exactly like the slices; anything else is
    ``get_fdata`` as float32.
    """
    slope, inter = image.header.get_slope_inter()
    dtype = image.get_data_dtype()
    unscaled = slope in (None, 1.0) and inter in (None, 0.0)
    if unscaled and dtype.kind in "ui" and dtype.itemsize <= 2:
        return np.asanyarray(image.dataobj)
    return np.asarray(image.get_fdata(dtype=np.float32))


def spatial_layout(image, axis: int | str, path: Path) -> Layout:
    """How ``image``'s array becomes slices: oriented from the affine, or index space along ``axis``."""
    if axis == AUTO and has_usable_affine(image.header):
        layout = oriented_layout(image.affine)
        if layout is not None:
            return layout
        reason = "an affine with a degenerate axis"
    elif axis == AUTO:
        reason = "no usable affine (sform and qform codes are 0)"
    else:
        return index_layout(axis)
    warnings.warn(f"{path}: {reason}: slices taken along array axis {index_layout(AUTO).axis} in index space, "
                  "orientation unknown (check the overlay; set infer.nifti_axis to choose the axis)",
                  OrientationWarning, stacklevel=3)  # fmt: skip
    return index_layout(AUTO)


def load_volume(path: str | Path, axis: int | str = AUTO) -> tuple[np.ndarray, Layout, nib.Nifti1Image]:
    """A NIfTI file's data in slice layout (``D x H x W`` or ``D x H x W x K``), its layout and image."""
    path = Path(path)
    image = _load(path)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) not in (3, 4):
        raise ScanError(f"{path}: NIfTI shape {image.shape}; expected X x Y x Z or X x Y x Z x sequences")
    try:
        data = _intensities(image).reshape(shape)
    except Exception as exc:  # truncated/corrupt data block
        raise ScanError(f"{path}: cannot read NIfTI data ({exc})") from exc
    layout = spatial_layout(image, axis, path)
    return layout.forward(data), layout, image


def volume_geometry(image, layout: Layout) -> dict:
    """What the writers need to put a ``D x H x W`` mask back into ``image``'s voxels."""
    return {
        "affine": image.affine.copy(),
        "header": image.header.copy(),
        "image_class": type(image),
        "layout": layout,
        "axis": layout.axis,
        "spatial_shape": tuple(int(s) for s in image.shape[:3]),
        "voxel_mm": _voxel_mm(image.header),
    }


def read_nifti(path: str | Path, options: ReadOptions | int | str | None = None) -> Scan:
    """A NIfTI volume as a :class:`Scan` with a ``D x H x W x K`` array and named channels.

    ``options``: :class:`ReadOptions`, or just ``nifti_axis`` (``auto`` or 0/1/2).
    """
    path = Path(path)
    options = as_options(options)
    slices, layout, image = load_volume(path, options.nifti_axis)
    names: tuple[str, ...]
    sources: tuple[str, ...]
    if slices.ndim == 3:
        names, sources = ("flair",), ("3D volume",)
        slices = slices[..., None]
    else:
        names = options.volume_sequences
        if slices.shape[3] != len(names):
            raise ScanError(
                f"{path}: NIfTI shape {image.shape}: {slices.shape[3]} sequences in the last axis but "
                f"infer.sequences declares {len(names)} ({', '.join(names)}); set it to the volume's order, "
                "e.g. --set infer.sequences=[pre,flair,post]"
            )
        sources = tuple(f"volume[..., {k}]" for k in range(len(names)))
    return Scan(path=path, format="nifti", array=slices, geometry=volume_geometry(image, layout),
                channels=tuple(names), channel_sources=sources)  # fmt: skip


def to_spatial(slices: np.ndarray, scan: Scan) -> np.ndarray:
    """Inverse of the slicing in :func:`read_nifti`: ``D x H x W`` back to the stored ``X x Y x Z``."""
    spatial = scan.geometry["layout"].inverse(slices)
    if spatial.shape != tuple(scan.geometry["spatial_shape"]):
        raise ScanError(f"{scan.path}: mask shape {spatial.shape} != image shape {scan.geometry['spatial_shape']}")
    return spatial


def _encode(data: np.ndarray, scan: Scan, path: Path) -> bytes:
    header = scan.geometry["header"].copy()
    header.set_data_dtype(data.dtype)
    image = scan.geometry["image_class"](data, scan.geometry["affine"], header)
    src = scan.geometry["header"]
    image.set_sform(src.get_sform(), code=int(src["sform_code"]))
    image.set_qform(src.get_qform(), code=int(src["qform_code"]))
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"], image.header["cal_max"] = 0.0, 0.0
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=1, mtime=0) if nifti_suffix(path) == ".nii.gz" else raw


def write_nifti(path: str | Path, slices: np.ndarray, scan: Scan) -> None:
    """Write ``D x H x W`` slices (uint8 mask or float32 probabilities) in the input's geometry."""
    path = Path(path)
    atomic_write_bytes(path, _encode(to_spatial(np.ascontiguousarray(slices), scan), scan, path))


def write_mask_nifti(path: str | Path, mask: np.ndarray, scan: Scan) -> None:
    write_nifti(path, np.asarray(mask, dtype=bool).astype(np.uint8), scan)


def write_prob_nifti(path: str | Path, prob: np.ndarray, scan: Scan) -> None:
    """float32 probabilities (float16 is not a NIfTI data type nibabel writes)."""
    write_nifti(path, np.asarray(prob, dtype=np.float32), scan)


def read_nifti_mask(path: str | Path, scan: Scan) -> np.ndarray:
    """A reference mask volume, as ``D x H x W`` bool in ``scan``'s slice order."""
    path = Path(path)
    image = _load(path)
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:
        raise ScanError(f"{path}: cannot read NIfTI data ({exc})") from exc
    data = data.reshape(data.shape[:3]) if data.ndim == 4 and data.shape[3] == 1 else data
    if data.shape != tuple(scan.geometry["spatial_shape"]):
        raise ScanError(f"{path}: mask shape {data.shape} != image shape {tuple(scan.geometry['spatial_shape'])}")
    return np.ascontiguousarray(scan.geometry["layout"].forward(data > 0))
