"""Run-directory tables: manifest.csv (one row per slice), patients.csv, splits.csv.

Paths in manifest.csv are absolute, so a run directory can live anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mri_seg.utils.atomic import atomic_write_csv

MANIFEST_COLUMNS = [
    "patient_id",  # folder name, e.g. TCGA_CS_4941_19960909
    "case_id",  # TCGA_<inst>_<id>, the key of data.csv
    "institution",  # <inst>, e.g. CS
    "slice_index",  # int, from the file name
    "image_path",
    "mask_path",
    "height",
    "width",
    "channels",
    "tumour_pixels",
    "has_tumour",  # bool
]
SPLIT_COLUMNS = ["patient_id", "split"]  # plus "fold" when k folds are asked for
SPLITS = ("train", "val", "test")

MANIFEST_FILE = "manifest.csv"
PATIENTS_FILE = "patients.csv"
SPLITS_FILE = "splits.csv"
REPORT_FILE = "prepare_report.json"


def write_table(path: str | Path, frame: pd.DataFrame) -> None:
    atomic_write_csv(path, frame)


def read_manifest(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the prepare stage first")
    frame = pd.read_csv(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}")
    return frame


def read_splits(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / SPLITS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the split stage first")
    return pd.read_csv(path)


def manifest_for_split(run_dir: str | Path, split: str) -> pd.DataFrame:
    """Manifest rows of the patients assigned to ``split``, in patient/slice order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    manifest = read_manifest(run_dir)
    splits = read_splits(run_dir)
    patients = set(splits.loc[splits["split"] == split, "patient_id"])
    return manifest[manifest["patient_id"].isin(patients)].reset_index(drop=True)
