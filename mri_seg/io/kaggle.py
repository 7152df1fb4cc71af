"""Kaggle LGG layout: a patient folder of ``TCGA_<inst>_<id>_<date>_<n>.tif`` (or ``.tiff``) slices is one volume.

Slices are stacked in numeric order of ``<n>``; ``..._<n>_mask.tif`` files are
reference masks (ignored, or used for Dice with ``--with-truth``). Slices are read
exactly as the training data was (see :mod:`mri_seg.io.images`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mri_seg.io.images import decode_image, read_mask
from mri_seg.io.scan import Scan, ScanError

# The one Kaggle slice file-name pattern (prepare and infer): <prefix>_<n>[_mask].tif or .tiff
KAGGLE_PATTERN = re.compile(r"^(?P<prefix>TCGA_\w+?)_(?P<index>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)


def parse_kaggle_name(name: str) -> tuple[str, int, bool] | None:
    """``(prefix, slice index, is_mask)`` for a Kaggle slice file name, else None."""
    m = KAGGLE_PATTERN.match(name)
    if m is None:
        return None
    return m.group("prefix"), int(m.group("index")), m.group("mask") is not None


def slice_number(name: str) -> int:
    """The slice number ``<n>`` of a Kaggle slice file name (ScanError for any other name)."""
    parsed = parse_kaggle_name(name)
    if parsed is None:
        raise ScanError(f"{name}: not a Kaggle slice file name (TCGA_<inst>_<id>_<date>_<n>.tif)")
    return parsed[1]


def truth_path(slice_path: Path) -> Path:
    """The reference mask file of a Kaggle slice: ``<slice>_mask.tif``."""
    return slice_path.with_name(f"{slice_path.stem}_mask{slice_path.suffix}")


def sort_slices(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: slice_number(p.name))


def read_kaggle_volume(path: Path, slice_paths: list[Path]) -> Scan:
    """Stack a patient's slices (numeric order) into a ``D x H x W x C`` :class:`Scan`."""
    slice_paths = sort_slices(list(slice_paths))
    if not slice_paths:
        raise ScanError(f"{path}: no slices")
    slices: list[np.ndarray] = []
    for p in slice_paths:
        image = decode_image(p)
        image = image[:, :, None] if image.ndim == 2 else image
        if slices and image.shape != slices[0].shape:
            raise ScanError(f"{p}: slice shape {image.shape} differs from the patient's first slice {slices[0].shape}")
        slices.append(image)
    return Scan(path=path, format="kaggle", array=np.stack(slices), geometry={"slice_paths": slice_paths})


def read_kaggle_truth(scan: Scan) -> np.ndarray:
    """Reference masks of every slice as ``D x H x W`` bool (a missing mask file is an error)."""
    masks = []
    for p in scan.geometry["slice_paths"]:
        mp = truth_path(p)
        if not mp.is_file():
            raise ScanError(f"{mp}: reference mask missing")
        masks.append(read_mask(mp))
    return np.stack(masks)
