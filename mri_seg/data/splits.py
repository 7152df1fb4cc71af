"""Patient-level train/val/test splits, stratified by tumour burden and institution.

Why patient level: slices of one patient are strongly correlated; a slice-level split
would leak a patient's anatomy into the test set and inflate every metric.

How: the unit of splitting is the patient (``case_id``, TCGA_<inst>_<id>), not the
folder: two dated folders (studies) of one patient are one unit, whose tumour pixels are
summed, so they can never land in different splits or folds. Each unit is one row (so
group-awareness is automatic), and splits.csv then lists every folder (``patient_id``)
with its unit's split. Strata are tumour-burden quantile bins (``tumour_bins``, on
``tumour_pixels_total``) crossed with institution; strata too small for the splitter are
collapsed (rare institutions pooled within their burden bin, then fewer bins, then
no stratification) until scikit-learn accepts them. Test patients are drawn first, then
validation patients from the rest, each with ``StratifiedShuffleSplit`` and an integer
``test_size`` = round(n * fraction). That choice is deliberate: ``StratifiedGroupKFold``
can only produce 1/k-sized pieces, so it cannot hit 70/15/15 exactly, whereas an integer
size puts every split within one patient of its requested fraction.

Optional cross-validation folds (``n_folds > 1``) over the train+val patients use
``StratifiedGroupKFold`` (groups = patient_id) on the same strata; test patients get
fold -1. Same seed -> identical file; a different seed -> a different split.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit

from mri_seg.config import Config, ConfigError, SplitConfig
from mri_seg.data.manifest import PATIENTS_FILE, SPLITS, SPLITS_FILE, read_manifest
from mri_seg.utils.atomic import atomic_write_csv

REQUIRED = ("patient_id", "institution", "tumour_pixels_total")


def validate_split_config(cfg: SplitConfig) -> None:
    fractions = {"train": cfg.train, "val": cfg.val, "test": cfg.test}
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"config key 'split.{name}' must be within [0, 1], got {value}")
    total = sum(fractions.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(f"split fractions train+val+test must sum to 1, got {total:g}")
    if cfg.train <= 0:
        raise ConfigError("config key 'split.train' must be > 0")
    if cfg.tumour_bins < 1:
        raise ConfigError(f"config key 'split.tumour_bins' must be >= 1, got {cfg.tumour_bins}")
    if cfg.n_folds == 1 or cfg.n_folds < 0:
        raise ConfigError(f"config key 'split.n_folds' must be 0 (no folds) or >= 2, got {cfg.n_folds}")


def burden_bins(pixels: pd.Series, n_bins: int) -> np.ndarray:
    """Quantile bin (0..n_bins-1) of each patient's tumour pixel total; ties broken by order."""
    n_bins = max(1, min(n_bins, len(pixels)))
    if n_bins == 1:
        return np.zeros(len(pixels), dtype=int)
    ranks = pixels.rank(method="first").to_numpy()
    return pd.qcut(ranks, q=n_bins, labels=False).astype(int)


def _collapse(labels: list[str], bins: np.ndarray, min_count: int) -> list[str]:
    """Pool strata smaller than ``min_count`` within their burden bin, then into the bin's largest stratum."""
    counts = pd.Series(labels).value_counts()
    out = [lab if counts[lab] >= min_count else f"{b}|*" for lab, b in zip(labels, bins)]
    counts = pd.Series(out).value_counts()
    for i, (lab, b) in enumerate(zip(out, bins)):
        if counts[lab] < min_count:
            same_bin = [x for x in counts.index if x.startswith(f"{b}|") and counts[x] >= min_count]
            if same_bin:
                out[i] = max(same_bin, key=lambda x: (counts[x], x))
    return out


def strata_candidates(frame: pd.DataFrame, bins: np.ndarray, n_bins: int, min_count: int) -> list[np.ndarray]:
    """Label sets from finest (burden bin x institution) to none; the splitter takes the first it accepts."""
    inst = frame["institution"].astype(str).tolist()
    candidates = [np.array(_collapse([f"{b}|{i}" for b, i in zip(bins, inst)], bins, min_count))]
    for n in range(n_bins, 1, -1):
        coarse = (bins * n) // max(n_bins, 1)  # merge neighbouring burden bins
        candidates.append(np.array([str(c) for c in coarse]))
    candidates.append(np.zeros(len(frame), dtype=int).astype(str))
    return [c for c in candidates if pd.Series(c).value_counts().min() >= min_count] or [candidates[-1]]


def _pick(frame: pd.DataFrame, bins: np.ndarray, n_bins: int, n_pick: int, seed: int) -> np.ndarray:
    """Positions of ``n_pick`` patients drawn with stratification (first strata set sklearn accepts)."""
    if n_pick <= 0:
        return np.array([], dtype=int)
    if n_pick >= len(frame):
        return np.arange(len(frame))
    for labels in strata_candidates(frame, bins, n_bins, min_count=2):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=n_pick, random_state=seed)
        try:
            _, picked = next(splitter.split(np.zeros(len(frame)), labels))
        except ValueError:
            continue  # too many strata for this many patients: try coarser ones
        return np.sort(picked)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(frame), size=n_pick, replace=False))


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_sizes(n: int, cfg: SplitConfig) -> dict[str, int]:
    """Patients per split: round(n * fraction) for val and test, the rest (at least 1) for train."""
    n_test = min(_round(n * cfg.test), max(n - 1, 0))
    n_val = min(_round(n * cfg.val), max(n - 1 - n_test, 0))
    return {"train": n - n_test - n_val, "val": n_val, "test": n_test}


def _assign_folds(frame: pd.DataFrame, bins: np.ndarray, n_bins: int, k: int, seed: int) -> np.ndarray:
    if len(frame) < k:
        raise ConfigError(f"split.n_folds={k} needs at least {k} train+val patients, have {len(frame)}")
    folds = np.full(len(frame), -1, dtype=int)
    for labels in strata_candidates(frame, bins, n_bins, min_count=k):
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                for fold, (_, members) in enumerate(splitter.split(np.zeros(len(frame)), labels, frame["patient_id"])):
                    folds[members] = fold
        except ValueError:
            continue
        if (np.bincount(folds[folds >= 0], minlength=k) > 0).all():
            return folds
    raise ConfigError(f"cannot make {k} folds from {len(frame)} train+val patients")


def split_units(patients: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The units of splitting: one row per patient (``case_id``; a folder without one is its
    own unit), with ``institution`` and the summed ``tumour_pixels_total``; and each folder's unit."""
    folders = patients["patient_id"].astype(str)
    case = patients["case_id"].astype(str) if "case_id" in patients.columns else folders
    unit = case.where(case.str.len() > 0, folders).rename("unit")
    grouped = patients.assign(unit=unit).groupby("unit", sort=True)
    units = grouped.agg(institution=("institution", "first"), tumour_pixels_total=("tumour_pixels_total", "sum"))
    units = units.reset_index().rename(columns={"unit": "patient_id"})  # the splitter's id column
    return units, unit


def make_splits(patients: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """``patient_id, split[, fold]`` for every patient folder (one row each), sorted by patient_id;
    all folders of one ``case_id`` share their split and fold (see the module docstring)."""
    validate_split_config(cfg)
    missing = [c for c in REQUIRED if c not in patients.columns]
    if missing:
        raise ValueError(f"patients table lacks columns {missing}")
    if patients["patient_id"].duplicated().any():
        raise ValueError("patients table lists a patient more than once")
    if patients.empty:
        raise ValueError("no patients to split")
    folders = patients.sort_values("patient_id", kind="stable").reset_index(drop=True)
    frame, unit_of = split_units(folders)
    by_unit = _split_units(frame, cfg).set_index("patient_id")
    out = by_unit.loc[unit_of.to_numpy()].reset_index(drop=True)
    out.insert(0, "patient_id", folders["patient_id"])
    return out


def _split_units(frame: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """``patient_id, split[, fold]`` for one row per unit (``frame`` sorted by its id)."""
    bins = burden_bins(frame["tumour_pixels_total"].astype(float), cfg.tumour_bins)
    n_bins = int(bins.max()) + 1
    sizes = split_sizes(len(frame), cfg)
    split = np.array(["train"] * len(frame), dtype=object)
    test_pos = _pick(frame, bins, n_bins, sizes["test"], cfg.seed)
    split[test_pos] = "test"
    rest = np.flatnonzero(split != "test")
    val_pos = _pick(frame.iloc[rest].reset_index(drop=True), bins[rest], n_bins, sizes["val"], cfg.seed + 1)
    split[rest[val_pos]] = "val"
    out = pd.DataFrame({"patient_id": frame["patient_id"], "split": split.astype(str)})
    if cfg.n_folds > 1:
        trainval = np.flatnonzero(split != "test")
        folds = np.full(len(frame), -1, dtype=int)
        sub = frame.iloc[trainval].reset_index(drop=True)
        folds[trainval] = _assign_folds(sub, bins[trainval], n_bins, cfg.n_folds, cfg.seed)
        out["fold"] = folds
    return out


def patients_from_run(run_dir: Path) -> pd.DataFrame:
    """RUN/patients.csv, or the per-patient totals of the manifest when it is absent."""
    manifest = read_manifest(run_dir)
    path = Path(run_dir) / PATIENTS_FILE
    if path.is_file():
        patients = pd.read_csv(
            path, dtype={"patient_id": str, "case_id": str, "institution": str}, keep_default_na=False
        )
    else:
        patients = manifest.groupby("patient_id", sort=True).agg(
            case_id=("case_id", "first"), institution=("institution", "first"),
            tumour_pixels_total=("tumour_pixels", "sum"),
        ).reset_index()  # fmt: skip
    unknown = set(manifest["patient_id"]) ^ set(patients["patient_id"])
    if unknown:
        raise ValueError(f"{path} and the manifest disagree on patients: {sorted(unknown)[:5]}")
    return patients


def split_run_dir(run_dir: Path, cfg: Config) -> pd.DataFrame:
    """Read the run's patients, make the splits and write RUN/splits.csv (atomically)."""
    run_dir = Path(run_dir)
    splits = make_splits(patients_from_run(run_dir), cfg.split)
    atomic_write_csv(run_dir / SPLITS_FILE, splits)
    return splits


def split_summary(manifest: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """One row per split: patients, slices, tumour slices, median tumour pixels per patient, institutions."""
    per_patient = manifest.groupby("patient_id").agg(
        slices=("slice_index", "size"), tumour_slices=("has_tumour", "sum"), pixels=("tumour_pixels", "sum"),
        institution=("institution", "first"),
    )  # fmt: skip
    joined = splits.set_index("patient_id").join(per_patient)
    rows = []
    for name in SPLITS:
        part = joined[joined["split"] == name]
        insts = part["institution"].value_counts().sort_index()
        rows.append({
            "split": name,
            "patients": len(part),
            "slices": int(part["slices"].sum()),
            "tumour_slices": int(part["tumour_slices"].sum()),
            "median_tumour_px": int(part["pixels"].median()) if len(part) else 0,
            "institutions": " ".join(f"{k}:{v}" for k, v in insts.items()),
        })  # fmt: skip
    return pd.DataFrame(rows)
