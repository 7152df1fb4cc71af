"""Synthetic Kaggle-layout data: layout, file format, determinism, tumour shape, and prepare on it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile

from mri_seg.config import load_config
from mri_seg.data.kaggle_lgg import PATIENT_RE, prepare_dataset
from mri_seg.data.synthetic import DATA_CSV_COLUMNS, INSTITUTIONS, generate_dataset
from mri_seg.io.images import read_mask, read_slice
from mri_seg.pipelines import synthesize


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def patient_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def volume(patient: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    n = len(list(patient.glob("*_mask.tif")))
    images = [read_slice(patient / f"{patient.name}_{z}.tif") for z in range(1, n + 1)]
    masks = [cv2.imread(str(patient / f"{patient.name}_{z}_mask.tif"), cv2.IMREAD_UNCHANGED) for z in range(1, n + 1)]
    return images, masks


def test_layout_and_data_csv(synthetic_dir):
    dirs = patient_dirs(synthetic_dir)
    assert len(dirs) == 8 and all(PATIENT_RE.match(d.name) for d in dirs)
    assert {d.name.split("_")[1] for d in dirs} <= set(INSTITUTIONS)
    for d in dirs:
        images = sorted(p.name for p in d.glob("*.tif") if not p.name.endswith("_mask.tif"))
        masks = sorted(p.name for p in d.glob("*_mask.tif"))
        assert 12 <= len(images) <= 20 and len(masks) == len(images)
        assert {m.replace("_mask", "") for m in masks} == set(images)
    table = pd.read_csv(synthetic_dir / "data.csv", dtype=str, keep_default_na=False)
    assert list(table.columns) == DATA_CSV_COLUMNS
    assert sorted(table["Patient"]) == sorted(d.name.rsplit("_", 1)[0] for d in dirs)
    values = table[DATA_CSV_COLUMNS[1:]].to_numpy().ravel()
    assert (values == "").any() and all(v == "" or v.isdigit() for v in values)  # small ints, some blanks


def test_tiff_format_matches_the_real_files(synthetic_dir):
    patient = patient_dirs(synthetic_dir)[0]
    image_path = patient / f"{patient.name}_5.tif"
    mask_path = patient / f"{patient.name}_5_mask.tif"
    image = read_slice(image_path)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    # file order is (pre-contrast, FLAIR, post-contrast) as in the Kaggle files; read_slice
    # (cv2) returns the reverse, exactly as it does for the real files
    assert np.array_equal(tifffile.imread(image_path), image[:, :, ::-1])
    with tifffile.TiffFile(image_path) as tif:
        assert tif.pages[0].compression == 1 and tif.pages[0].samplesperpixel == 3
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (128, 128) and mask.dtype == np.uint8
    assert image[0, 0].tolist() == [0, 0, 0] and image[64, 64].min() > 0  # 0 outside the head only


def test_masks_binary_and_tumour_contiguous_growing_then_shrinking(synthetic_dir):
    for patient in patient_dirs(synthetic_dir):
        images, masks = volume(patient)
        for m in masks:
            assert set(np.unique(m).tolist()) <= {0, 255}
        areas = np.array([int((m > 0).sum()) for m in masks])
        present = np.flatnonzero(areas)
        assert len(present) >= 3, patient.name
        assert areas[0] == 0 and areas[-1] == 0  # edge slices hold no tumour
        assert (np.diff(present) == 1).all()  # one contiguous run
        peak = areas[present].max()
        assert areas[present[0]] < peak and areas[present[-1]] < peak  # grows then shrinks


def test_tumour_is_bright_in_flair_but_not_trivially(synthetic_dir):
    contrasts = []
    for patient in patient_dirs(synthetic_dir):
        images, masks = volume(patient)
        z = int(np.argmax([(m > 0).sum() for m in masks]))
        flair = images[z][:, :, 1].astype(float)  # channel 1 is FLAIR in either order
        tumour = masks[z] > 0
        brain = (images[z][:, :, 0] > 0) & ~tumour
        contrasts.append((flair[tumour].mean() - flair[brain].mean()) / flair[brain].std())
    assert min(contrasts) > 1.0  # visible
    assert max(contrasts) < 12.0  # but noisy and textured, not a clean threshold


def test_deterministic_for_a_seed(tmp_path):
    a = generate_dataset(tmp_path / "a", 3, seed=9, min_slices=5, max_slices=7, size=48)
    b = generate_dataset(tmp_path / "b", 3, seed=9, min_slices=5, max_slices=7, size=48)
    c = generate_dataset(tmp_path / "c", 3, seed=10, min_slices=5, max_slices=7, size=48)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_patients"):
        generate_dataset(tmp_path, 0)
    with pytest.raises(ValueError, match="min_slices"):
        generate_dataset(tmp_path, 1, min_slices=10, max_slices=5)


def test_prepare_on_synthetic_data(synthetic_dir, tmp_path):
    cfg = load_config(None, ["prepare.strict=true", "prepare.workers=1"])
    result = prepare_dataset(synthetic_dir, tmp_path / "run", cfg, progress=False)
    assert result.problems == []
    n_images = sum(1 for p in synthetic_dir.glob("*/*.tif") if not p.name.endswith("_mask.tif"))
    assert result.counts["slices"] == n_images and result.counts["patients"] == 8
    assert 0 < result.counts["tumour_slices"] < n_images
    row = result.manifest.query("has_tumour").iloc[0]
    assert read_mask(row["mask_path"]).sum() == row["tumour_pixels"]


def test_synthesize_cli(tmp_path, capsys):
    out = tmp_path / "ds"
    assert synthesize.main(["--out", str(out), "--patients", "2", "--seed", "1", "--size", "32",
                            "--min-slices", "4", "--max-slices", "4"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith(f"synthesize: 2 patients, 8 slices (32x32), seed 1 -> {out}")
    assert len(patient_dirs(out)) == 2 and (out / "data.csv").is_file()
