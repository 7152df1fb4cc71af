"""How visible each patient's tumour is on each sequence: which tumours FLAIR alone cannot show.

    python benchmarks/lesion_contrast.py --data-dir kaggle_3m [--ring 7] [--min-pixels 50]
        [--compare RUN/eval/cv RUN/eval/cv_flair_only] [--out contrast.csv]

For every patient folder (Kaggle layout: ``<case>_<n>.tif`` + ``<case>_<n>_mask.tif``), over
the slices with at least ``--min-pixels`` tumour pixels: the median intensity inside the
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

from mri_seg.io.images import read_mask, read_slice  # noqa: E402
from mri_seg.io.sequences import KAGGLE_OPENCV_ORDER  # noqa: E402


def slice_pairs(patient_dir: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths of a Kaggle patient folder."""
    pairs = []
    for mask in sorted(patient_dir.glob("*_mask.tif")):
        image = mask.with_name(mask.name.replace("_mask.tif", ".tif"))
        if image.is_file():
            pairs.append((image, mask))
    return pairs


def tumour_contrast(pairs: list[tuple[Path, Path]], ring: int = 7, min_pixels: int = 50) -> dict[str, float] | None:
    """Per sequence: median inside the tumour / median of the ring around it (``None``: no tumour slice)."""
    inside: list[np.ndarray] = []
    around: list[np.ndarray] = []
    kernel = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
    for image_path, mask_path in pairs:
        tumour = read_mask(mask_path) > 0
        if int(tumour.sum()) < min_pixels:
            continue
        image = read_slice(image_path)
        band = (cv2.dilate(tumour.astype(np.uint8), kernel) > 0) & ~tumour
        inside.append(image[tumour])
        around.append(image[band])
    if not inside:
        return None
    ins, out = np.concatenate(inside), np.concatenate(around)
    return {
        name: float(np.median(ins[:, c])) / max(1.0, float(np.median(out[:, c])))
        for c, name in enumerate(KAGGLE_OPENCV_ORDER)
    }


def contrast_table(data_dir: Path, ring: int = 7, min_pixels: int = 50) -> pd.DataFrame:
    """One row per patient folder with a tumour: ``patient_id`` (the folder) and ``pre``, ``flair``, ``post`` ratios."""
    rows = []
    for patient_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        ratios = tumour_contrast(slice_pairs(patient_dir), ring, min_pixels)
        if ratios is not None:
            rows.append({"patient_id": patient_dir.name, **{k: ratios[k] for k in ("pre", "flair", "post")}})
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
    p.add_argument("--data-dir", type=Path, required=True, help="the kaggle_3m folder (one folder per patient)")
    p.add_argument("--ring", type=int, default=7, help="width in pixels of the ring around the tumour")
    p.add_argument("--min-pixels", type=int, default=50, help="tumour slices with fewer pixels are left out")
    p.add_argument("--compare", type=Path, nargs=2, metavar=("ALL", "FLAIR_ONLY"), default=None,
                   help="two evaluation folders (patients.csv): 3 sequences and FLAIR-only")  # fmt: skip
    p.add_argument("--column", default="dice", help="the patients.csv column to compare (e.g. dice_at_0.3)")
    p.add_argument("--out", type=Path, default=None, help="write the table as CSV")
    args = p.parse_args(argv)
    if not args.data_dir.is_dir():
        p.error(f"--data-dir {args.data_dir}: not a folder")
    table = contrast_table(args.data_dir, args.ring, args.min_pixels)
    if table.empty:
        print(f"{args.data_dir}: no patient folder with a tumour slice of >= {args.min_pixels} pixels", file=sys.stderr)
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
        tmp = args.out.with_name(args.out.name + ".tmp")
        table.to_csv(tmp, index=False)
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
