"""Issue 10's measurement: the same patients stored as NIfTI in several ways, segmented with one checkpoint.

    python benchmarks/bench_nifti_layout.py --data-dir KAGGLE_3M --checkpoint CKPT [--patients P1 P2 ...]

Each patient's TIFF slices are stacked into a volume (with the affine of the slices' own
orientation) and stored three ways: in the slices' voxel order, RAS-canonical and
sagittal-first; as a 1-sequence FLAIR volume and as a 4D volume; plus the 4D volume in the
natural pre/FLAIR/post order. Prints the mean patient Dice (``--with-truth``) with
``infer.nifti_axis: auto`` and with the old index-space slicing (``infer.nifti_axis: 2``), and
for the natural order with and without ``infer.sequences=[pre,flair,post]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.orientations import axcodes2ornt, ornt_transform

from mri_seg.io.kaggle import parse_kaggle_name
from mri_seg.io.orientation import STACKED_SLICES_AXCODES, axcodes_affine
from mri_seg.pipelines.infer import main as infer

STORAGES = {"tiff_like": STACKED_SLICES_AXCODES, "ras": ("R", "A", "S"), "sagittal_first": ("I", "P", "R")}
VOXEL_MM = (0.94, 0.94, 3.0)  # a typical lgg-dev in-plane size and slice spacing


def stored(data: np.ndarray, axcodes: tuple[str, ...]) -> nib.Nifti1Image:
    image = nib.Nifti1Image(data, axcodes_affine(STACKED_SLICES_AXCODES, VOXEL_MM))
    return image.as_reoriented(ornt_transform(axcodes2ornt(STACKED_SLICES_AXCODES), axcodes2ornt(axcodes)))


def patient_volume(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    files = [f for f in folder.glob("*.tif") if (p := parse_kaggle_name(f.name)) and not p[2]]
    files.sort(key=lambda f: parse_kaggle_name(f.name)[1])
    volume = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files], axis=2)
    truth = np.stack([cv2.imread(str(f.with_name(f.stem + "_mask.tif")), 0) > 0 for f in files], axis=2)
    return volume, truth.astype(np.uint8)


def write_inputs(root: Path, folders: list[Path]) -> None:
    for folder in folders:
        volume, truth = patient_volume(folder)
        kinds = {"flair3d": np.ascontiguousarray(volume[..., 1]), "seq4d": volume}
        for kind, data in kinds.items():
            for name, axcodes in STORAGES.items():
                out = root / kind / name
                out.mkdir(parents=True, exist_ok=True)
                nib.save(stored(data, axcodes), str(out / f"{folder.name}.nii.gz"))
                nib.save(stored(truth, axcodes), str(out / f"{folder.name}_mask.nii.gz"))
        (root / "natural").mkdir(exist_ok=True)
        nib.save(stored(np.ascontiguousarray(volume[..., ::-1]), ("R", "A", "S")), str(root / "natural" / f"{folder.name}.nii.gz"))
        nib.save(stored(truth, ("R", "A", "S")), str(root / "natural" / f"{folder.name}_mask.nii.gz"))


def mean_dice(checkpoint: Path, inp: Path, out: Path, *extra: str) -> pd.Series:
    with contextlib.redirect_stderr(io.StringIO()):  # the per-scan warnings (1 channel replicated) are expected
        infer(["--checkpoint", str(checkpoint), "--input", str(inp), "--output", str(out), "--with-truth",
               "--no-progress", "--device", "cpu", *extra])  # fmt: skip
    table = pd.read_csv(out / "predictions.csv")
    return table.groupby(table["path"].str.split("/").str[0])["dice"].mean()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="kaggle_3m folder")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--patients", nargs="*", default=None, help="patient folder names (default: the first 5)")
    args = p.parse_args()
    folders = sorted(f for f in args.data_dir.iterdir() if f.is_dir())
    folders = [f for f in folders if f.name in args.patients] if args.patients else folders[:5]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_inputs(tmp / "in", folders)
        for mode, extra in {"auto": (), "axis 2 (index space)": ("--set", "infer.nifti_axis=2")}.items():
            for kind in ("flair3d", "seq4d"):
                dice = mean_dice(args.checkpoint, tmp / "in" / kind, tmp / "out" / mode / kind, *extra)
                rows += [(mode, kind, storage, round(value, 3)) for storage, value in dice.items()]
        for label, extra in {"natural, declared": ("--set", "infer.sequences=[pre,flair,post]"),
                             "natural, default order": ()}.items():  # fmt: skip
            dice = mean_dice(args.checkpoint, tmp / "in" / "natural", tmp / "out" / label, *extra)
            rows.append(("auto", label, "ras", round(float(dice.mean()), 3)))
    print(f"{len(folders)} patients: {', '.join(f.name for f in folders)}")
    print(pd.DataFrame(rows, columns=["nifti_axis", "input", "storage", "mean patient Dice"]).to_string(index=False))


if __name__ == "__main__":
    main()
