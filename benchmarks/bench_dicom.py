"""Issue 20's measurement: an lgg-dev patient as a DICOM study (3 series) vs its TIFF folder.

    python benchmarks/bench_dicom.py --checkpoint CKPT [--checkpoint CKPT2 ...] [--data-dir KAGGLE_3M]
        [--patients P1 P2 ...] [--repeats N]

Each patient's TIFF slices are written as one DICOM study of three axial series (FLAIR =
the green channel, pre-contrast = red, post-contrast = blue; 8-bit, one file per slice,
file names and InstanceNumbers shuffled, 0.94 x 0.94 x 3 mm), then both the TIFF folder
and the DICOM study are segmented by ``infer`` with the same checkpoint(s). Prints, per
patient, the Dice between the two predicted masks (1.000 when the DICOM path feeds the
model exactly the TIFF voxels), the voxels that differ, and the seconds per study (the
``seconds`` column: read, predict, write) for TIFF and DICOM.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dicom_helpers import Study, write_series  # noqa: E402 (tests/ helpers)

from mri_seg.io.dicom import study_name  # noqa: E402
from mri_seg.io.kaggle import parse_kaggle_name  # noqa: E402
from mri_seg.io.orientation import axcodes_affine  # noqa: E402
from mri_seg.pipelines.infer import main as infer  # noqa: E402

VOXEL_MM = (0.94, 0.94, 3.0)
DEFAULT_DATA = Path.home() / ".cache" / "mri_seg" / "lgg-dev" / "kaggle_3m"


def slices(folder: Path) -> list[Path]:
    files = [f for f in folder.glob("*.tif") if (p := parse_kaggle_name(f.name)) and not p[2]]
    return sorted(files, key=lambda f: parse_kaggle_name(f.name)[1])


def write_study(folder: Path, patient: Path, seed: int) -> str:
    """The patient's slices as a 3-series DICOM study; returns the study's output name."""
    stack = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in slices(patient)], axis=2)  # H x W x D x BGR
    affine = axcodes_affine(("L", "P", "S"), VOXEL_MM)  # columns R->L, rows A->P, slices I->S: the Kaggle layout
    study = Study(patient_name="Bench^Patient", patient_id=patient.name[:16])
    for number, (description, channel) in enumerate((("AX T2 FLAIR", 1), ("AX T1 PRE", 2), ("AX T1 +C", 0)), 1):
        volume = np.ascontiguousarray(stack[..., channel].transpose(1, 0, 2))  # X (columns) x Y (rows) x Z
        write_series(folder / f"s{number}", volume, affine, study, number, description, seed=seed + number)
    return study_name(study.study_uid)


def run(checkpoints: list[Path], inp: Path, out: Path) -> tuple[pd.DataFrame, float]:
    args = ["--input", str(inp), "--output", str(out), "--device", "cpu", "--no-progress", "--threshold", "0.5",
            "--set", "infer.report=false"]  # fmt: skip
    for ckpt in checkpoints:
        args += ["--checkpoint", str(ckpt)]
    start = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        infer(args)
    return pd.read_csv(out / "predictions.csv", dtype=str, keep_default_na=False).set_index("path"), time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, action="append", required=True, help="a checkpoint file (repeatable)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="kaggle_3m folder")
    p.add_argument("--patients", nargs="*", default=None, help="patient folder names (default: the first 3)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each (the seconds reported are the fastest)")
    args = p.parse_args()
    folders = sorted(f for f in args.data_dir.iterdir() if f.is_dir())
    folders = [f for f in folders if f.name in args.patients] if args.patients else folders[:3]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoints = []
        for i, ckpt in enumerate(args.checkpoint):  # a copy: a training job may rewrite the file meanwhile
            checkpoints.append(root / f"member{i}.pt")
            shutil.copy(ckpt, checkpoints[-1])
        names = {}
        for i, folder in enumerate(folders):
            shutil.copytree(folder, root / "tiff" / folder.name)
            names[folder.name] = write_study(root / "dicom" / folder.name, folder, seed=10 * i)
        best: dict[str, list[float]] = {"tiff": [], "dicom": []}
        for r in range(args.repeats):
            tiff, t_tiff = run(checkpoints, root / "tiff", root / f"out_tiff{r}")
            dicom, t_dicom = run(checkpoints, root / "dicom", root / f"out_dicom{r}")
            best["tiff"].append(t_tiff)
            best["dicom"].append(t_dicom)
        for folder in folders:
            name = names[folder.name]
            tiff_mask = np.stack([cv2.imread(str(root / "out_tiff0" / folder.name / f"{f.stem}_mask.tif"), 0) > 0
                                  for f in slices(folder)])  # fmt: skip
            nifti = np.asanyarray(nib.load(str(root / "out_dicom0" / f"{name}_mask.nii.gz")).dataobj) > 0
            dicom_mask = nifti.transpose(2, 1, 0)  # X x Y x Z -> slices x rows x columns
            inter, total = np.logical_and(tiff_mask, dicom_mask).sum(), tiff_mask.sum() + dicom_mask.sum()
            dice = 1.0 if total == 0 else 2 * inter / total
            rows.append((folder.name, len(tiff_mask), int(tiff_mask.sum()), f"{dice:.3f}",
                         int((tiff_mask != dicom_mask).sum()), tiff.loc[folder.name, "seconds"],
                         dicom.loc[name, "seconds"], dicom.loc[name, "series"]))  # fmt: skip
    print(f"{len(folders)} patients, {len(checkpoints)} checkpoint(s): {', '.join(map(str, args.checkpoint))}")
    print(pd.DataFrame(rows, columns=["patient", "slices", "tumour px (TIFF)", "Dice TIFF vs DICOM", "voxels differ",
                                      "s/study TIFF", "s/study DICOM", "DICOM series"]).to_string(index=False))  # fmt: skip
    print(f"whole infer command (discovery, model load, all patients), fastest of {args.repeats}: "
          f"TIFF {min(best['tiff']):.1f} s, DICOM {min(best['dicom']):.1f} s")


if __name__ == "__main__":
    main()
