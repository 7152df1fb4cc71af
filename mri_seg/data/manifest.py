"""Run-directory tables: manifest.csv (one row per slice), patients.csv, splits.csv.

Paths in manifest.csv are absolute, so a run directory can live anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mri_seg.config.names import SPLITS
from mri_seg.rundir import MANIFEST_FILE, PATIENTS_FILE, PREPARE_REPORT_FILE, SPLITS_FILE  # noqa: F401 (re-exported)
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

REPORT_FILE = PREPARE_REPORT_FILE  # the file names live in mri_seg.rundir


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


class FoldError(ValueError):
    """splits.csv has no cross-validation folds, or the fold asked for is not one of them."""


def fold_ids(splits: pd.DataFrame, path: str | Path = SPLITS_FILE) -> list[int]:
    """The cross-validation folds of the train+val patients (``fold`` column of splits.csv)."""
    if "fold" not in splits.columns:
        raise FoldError(
            f"{path} has no folds: run the split stage with --set split.n_folds=5 (or any k >= 2)"
        )
    trainval = splits[splits["split"].isin(("train", "val"))]
    folds = sorted(int(f) for f in trainval["fold"].unique())
    if not folds or folds[0] < 0:
        raise FoldError(f"{path}: some train/val patients have no fold (fold -1); run the split stage again")
    return folds


def fold_patients(run_dir: str | Path, fold: int) -> tuple[list[str], list[str]]:
    """(training patients, held-out patients) of ``fold``: train+val patients whose fold is not /
    is ``fold``. Test patients are in neither."""
    path = Path(run_dir) / SPLITS_FILE
    splits = read_splits(run_dir)
    folds = fold_ids(splits, path)
    if fold not in folds:
        raise FoldError(f"fold {fold} is out of range: {path} has folds {folds[0]}..{folds[-1]}")
    trainval = splits[splits["split"].isin(("train", "val"))]
    held_out = sorted(trainval.loc[trainval["fold"] == fold, "patient_id"].astype(str))
    training = sorted(trainval.loc[trainval["fold"] != fold, "patient_id"].astype(str))
    return training, held_out


def manifest_for_patients(run_dir: str | Path, patients: list[str]) -> pd.DataFrame:
    """Manifest rows of ``patients``, in patient/slice order."""
    manifest = read_manifest(run_dir)
    return manifest[manifest["patient_id"].astype(str).isin(set(patients))].reset_index(drop=True)
