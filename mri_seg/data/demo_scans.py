"""Held-out synthetic scans for the demo's inference step, one of each input kind.

Writes into ``out_dir``:
- ``patient/<TCGA_...>/``: a Kaggle-layout patient folder of TIFF slices (+ masks),
- ``large_slice.png``: one 1024x1024 3-channel image (tiled inference): a 4x4 mosaic of
  256x256 slices, so its pixel size matches what the model was trained on and many
  tumours cross tile borders,
- ``volume.nii.gz``: a 4D NIfTI volume (H x W x slices x 3 sequences, in the Kaggle TIFF order as
  OpenCV reads it: the ``infer.sequences`` default), 0.94 x 0.94 x 3 mm voxels, with the affine of
  the slices' own orientation (rows anterior->posterior, columns right->left, slices upwards).
All come from patients the demo model never sees (a different generator seed).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from mri_seg.data.synthetic import generate_dataset
from mri_seg.io.images import read_mask, read_slice
from mri_seg.io.orientation import STACKED_SLICES_AXCODES, axcodes_affine

NIFTI_VOXEL_MM = (0.9375, 0.9375, 3.0)


def _patient_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def _slices(patient_dir: Path) -> list[Path]:
    images = [p for p in patient_dir.glob("*.tif") if not p.stem.endswith("_mask")]
    return sorted(images, key=lambda p: int(p.stem.rsplit("_", 1)[1]))


def mosaic(slices: list[np.ndarray], grid: int) -> np.ndarray:
    """Tile ``grid x grid`` equally sized slices into one image, row by row."""
    rows = [np.concatenate(slices[r * grid : (r + 1) * grid], axis=1) for r in range(grid)]
    return np.concatenate(rows, axis=0)


def make_inference_scans(out_dir: str | Path, seed: int = 1000, grid: int = 4) -> list[Path]:
    """Write the three demo scans into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        small = generate_dataset(tmp / "small", n_patients=2, seed=seed)
        folder_src, volume_src = _patient_dirs(small)[:2]

        folder_dst = out_dir / "patient" / folder_src.name
        shutil.copytree(folder_src, folder_dst, dirs_exist_ok=True)

        slices = [read_slice(p) for p in _slices(volume_src)]
        volume = np.stack(slices, axis=2)  # H x W x D x 3
        affine = axcodes_affine(STACKED_SLICES_AXCODES, NIFTI_VOXEL_MM)
        nifti_path = out_dir / "volume.nii.gz"
        nib.save(nib.Nifti1Image(volume.astype(np.uint8), affine), str(nifti_path))

        large = generate_dataset(tmp / "large", n_patients=1, seed=seed + 1, min_slices=grid * grid)
        large_slices = _slices(_patient_dirs(large)[0])
        tumour = [read_mask(Path(str(p)[:-4] + "_mask.tif")).sum() for p in large_slices]
        chosen = sorted(np.argsort(tumour)[::-1][: grid * grid])  # the slices with most tumour, in order
        large_path = out_dir / "large_slice.png"
        cv2.imwrite(str(large_path), mosaic([read_slice(large_slices[i]) for i in chosen], grid))
    return [folder_dst, large_path, nifti_path]
