"""Synthetic LGG-like data in the exact Kaggle layout, for tests, demos and CI.

Why: the real dataset is large and licensed for research only; a seeded generator gives
every stage realistic input (same folder/file names, TIFF format, channel order, data.csv)
in seconds, on any machine.

Each patient is a stack of axial slices: a head-like ellipse whose cross-section shrinks
towards the edge slices, brain texture and noise in three channels with different
contrasts (pre-contrast, FLAIR, post-contrast, in the file order of the real data), and
an irregular tumour blob that is bright in FLAIR (channel 1). The tumour spans a
contiguous run of slices and its cross-section grows then shrinks; edge slices never
hold tumour. Masks are 0/255. Same seed -> byte-identical files.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from mri_seg.utils.atomic import atomic_write_csv, atomic_write_text

INSTITUTIONS = ("CS", "DU", "FG", "HT")
DATA_CSV_COLUMNS = [
    "Patient", "RNASeqCluster", "MethylationCluster", "miRNACluster", "CNCluster", "RPPACluster",
    "OncosignCluster", "COCCluster", "histological_type", "neoplasm_histologic_grade",
    "tumor_tissue_site", "laterality", "tumor_location", "gender", "age_at_initial_pathologic",
    "race", "ethnicity", "death01",
]  # fmt: skip
# Upper bound (inclusive) of each small-integer clinical column; age and death01 handled apart.
_CLINICAL_MAX = {
    "RNASeqCluster": 4, "MethylationCluster": 5, "miRNACluster": 4, "CNCluster": 3, "RPPACluster": 4,
    "OncosignCluster": 3, "COCCluster": 3, "histological_type": 3, "neoplasm_histologic_grade": 2,
    "tumor_tissue_site": 1, "laterality": 3, "tumor_location": 6, "gender": 2, "race": 3, "ethnicity": 2,
}  # fmt: skip
_BLANK_P = 0.08  # fraction of blank clinical cells, like the real file
_TIFF_PARAMS = [cv2.IMWRITE_TIFF_COMPRESSION, 1]  # uncompressed, like the real files


@dataclass(frozen=True)
class _Tumour:
    first: int  # first slice (0-based) holding tumour
    last: int  # last slice, inclusive
    centre: tuple[float, float]  # (row, col) at the middle slice, pixels
    drift: tuple[float, float]  # centre shift per slice, pixels
    radius: float  # largest mean radius, pixels
    aspect: float  # minor/major axis ratio
    angle: float  # orientation, radians
    harmonics: tuple[tuple[int, float, float], ...]  # (k, amplitude, phase) radial wobble
    contrast: float  # FLAIR brightening, grey levels


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std low-frequency texture (blurred white noise)."""
    field: np.ndarray = rng.standard_normal((size, size)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return (field - field.mean()) / (field.std() + 1e-6)


def _blob(size: int, centre: tuple[float, float], radius: float, aspect: float, angle: float,
          harmonics: tuple[tuple[int, float, float], ...]) -> np.ndarray:  # fmt: skip
    """Boolean irregular ellipse: an ellipse whose radius wobbles with low angular harmonics.

    Computed only inside the blob's bounding box (fast); the rest of the slice is False.
    """
    out = np.zeros((size, size), dtype=bool)
    reach = radius * (1 + sum(a for _, a, _ in harmonics)) + 1
    r0, r1 = max(int(centre[0] - reach), 0), min(int(centre[0] + reach) + 2, size)
    c0, c1 = max(int(centre[1] - reach), 0), min(int(centre[1] + reach) + 2, size)
    if r0 >= r1 or c0 >= c1:
        return out
    rows, cols = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dy, dx = rows - centre[0], cols - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = dx * cos + dy * sin
    v = (-dx * sin + dy * cos) / aspect
    theta = np.arctan2(v, u)
    wobble = np.ones_like(theta)
    for k, amp, phase in harmonics:
        wobble += amp * np.cos(k * theta + phase)
    out[r0:r1, c0:c1] = np.hypot(u, v) <= radius * wobble
    return out


def _random_tumour(rng: np.random.Generator, n_slices: int, size: int, head: tuple[float, float, float, float]
                   ) -> _Tumour:  # fmt: skip
    cy, cx, ay, ax = head
    length = int(rng.integers(max(3, int(0.25 * n_slices)), max(4, int(0.6 * n_slices)) + 1))
    length = min(length, n_slices - 2)
    first = int(rng.integers(1, n_slices - length))  # keeps slice 0 and the last slice tumour-free
    angle_pos = rng.uniform(0, 2 * np.pi)
    frac = np.sqrt(rng.uniform(0.0, 1.0)) * 0.55  # stay well inside the head
    centre = (cy + frac * ay * np.sin(angle_pos), cx + frac * ax * np.cos(angle_pos))
    harmonics = tuple((k, float(rng.uniform(0.03, 0.16)), float(rng.uniform(0, 2 * np.pi))) for k in (2, 3, 5))
    return _Tumour(
        first=first,
        last=first + length - 1,
        centre=centre,
        drift=(float(rng.normal(0, 0.015 * size / 8)), float(rng.normal(0, 0.015 * size / 8))),
        radius=float(rng.uniform(0.045, 0.13) * size),
        aspect=float(rng.uniform(0.55, 1.0)),
        angle=float(rng.uniform(0, np.pi)),
        harmonics=harmonics,
        contrast=float(rng.uniform(30.0, 60.0)),
    )


def _tumour_mask(t: _Tumour, z: int, size: int) -> np.ndarray:
    if not t.first <= z <= t.last:
        return np.zeros((size, size), dtype=bool)
    span = t.last - t.first + 1
    phase = (z - t.first + 0.5) / span  # (0, 1): grows then shrinks
    radius = t.radius * (0.25 + 0.75 * np.sin(np.pi * phase))
    mid = (t.first + t.last) / 2.0
    centre = (t.centre[0] + t.drift[0] * (z - mid), t.centre[1] + t.drift[1] * (z - mid))
    return _blob(size, centre, radius, t.aspect, t.angle, t.harmonics)


def _make_patient(rng: np.random.Generator, n_slices: int, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images (H x W x 3 uint8, channels pre/FLAIR/post) and masks (H x W uint8 0/255)."""
    cy = size / 2 + rng.normal(0, 0.02 * size)
    cx = size / 2 + rng.normal(0, 0.02 * size)
    ay, ax = rng.uniform(0.40, 0.46) * size, rng.uniform(0.32, 0.39) * size
    tilt = rng.uniform(-0.15, 0.15)
    tumour = _random_tumour(rng, n_slices, size, (cy, cx, ay, ax))
    base = np.array([rng.uniform(70, 100), rng.uniform(55, 80), rng.uniform(80, 110)], dtype=np.float32)
    tissue = _smooth_noise(rng, size, sigma=size / 24)  # patient-wide anatomy-like texture
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = rows - cy, cols - cx
    u = dx * np.cos(tilt) + dy * np.sin(tilt)
    v = -dx * np.sin(tilt) + dy * np.cos(tilt)
    radial = np.hypot(u / ax, v / ay)  # 1.0 on the head outline of the middle slice
    # Small non-tumour FLAIR hyperintensities make the task less trivial.
    spots = []
    for _ in range(int(rng.integers(0, 4))):
        sy, sx = rng.uniform(0.3, 0.7, size=2) * size
        disk = np.hypot(rows - sy, cols - sx) <= rng.uniform(0.01, 0.025) * size
        spots.append((int(rng.integers(0, n_slices)), disk.astype(np.float32) * 25.0))
    blur_sigma = max(size / 160, 0.8)
    # Per-slice texture and noise are random windows of two larger per-patient fields:
    # as random-looking as fresh draws per slice, at a fraction of the cost.
    slice_tex_bank = _smooth_noise(rng, 2 * size, sigma=size / 64)
    noise_bank = rng.standard_normal((3, 2 * size, 2 * size), dtype=np.float32) * np.float32(6.0)
    offsets = rng.integers(0, size, size=(n_slices, 4))
    images, masks = [], []
    for z in range(n_slices):
        zr = (2.0 * z + 1) / n_slices - 1.0  # -1..1 through the head
        shrink = np.float32(np.sqrt(max(1.0 - 0.85 * zr * zr, 0.05)))
        head = radial <= shrink
        brain = radial <= 0.9 * shrink
        ty, tx, ny, nx = offsets[z]
        tex = 0.7 * tissue + 0.3 * slice_tex_bank[ty : ty + size, tx : tx + size]
        tumour_mask = _tumour_mask(tumour, z, size) & brain
        soft = cv2.GaussianBlur(tumour_mask.astype(np.float32), (0, 0), sigmaX=blur_sigma)
        flair = base[1] + 10 * tex + tumour.contrast * soft * (1 + 0.25 * tex)
        for sz, disk in spots:
            if abs(z - sz) <= 2:
                flair = flair + disk
        noise = noise_bank[:, ny : ny + size, nx : nx + size]
        channels = (
            (base[0] + 12 * tex - 12 * soft, 150.0),  # pre-contrast: tumour slightly dark
            (flair, 60.0),  # FLAIR: tumour bright
            (base[2] + 14 * tex + 6 * soft * tex, 170.0),  # post-contrast: heterogeneous
        )
        img = np.zeros((size, size, 3), dtype=np.uint8)
        for c, (brain_val, skull_val) in enumerate(channels):
            channel = np.where(brain, brain_val, np.float32(skull_val)) + noise[c]
            np.clip(channel, 1, 255, out=channel)
            img[:, :, c] = np.where(head, np.rint(channel), 0).astype(np.uint8)
        images.append(img)
        masks.append(tumour_mask.astype(np.uint8) * 255)
    return images, masks


def _clinical_row(rng: np.random.Generator, case_id: str) -> dict[str, str]:
    row = {"Patient": case_id}
    for col in DATA_CSV_COLUMNS[1:]:
        if col == "age_at_initial_pathologic":
            value = str(int(rng.integers(20, 76)))
        elif col == "death01":
            value = str(int(rng.integers(0, 2)))
        else:
            value = str(int(rng.integers(1, _CLINICAL_MAX[col] + 1)))
        row[col] = "" if rng.random() < _BLANK_P else value
    return row


def _patient_ids(rng: np.random.Generator, n: int) -> list[tuple[str, str, str]]:
    """(institution, 4-digit id, yyyymmdd) per patient; ids unique."""
    numbers = rng.choice(np.arange(1000, 10000), size=n, replace=False)
    start = _dt.date(1995, 1, 1)
    out = []
    for number in numbers:
        inst = INSTITUTIONS[int(rng.integers(0, len(INSTITUTIONS)))]
        date = start + _dt.timedelta(days=int(rng.integers(0, 365 * 11)))
        out.append((inst, f"{int(number):04d}", date.strftime("%Y%m%d")))
    return out


def write_slice_tiff(path: Path, array: np.ndarray) -> None:
    """Write a slice as TIFF with channels in file order (cv2 writes BGR, so reverse)."""
    data = array[:, :, ::-1] if array.ndim == 3 and array.shape[2] == 3 else array
    ok, buf = cv2.imencode(".tif", np.ascontiguousarray(data), _TIFF_PARAMS)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def generate_dataset(out_dir: Path, n_patients: int, seed: int = 0, min_slices: int = 20, max_slices: int = 60,
                     size: int = 256) -> Path:  # fmt: skip
    """Write ``n_patients`` synthetic patients plus ``data.csv`` into ``out_dir``; returns it.

    Each patient folder is written under a temporary name and renamed into place, so an
    interrupted run never leaves a half-written patient (an existing one is replaced).
    """
    if n_patients < 1:
        raise ValueError("n_patients must be >= 1")
    if not 3 <= min_slices <= max_slices:
        raise ValueError(f"need 3 <= min_slices <= max_slices, got {min_slices}, {max_slices}")
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(seed)
    ids_rng, *patient_seeds = [np.random.default_rng(s) for s in root.spawn(n_patients + 1)]
    rows = []
    for (inst, number, date), rng in zip(_patient_ids(ids_rng, n_patients), patient_seeds):
        case_id = f"TCGA_{inst}_{number}"
        patient_id = f"{case_id}_{date}"
        n_slices = int(rng.integers(min_slices, max_slices + 1))
        images, masks = _make_patient(rng, n_slices, size)
        tmp = Path(tempfile.mkdtemp(prefix=f".{patient_id}.", dir=out_dir))
        try:
            for z, (img, mask) in enumerate(zip(images, masks), start=1):
                write_slice_tiff(tmp / f"{patient_id}_{z}.tif", img)
                write_slice_tiff(tmp / f"{patient_id}_{z}_mask.tif", mask)
            tmp.chmod(0o755)
            if (out_dir / patient_id).exists():
                shutil.rmtree(out_dir / patient_id)
            os.replace(tmp, out_dir / patient_id)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        rows.append(_clinical_row(rng, case_id))
    table = pd.DataFrame(rows, columns=DATA_CSV_COLUMNS).sort_values("Patient", kind="stable")
    atomic_write_csv(out_dir / "data.csv", table)
    atomic_write_text(out_dir / "README.md", f"Synthetic LGG-like dataset (mri_seg), seed={seed}, "
                      f"{n_patients} patients, {size}x{size}. Not real patient data.\n")  # fmt: skip
    return out_dir
