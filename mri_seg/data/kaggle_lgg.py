"""Scan a Kaggle-LGG-layout folder into a slice manifest, a patient table and a defect report.

Layout: ``<root>/TCGA_<inst>_<id>_<yyyymmdd>/TCGA_<inst>_<id>_<yyyymmdd>_<n>.tif`` plus
``..._<n>_mask.tif``, and ``data.csv`` (clinical table keyed by ``Patient`` = TCGA_<inst>_<id>).
``root`` may be the downloaded dataset root (holding ``kaggle_3m/``), ``kaggle_3m/`` itself,
or any folder of patient folders.

Every image and mask is fully decoded (cv2, fast), so truncated or corrupt files are
caught here rather than mid-training. Defective slices are excluded and each problem is
recorded with a severity:

- ``error``: a slice is excluded or a folder skipped,
- ``warning``: the clinical table is missing, unreadable or lacks a patient's row,
- ``info``: normal facts worth counting (data.csv rows with no folder, as in a subset).

In strict mode any error or warning fails the stage: the report is still written (it
lists every problem) but manifest.csv and patients.csv are not, and stale copies from an
earlier run are removed, so no later stage can run on data that failed the check.

Slices are decoded by the one image reader, :func:`mri_seg.io.images.decode_image`
(OpenCV's ``IMREAD_UNCHANGED``, BGR order of the file's RGB samples: 0 post-contrast,
1 FLAIR, 2 pre-contrast for the Kaggle files), and slice file names parsed by the one
pattern, :func:`mri_seg.io.kaggle.parse_kaggle_name` (``.tif`` and ``.tiff``): prepare,
training, evaluation and inference all read through the same calls (training and evaluation
read a prepared slice and its mask with :func:`mri_seg.io.images.read_slice` / ``read_mask``,
whose rules are the ones checked here: 3-channel uint8 images, 1-channel masks).
"""

from __future__ import annotations

import contextlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mri_seg.config import Config
from mri_seg.data.manifest import MANIFEST_COLUMNS, MANIFEST_FILE, PATIENTS_FILE, REPORT_FILE
from mri_seg.data.synthetic import DATA_CSV_COLUMNS  # noqa: F401 - re-exported: the Kaggle data.csv columns
from mri_seg.io.images import decode_image
from mri_seg.io.kaggle import parse_kaggle_name
from mri_seg.io.scan import ScanError
from mri_seg.utils.atomic import atomic_write_csv, atomic_write_json
from mri_seg.utils.opencv import quiet_opencv

PATIENT_RE = re.compile(r"^TCGA_([A-Z0-9]{2})_([A-Z0-9]+)_(\d{8})$")
TIFF_SUFFIXES = (".tif", ".tiff")
DATA_CSV = "data.csv"
PATIENT_STATS = ["patient_id", "case_id", "institution", "n_slices", "n_tumour_slices", "tumour_pixels_total"]
ERROR, WARNING, INFO = "error", "warning", "info"


class DatasetError(ValueError):
    """The dataset folder cannot be prepared at all (missing, empty, ambiguous).

    ``problems`` lists what was found wrong on the way (empty when the folder is missing).
    """

    def __init__(self, message: str, problems: list["Problem"] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class StrictPrepareError(DatasetError):
    """Strict mode found errors or warnings; ``result`` holds every problem."""

    def __init__(self, message: str, result: "PrepareResult"):
        super().__init__(message, result.problems)
        self.result = result


@dataclass(frozen=True)
class Problem:
    file: str
    patient_id: str
    kind: str
    severity: str
    reason: str

    def format(self) -> str:
        return f"{self.severity}: [{self.kind}] {self.file}: {self.reason}"


@dataclass
class PrepareResult:
    manifest: pd.DataFrame
    patients: pd.DataFrame
    problems: list[Problem]
    counts: dict[str, int]
    data_dir: Path
    patients_root: Path
    data_csv: Path | None
    strict_failed: bool = False
    written: list[Path] = field(default_factory=list)

    def summary_line(self, run_dir: Path | str) -> str:
        c = self.counts
        return (
            f"prepare: {c['patients']} patients, {c['slices']} slices ({c['tumour_slices']} with tumour), "
            f"{c['excluded_slices']} excluded, {c['errors'] + c['warnings']} problems -> {run_dir}"
        )


# ----------------------------------------------------------------------------- reading


def _imread(path: str | Path) -> np.ndarray | None:
    """The decoded file (the inference reader's decoder), or None when it cannot be read."""
    try:
        return decode_image(path)
    except ScanError:
        return None


# ----------------------------------------------------------------------------- folder layout


def _is_patient_dir(path: Path) -> bool:
    return path.is_dir() and PATIENT_RE.match(path.name) is not None


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def find_patients_root(data_dir: Path) -> Path:
    """The folder holding the patient folders: ``data_dir`` or its single sub-folder that does."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DatasetError(f"data folder not found: {data_dir}")
    if not data_dir.is_dir():
        raise DatasetError(f"not a folder: {data_dir}")
    subdirs = _visible_dirs(data_dir)
    if any(_is_patient_dir(d) for d in subdirs):
        return data_dir
    holders = [d for d in subdirs if any(_is_patient_dir(p) for p in _visible_dirs(d))]
    if len(holders) == 1:
        return holders[0]
    if len(holders) > 1:
        names = ", ".join(d.name for d in holders)
        raise DatasetError(f"{data_dir}: several sub-folders hold patient folders ({names}); pass one of them")
    return data_dir


def _is_stray(path: Path) -> bool:
    """Files silently ignored: hidden files (.DS_Store, ._x.tif), non-TIFFs (README.md, Thumbs.db)."""
    return path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in TIFF_SUFFIXES


@dataclass
class _Pair:
    patient_id: str
    index: int
    image: Path
    mask: Path


@dataclass
class _Folder:
    path: Path
    patient_id: str
    case_id: str
    institution: str
    pairs: list[_Pair]
    n_candidates: int  # distinct slice stems seen (for the excluded count)


def _scan_folder(folder: Path, problems: list[Problem]) -> _Folder:
    """Pair images with masks by slice number; naming and pairing defects become problems."""
    pid = folder.name
    match = PATIENT_RE.match(pid)
    if match is None:  # _list_folders passes only folders whose name matches
        raise ValueError(f"{folder}: not a patient folder name (TCGA_<inst>_<id>_<yyyymmdd>)")
    inst = match.group(1)
    try:
        files = sorted(p for p in folder.iterdir() if not _is_stray(p))
    except OSError as exc:  # unreadable folder: reported, the other patients go on
        problems.append(Problem(str(folder), pid, "unreadable_folder", ERROR,
                                f"patient folder cannot be read ({exc.strerror or exc}); skipped"))  # fmt: skip
        return _Folder(folder, pid, pid.rsplit("_", 1)[0], inst, [], 0)
    images: dict[int, list[Path]] = {}
    masks: dict[int, list[Path]] = {}
    stems: set[str] = set()
    for path in files:
        parsed = parse_kaggle_name(path.name)
        stem = re.sub(r"(_mask)?\.tiff?$", "", path.name, flags=re.IGNORECASE)
        stems.add(stem)
        if parsed is None or parsed[0] != pid:
            problems.append(Problem(str(path), pid, "bad_slice_name", ERROR,
                                    f"file name does not parse as {pid}_<n>.tif or {pid}_<n>_mask.tif"))  # fmt: skip
            continue
        (masks if parsed[2] else images).setdefault(parsed[1], []).append(path)
    if not files:
        problems.append(Problem(str(folder), pid, "empty_patient_folder", ERROR, "patient folder holds no TIFF slices"))
    pairs = []
    for index in sorted(set(images) | set(masks)):
        imgs, msks = images.get(index, []), masks.get(index, [])
        if len(imgs) > 1 or len(msks) > 1:
            names = ", ".join(p.name for p in imgs + msks)
            for path in imgs + msks:
                problems.append(Problem(str(path), pid, "duplicate_slice", ERROR,
                                        f"slice number {index} is given by more than one file ({names}); "
                                        "all are excluded"))  # fmt: skip
        elif not msks:
            problems.append(Problem(str(imgs[0]), pid, "image_without_mask", ERROR,
                                    f"no mask {pid}_{index}_mask.tif for this image"))  # fmt: skip
        elif not imgs:
            problems.append(Problem(str(msks[0]), pid, "mask_without_image", ERROR,
                                    f"no image {pid}_{index}.tif for this mask"))  # fmt: skip
        else:
            pairs.append(_Pair(pid, index, imgs[0], msks[0]))
    case_id = pid.rsplit("_", 1)[0]
    return _Folder(folder, pid, case_id, inst, pairs, len(stems))


def _list_folders(root: Path, problems: list[Problem]) -> list[_Folder]:
    folders = []
    for d in _visible_dirs(root):
        if PATIENT_RE.match(d.name) is None:
            problems.append(Problem(str(d), "", "bad_patient_folder_name", ERROR,
                                    "folder name does not follow TCGA_<inst>_<id>_<yyyymmdd>; skipped"))  # fmt: skip
            continue
        folders.append(_scan_folder(d, problems))
    return folders


# ----------------------------------------------------------------------------- slice checks


def _mask_values_ok(mask: np.ndarray) -> tuple[bool, list[int]]:
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).tolist()
    return set(present) <= {0, 255} or set(present) <= {0, 1}, present


def inspect_pair(pair: _Pair) -> tuple[dict | None, list[Problem]]:
    """Decode image and mask and check them; a manifest row, or None and the problems."""
    pid = pair.patient_id
    image, mask = _imread(pair.image), _imread(pair.mask)
    problems = []
    if image is None:
        problems.append(Problem(str(pair.image), pid, "unreadable_image", ERROR,
                                "image cannot be decoded (truncated, corrupt or not a TIFF)"))  # fmt: skip
    elif image.dtype.kind == "f" and not np.isfinite(image).all():
        count = int(np.count_nonzero(~np.isfinite(image)))
        problems.append(Problem(str(pair.image), pid, "non_finite_image", ERROR,
                                f"image has {count} NaN/inf pixel value(s); the slice is excluded"))  # fmt: skip
    elif image.dtype != np.uint8:
        problems.append(Problem(str(pair.image), pid, "image_dtype", ERROR, f"image is {image.dtype}, expected uint8"))
    elif image.ndim != 3 or image.shape[2] != 3:
        channels = 1 if image.ndim == 2 else image.shape[2]
        problems.append(Problem(str(pair.image), pid, "image_channels", ERROR,
                                f"image has {channels} channel(s), expected 3"))  # fmt: skip
    if mask is None:
        problems.append(Problem(str(pair.mask), pid, "unreadable_mask", ERROR,
                                "mask cannot be decoded (truncated, corrupt or not a TIFF)"))  # fmt: skip
    elif mask.dtype != np.uint8:
        problems.append(Problem(str(pair.mask), pid, "mask_dtype", ERROR, f"mask is {mask.dtype}, expected uint8"))
    elif mask.ndim != 2:
        problems.append(Problem(str(pair.mask), pid, "mask_channels", ERROR,
                                f"mask has {mask.shape[2]} channels, expected 1"))  # fmt: skip
    else:
        ok, present = _mask_values_ok(mask)
        if not ok:
            shown = ", ".join(map(str, present[:8])) + (", ..." if len(present) > 8 else "")
            problems.append(Problem(str(pair.mask), pid, "mask_values", ERROR,
                                    f"mask values must be 0/255 or 0/1, found {shown}"))  # fmt: skip
    if problems or image is None or mask is None:  # an undecodable image or mask is a problem
        return None, problems
    if image.shape[:2] != mask.shape[:2]:
        return None, [Problem(str(pair.mask), pid, "size_mismatch", ERROR,
                              f"mask is {mask.shape[0]}x{mask.shape[1]} but image is "
                              f"{image.shape[0]}x{image.shape[1]}")]  # fmt: skip
    tumour = int(np.count_nonzero(mask))
    row = {
        "slice_index": pair.index,
        "image_path": str(pair.image),
        "mask_path": str(pair.mask),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "channels": int(image.shape[2]),
        "tumour_pixels": tumour,
        "has_tumour": tumour > 0,
    }
    return row, []


def _inspect_all(pairs: list[_Pair], workers: int, progress: bool) -> list[tuple[dict | None, list[Problem]]]:
    """Decode every pair (thread pool: cv2 releases the GIL while decoding); input order kept."""
    bar = tqdm(total=len(pairs), desc="prepare", unit="slice", disable=None if progress else True)
    results = []
    with quiet_opencv():
        if workers <= 1:
            for pair in pairs:
                results.append(inspect_pair(pair))
                bar.update()
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(inspect_pair, pairs, chunksize=1):
                    results.append(result)
                    bar.update()
    bar.close()
    return results


# ----------------------------------------------------------------------------- data.csv


def find_data_csv(root: Path, data_dir: Path) -> Path | None:
    for folder in (root, data_dir):
        if (folder / DATA_CSV).is_file():
            return folder / DATA_CSV
    return None


def read_data_csv(path: Path | None, problems: list[Problem], expected: Path) -> pd.DataFrame | None:
    """The clinical table with every value as the exact text of the file ('' for blanks)."""
    if path is None:
        problems.append(Problem(str(expected), "", "data_csv_missing", WARNING,
                                "no data.csv found; patients.csv has empty clinical columns"))  # fmt: skip
        return None
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        problems.append(Problem(str(path), "", "data_csv_invalid", WARNING, f"data.csv cannot be read: {exc}"))
        return None
    if "Patient" not in table.columns:
        problems.append(Problem(str(path), "", "data_csv_invalid", WARNING, "data.csv has no 'Patient' column"))
        return None
    dup = table["Patient"].duplicated(keep="first")
    for case_id in table.loc[dup, "Patient"]:
        problems.append(Problem(str(path), "", "duplicate_data_csv_row", WARNING,
                                f"data.csv lists {case_id} more than once; the first row is used"))  # fmt: skip
    return table


# ----------------------------------------------------------------------------- assembling


def _patients_table(manifest: pd.DataFrame, folders: list[_Folder], clinical: pd.DataFrame | None) -> pd.DataFrame:
    columns = list(clinical.columns) if clinical is not None else list(DATA_CSV_COLUMNS)
    rows = {}
    if clinical is not None:
        rows = {r["Patient"]: r for r in clinical.drop_duplicates("Patient").to_dict("records")}
    stats = manifest.groupby("patient_id", sort=False).agg(
        n_slices=("slice_index", "size"), n_tumour=("has_tumour", "sum"), pixels=("tumour_pixels", "sum")
    )
    out = []
    for f in folders:
        if f.patient_id not in stats.index:
            continue
        s = stats.loc[f.patient_id]
        row = {
            "patient_id": f.patient_id,
            "case_id": f.case_id,
            "institution": f.institution,
            "n_slices": int(s["n_slices"]),
            "n_tumour_slices": int(s["n_tumour"]),
            "tumour_pixels_total": int(s["pixels"]),
        }
        clinical_row = rows.get(f.case_id, {})
        for col in columns:
            row[col if col not in row else f"data_{col}"] = clinical_row.get(col, "")
        out.append(row)
    names = PATIENT_STATS + [c if c not in PATIENT_STATS else f"data_{c}" for c in columns]
    return pd.DataFrame(out, columns=names)


def scan_dataset(data_dir: Path, workers: int = 2, progress: bool = True) -> PrepareResult:
    """Scan and check a dataset folder; nothing is written. DatasetError if it has no usable slice."""
    data_dir = Path(data_dir).absolute()
    root = find_patients_root(data_dir)
    problems: list[Problem] = []
    folders = _list_folders(root, problems)
    pairs = [p for f in folders for p in f.pairs]
    results = _inspect_all(pairs, workers, progress)
    rows, folder_of = [], {f.patient_id: f for f in folders}
    for pair, (row, pair_problems) in zip(pairs, results):
        problems.extend(pair_problems)
        if row is not None:
            f = folder_of[pair.patient_id]
            rows.append({"patient_id": f.patient_id, "case_id": f.case_id, "institution": f.institution, **row})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    with_slices = set(manifest["patient_id"])
    for f in folders:
        if f.n_candidates and f.patient_id not in with_slices:
            problems.append(Problem(str(f.path), f.patient_id, "no_valid_slices", ERROR,
                                    "every slice of this patient was excluded; patient skipped"))  # fmt: skip
    csv_path = find_data_csv(root, data_dir)
    clinical = read_data_csv(csv_path, problems, expected=root / DATA_CSV)
    counts = _count_and_check_clinical(manifest, folders, clinical, csv_path, problems)
    patients = _patients_table(manifest, folders, clinical)
    result = PrepareResult(manifest, patients, problems, counts, data_dir, root, csv_path)
    if manifest.empty:
        errors = [p for p in problems if p.severity == ERROR]
        raise DatasetError(f"no usable slices found in {data_dir} ({len(folders)} patient folders, "
                           f"{len(errors)} errors)", errors)  # fmt: skip
    return result


def _count_and_check_clinical(manifest: pd.DataFrame, folders: list[_Folder], clinical: pd.DataFrame | None,
                              csv_path: Path | None, problems: list[Problem]) -> dict[str, int]:  # fmt: skip
    """Cross-check folders against data.csv (adds problems), then count everything."""
    present = set(manifest["patient_id"])
    with_slices = [f for f in folders if f.patient_id in present]
    no_row = len(with_slices) if clinical is None else 0
    without_folder = 0
    if clinical is not None:
        listed = set(clinical["Patient"])
        for f in with_slices:
            if f.case_id not in listed:
                no_row += 1
                reason = f"data.csv has no row for {f.case_id}; clinical columns left empty"
                problems.append(Problem(str(f.path), f.patient_id, "no_data_csv_row", WARNING, reason))
        folder_cases = {f.case_id for f in folders}
        for case_id in clinical["Patient"].drop_duplicates():
            if case_id not in folder_cases:
                without_folder += 1
                reason = f"data.csv lists {case_id} but no patient folder exists (normal for a subset)"
                problems.append(Problem(str(csv_path), case_id, "data_csv_row_without_folder", INFO, reason))
    excluded = sum(f.n_candidates for f in folders) - len(manifest)
    severities = [p.severity for p in problems]
    return {
        "patients": int(manifest["patient_id"].nunique()),
        "slices": len(manifest),
        "tumour_slices": int(manifest["has_tumour"].sum()),
        "excluded_slices": max(excluded, 0),
        "patient_folders": len(folders),
        "data_csv_rows": 0 if clinical is None else len(clinical),
        "data_csv_patients_without_folder": without_folder,
        "folders_without_data_csv_row": no_row,
        "errors": severities.count(ERROR),
        "warnings": severities.count(WARNING),
        "info": severities.count(INFO),
    }


def _report(result: PrepareResult, strict: bool) -> dict:
    """The JSON report: inputs, counts and every problem; no run directory or timing (deterministic)."""
    return {
        "data_dir": str(result.data_dir),
        "patients_root": str(result.patients_root),
        "data_csv": None if result.data_csv is None else str(result.data_csv),
        "strict": strict,
        "status": "failed_strict" if result.strict_failed else "ok",
        "counts": result.counts,
        "problems": [asdict(p) for p in result.problems],
    }


def prepare_dataset(data_dir: Path, run_dir: Path, cfg: Config, progress: bool = True) -> PrepareResult:
    """Scan ``data_dir`` and write RUN/manifest.csv, RUN/patients.csv and RUN/prepare_report.json.

    Raises DatasetError if the folder is missing or has no usable slice, and
    StrictPrepareError (after writing the report) when ``cfg.prepare.strict`` and any
    error or warning was found.
    """
    run_dir = Path(run_dir)
    result = scan_dataset(data_dir, workers=cfg.prepare.workers, progress=progress)
    strict = cfg.prepare.strict
    failing = result.counts["errors"] + result.counts["warnings"]
    result.strict_failed = strict and failing > 0
    run_dir.mkdir(parents=True, exist_ok=True)
    if result.strict_failed:
        for name in (MANIFEST_FILE, PATIENTS_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(run_dir / name)
    else:
        atomic_write_csv(run_dir / MANIFEST_FILE, result.manifest)
        atomic_write_csv(run_dir / PATIENTS_FILE, result.patients)
        result.written += [run_dir / MANIFEST_FILE, run_dir / PATIENTS_FILE]
    atomic_write_json(run_dir / REPORT_FILE, _report(result, strict))
    result.written.append(run_dir / REPORT_FILE)
    if result.strict_failed:
        raise StrictPrepareError(
            f"--strict: {result.counts['errors']} error(s) and {result.counts['warnings']} warning(s) in "
            f"{result.data_dir}; manifest not written (see {run_dir / REPORT_FILE})",
            result,
        )
    return result
