"""How visible each patient's tumour is on each sequence: which tumours FLAIR alone cannot show.

    python benchmarks/lesion_contrast.py --run-dir RUN [--ring 7] [--min-pixels 50]
        [--compare RUN/eval/cv RUN/eval/cv_flair_only] [--out contrast.csv]

For every patient of a prepared run (its ``manifest.csv``: the slices prepare found and
checked), over the slices with at least ``--min-pixels`` tumour pixels: the median intensity inside the
tumour divided by the median of a ring ``--ring`` pixels wide around it, per sequence
(pre-contrast, FLAIR, post-contrast). LGG tumours are bright on FLAIR (the median patient
about 1.4 on lgg-dev); a ratio near 1 on FLAIR and well below 1 on the T1 sequences is a
tumour the model can only find with them (docs/accuracy.md, seventh session). With
``--compare ALL FLAIR_ONLY`` (two evaluation folders of the same patients: 3 sequences and
``--input-sequences flair_only``) each patient's Dice with both inputs and the gap are
listed beside its contrast, sorted by the gap.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mri_seg.data.manifest import read_manifest  # noqa: E402
from mri_seg.io.images import read_mask, read_slice  # noqa: E402
from mri_seg.io.sequences import KAGGLE_OPENCV_ORDER  # noqa: E402
from mri_seg.utils.atomic import atomic_write_csv  # noqa: E402


def tumour_contrast(slices: pd.DataFrame, ring: int = 7) -> dict[str, float]:
    """Per sequence: median inside the tumour / median of the ring around it, over ``slices``
    (manifest rows: ``image_path``, ``mask_path``)."""
    inside: list[np.ndarray] = []
    around: list[np.ndarray] = []
    kernel = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
    for image_path, mask_path in zip(slices["image_path"], slices["mask_path"]):
        tumour = read_mask(mask_path) > 0
        image = read_slice(image_path)
        band = (cv2.dilate(tumour.astype(np.uint8), kernel) > 0) & ~tumour
        inside.append(image[tumour])
        around.append(image[band])
    ins, out = np.concatenate(inside), np.concatenate(around)
    return {
        name: float(np.median(ins[:, c])) / max(1.0, float(np.median(out[:, c])))
        for c, name in enumerate(KAGGLE_OPENCV_ORDER)
    }


def contrast_table(run_dir: Path, ring: int = 7, min_pixels: int = 50) -> pd.DataFrame:
    """One row per patient with a tumour slice of ``min_pixels``: ``patient_id`` and ``pre``, ``flair``, ``post``."""
    manifest = read_manifest(run_dir)
    tumour_slices = manifest[manifest["tumour_pixels"] >= min_pixels]
    rows = [
        {"patient_id": pid, **tumour_contrast(slices, ring)}
        for pid, slices in tumour_slices.groupby("patient_id", sort=True)
    ]
    return pd.DataFrame(rows, columns=["patient_id", "pre", "flair", "post"])


def with_dice(table: pd.DataFrame, all_dir: Path, flair_dir: Path, column: str = "dice") -> pd.DataFrame:
    """``table`` joined with each patient's Dice from both evaluations and ``gap`` (all - FLAIR-only)."""

    def dice(folder: Path) -> pd.Series:
        df = pd.read_csv(folder / "patients.csv")
        return df.set_index("patient_id")[column]

    out = table.set_index("patient_id")
    out["dice_all"], out["dice_flair_only"] = dice(all_dir), dice(flair_dir)
    out = out.dropna(subset=["dice_all", "dice_flair_only"])
    out["gap"] = out["dice_all"] - out["dice_flair_only"]
    return out.sort_values("gap", ascending=False).reset_index()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", type=Path, required=True, help="a prepared run (its manifest.csv)")
    p.add_argument("--ring", type=int, default=7, help="width in pixels of the ring around the tumour")
    p.add_argument("--min-pixels", type=int, default=50, help="tumour slices with fewer pixels are left out")
    p.add_argument("--compare", type=Path, nargs=2, metavar=("ALL", "FLAIR_ONLY"), default=None,
                   help="two evaluation folders (patients.csv): 3 sequences and FLAIR-only")  # fmt: skip
    p.add_argument("--column", default="dice", help="the patients.csv column to compare (e.g. dice_at_0.3)")
    p.add_argument("--out", type=Path, default=None, help="write the table as CSV")
    args = p.parse_args(argv)
    table = contrast_table(args.run_dir, args.ring, args.min_pixels)
    if table.empty:
        print(f"{args.run_dir}: no patient with a tumour slice of >= {args.min_pixels} pixels", file=sys.stderr)
        return 1
    print(f"{len(table)} patients; median tumour / ring ratio: pre {table['pre'].median():.2f}, "
          f"FLAIR {table['flair'].median():.2f}, post {table['post'].median():.2f}")  # fmt: skip
    if args.compare:
        table = with_dice(table, *args.compare, column=args.column)
        print(f"FLAIR-only gap: mean {table['gap'].mean():.3f}, median {table['gap'].median():.3f}")
    else:
        table = table.sort_values("flair").reset_index(drop=True)
    with pd.option_context("display.width", 160, "display.max_rows", 200):
        print(table.round(3).to_string(index=False))
    if args.out:
        atomic_write_csv(args.out, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
