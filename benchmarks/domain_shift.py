"""Domain-shift suite (issue 19): the out-of-fold patients stored the way other sites store scans.

    python benchmarks/domain_shift.py --run-dir RUN --data-dir KAGGLE_3M [--variants ...] [--out CSV] [--set k=v]

RUN is a cross-validated run (``train --all-folds``); every train+val patient is segmented
by the fold model that never saw it, through the ``infer`` stage (NIfTI reading,
orientation, the deliverable's post-processing and flip TTA, the threshold cv chose), once
per variant:

* ``nifti``: the TIFF slices as one 4D NIfTI volume in RAS (0.94 x 0.94 x 3 mm voxels):
  the reference, which should equal the out-of-fold figure of ``cv``;
* ``skull_stripped``: voxels outside a brain mask derived from the volume (Otsu on FLAIR,
  morphology, largest component, holes filled per slice, 2-voxel erosion) set to 0 (a
  warning names any patient whose tumour the mask cuts away);
* ``resampled_1mm``: slices resampled from 3 mm to 1 mm apart (linear; the mask nearest),
  so the 2.5D neighbours sit 1 mm apart instead of 3 mm;
* ``zscore_background``: each sequence z-scored over the head, the background a constant
  non-zero value (the volume's minimum), stored as float32;
* ``combined``: skull-stripped, 1 mm slices and z-scored with a constant background together
  (how a BraTS-like collection arrives).

Prints each variant's mean / median patient Dice next to the reference and writes the
per-patient table (``--out``). Each variant should stay within 0.03 of the reference.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.orientations import axcodes2ornt, ornt_transform
from scipy import ndimage

from mri_seg.evaluation.cross_validation import fold_assignment, fold_checkpoints
from mri_seg.io.kaggle import parse_kaggle_name
from mri_seg.io.orientation import STACKED_SLICES_AXCODES, axcodes_affine
from mri_seg.io.sequences import FLAIR_CHANNEL
from mri_seg.pipelines.infer import main as infer
from mri_seg.rundir import RunDir
from mri_seg.training.checkpoint import shipped_checkpoint

VOXEL_MM = (0.94, 0.94, 3.0)  # a typical lgg-dev in-plane size and slice spacing
Volume = tuple[np.ndarray, np.ndarray, tuple[float, float, float]]  # (H x W x D x C, H x W x D mask, voxel mm)


def patient_volume(folder: Path) -> Volume:
    """The TIFF slices stacked along the last spatial axis: image ``H x W x D x 3`` (OpenCV order), mask."""
    files = [f for f in folder.glob("*.tif") if (p := parse_kaggle_name(f.name)) and not p[2]]
    files.sort(key=lambda f: parse_kaggle_name(f.name)[1])
    image = np.stack([cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files], axis=2)
    mask = np.stack([cv2.imread(str(f.with_name(f.stem + "_mask.tif")), 0) > 0 for f in files], axis=2)
    return image, mask.astype(np.uint8), VOXEL_MM


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head, from the volume itself: Otsu on FLAIR, closed, the largest 3D component, holes
    filled slice by slice (the Kaggle slices' background is noise, not 0). FLAIR, not the
    sequences' maximum: in some patients another sequence has a bright background, and Otsu on
    the maximum then kept only the scalp (TCGA_FG_7637: 72 of 29,529 tumour voxels inside)."""
    flair = image[..., FLAIR_CHANNEL].astype(np.float32)
    scaled = np.rint(255.0 * flair / max(float(flair.max()), 1e-6)).astype(np.uint8).reshape(-1, 1)
    level, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)  # Otsu over the whole volume
    mask = flair > (level / 255.0) * float(flair.max())
    mask = ndimage.binary_closing(mask, structure=np.ones((5, 5, 1)))
    labels, n = ndimage.label(mask)
    if n:
        mask = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    return np.stack([ndimage.binary_fill_holes(mask[..., k]) for k in range(mask.shape[2])], axis=2)


def brain_mask(image: np.ndarray) -> np.ndarray:
    """A derived brain mask: the head eroded by 2 voxels in-plane (drops the scalp rim)."""
    return ndimage.binary_erosion(head_mask(image), structure=np.ones((5, 5, 1)))


def tumour_kept(volume: Volume) -> float:
    """Share of the tumour's voxels inside the derived brain mask: a skull strip that cuts the
    tumour away makes a variant no model can segment (reported, and warned about below 0.95)."""
    image, mask, _ = volume
    truth = mask.astype(bool)
    return float((truth & brain_mask(image)).sum() / truth.sum()) if truth.any() else 1.0


def skull_stripped(volume: Volume) -> Volume:
    image, mask, mm = volume
    return image * brain_mask(image)[..., None].astype(image.dtype), mask, mm


def resampled_1mm(volume: Volume) -> Volume:
    image, mask, mm = volume
    factor = mm[2] / 1.0
    depth = int(round(image.shape[2] * factor))
    zoom = depth / image.shape[2]
    image = ndimage.zoom(image.astype(np.float32), (1, 1, zoom, 1), order=1, mode="nearest")
    mask = ndimage.zoom(mask, (1, 1, zoom), order=0, mode="nearest")
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask, (mm[0], mm[1], mm[2] / zoom)


def zscore_background(volume: Volume) -> Volume:
    image, mask, mm = volume
    head = head_mask(image) & (image.max(axis=-1) > 0)
    out = np.zeros(image.shape, np.float32)
    for c in range(image.shape[-1]):
        values = image[..., c][head].astype(np.float32)
        out[..., c] = (image[..., c] - values.mean()) / max(float(values.std()), 1e-6)
    out[~head] = float(out[head].min()) if head.any() else 0.0
    return out, mask, mm


def combined(volume: Volume) -> Volume:
    return zscore_background(resampled_1mm(skull_stripped(volume)))


STRIPPED = ("skull_stripped", "combined")  # the variants that strip the skull with the derived mask
VARIANTS: dict[str, Callable[[Volume], Volume]] = {
    "nifti": lambda v: v,
    "skull_stripped": skull_stripped,
    "resampled_1mm": resampled_1mm,
    "zscore_background": zscore_background,
    "combined": combined,
}


def save_ras(path: Path, data: np.ndarray, mm: tuple[float, float, float]) -> None:
    image = nib.Nifti1Image(data, axcodes_affine(STACKED_SLICES_AXCODES, mm))
    nib.save(image.as_reoriented(ornt_transform(axcodes2ornt(STACKED_SLICES_AXCODES), axcodes2ornt(("R", "A", "S")))),
             str(path))  # fmt: skip


def deliverable_threshold(run_dir: Path) -> list[str]:
    """``--threshold T`` (and ``--set infer.postprocess.keep_ratio=K``) as cv chose them for the run's
    deliverable (none: the configured ones); each fold's checkpoint file is given alone, so infer
    does not read the choice itself."""
    path = RunDir(run_dir).postprocess_choice
    if not path.is_file():
        return []
    choice = json.loads(path.read_text())
    out = ["--threshold", str(choice["threshold"])]
    if choice.get("keep_ratio") is not None:
        out += ["--set", f"infer.postprocess.keep_ratio={choice['keep_ratio']}"]
    return out


def segment(checkpoint: Path, inp: Path, out: Path, extra: list[str]) -> pd.DataFrame:
    with contextlib.redirect_stderr(io.StringIO()):
        infer(["--checkpoint", str(checkpoint), "--input", str(inp), "--output", str(out), "--with-truth",
               "--no-progress", "--device", "cpu", *extra])  # fmt: skip
    return pd.read_csv(out / "predictions.csv")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True, help="a cross-validated run (fold checkpoints, splits.csv)")
    p.add_argument("--data-dir", type=Path, required=True, help="the kaggle_3m folder the run was prepared from")
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--patients", type=int, default=0, help="only the first N out-of-fold patients (0: all)")
    p.add_argument("--folds", type=int, nargs="+", default=None, help="only these folds' patients (default: all)")
    p.add_argument("--out", type=Path, default=None, help="per-patient CSV (default: RUN/eval/domain_shift.csv)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an infer setting for every variant, e.g. --set infer.background=zero (repeatable)")  # fmt: skip
    args = p.parse_args(argv)
    if args.folds is None:
        checkpoints = fold_checkpoints(args.run_dir)
    else:  # e.g. the folds whose training has finished
        checkpoints = {f: shipped_checkpoint(RunDir(args.run_dir).fold_dir(f), None) for f in args.folds}
    assignment = {pid: f for pid, f in fold_assignment(args.run_dir).items() if f in checkpoints}
    patients = sorted(assignment)[: args.patients or None]
    threshold = deliverable_threshold(args.run_dir) + [a for o in args.overrides for a in ("--set", o)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            for fold, checkpoint in sorted(checkpoints.items()):
                inp = Path(tmp) / variant / f"fold{fold}"
                inp.mkdir(parents=True)
                members = [pid for pid in patients if assignment[pid] == fold]
                for pid in members:
                    original = patient_volume(args.data_dir / pid)
                    if variant in STRIPPED and (kept := tumour_kept(original)) < 0.95:
                        print(f"warning: {pid}: the derived brain mask keeps {kept:.1%} of the tumour ({variant})")
                    image, mask, mm = VARIANTS[variant](original)
                    save_ras(inp / f"{pid}.nii.gz", image, mm)
                    save_ras(inp / f"{pid}_mask.nii.gz", mask, mm)
                if not members:
                    continue
                table = segment(checkpoint, inp, Path(tmp) / "out" / variant / f"fold{fold}", threshold)
                for _, r in table.iterrows():
                    rows.append({"variant": variant, "patient_id": Path(r["path"]).name.split(".")[0], "fold": fold,
                                 "status": r["status"], "dice": r["dice"]})  # fmt: skip
            done = pd.DataFrame([r for r in rows if r["variant"] == variant])
            print(f"{variant:18s} {len(done)} patients  mean {done['dice'].mean():.4f}  median "
                  f"{done['dice'].median():.4f}", flush=True)  # fmt: skip
    frame = pd.DataFrame(rows)
    out = args.out or args.run_dir / "eval" / "domain_shift.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    wide = frame.pivot(index="patient_id", columns="variant", values="dice")
    summary = pd.DataFrame({"mean": wide.mean(), "median": wide.median(), "below 0.5": (wide < 0.5).sum()})
    if "nifti" in wide:
        summary["mean - nifti"] = wide.mean() - wide["nifti"].mean()
    print(summary.round(4).to_string())
    print(f"per patient -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
