"""How well the review flag finds the bad predictions: pooled over evaluations, uncertainty vs Dice.

    python benchmarks/review_flags.py RUN/eval/val RUN/eval/test [...] [--threshold 0.3] [--plot docs/uncertainty.png]

Reads each evaluation's ``patients.csv`` (a patient evaluated twice counts once: the first
folder wins), prints the Spearman correlation of Dice with the uncertainty score and with
each of its two parts, how many of the 5 lowest-Dice patients the flag marks, and how many
patients each threshold would flag; with ``--plot`` draws uncertainty vs Dice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mri_seg.reports.plots import uncertainty_vs_dice_png  # noqa: E402
from mri_seg.uncertainty import review_summary, spearman  # noqa: E402

THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def pooled(folders: list[Path]) -> pd.DataFrame:
    frames = []
    for folder in folders:
        frame = pd.read_csv(folder / "patients.csv")
        frame["source"] = str(folder)
        frames.append(frame)
    return pd.concat(frames).drop_duplicates("patient_id", keep="first").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("eval_dirs", nargs="+", type=Path, help="RUN/eval/<split> folders with patients.csv")
    parser.add_argument("--threshold", type=float, default=0.3, help="review threshold to report (eval.review)")
    parser.add_argument("--worst", type=int, default=5, help="how many lowest-Dice patients to look for")
    parser.add_argument("--plot", type=Path, default=None, help="write the uncertainty-vs-Dice PNG here")
    args = parser.parse_args(argv)
    patients = pooled(args.eval_dirs)
    dice = patients["dice"].to_numpy(float)
    print(f"patients: {len(patients)} (Dice mean {dice.mean():.3f}, median {np.median(dice):.3f})")
    for column in ("uncertainty", "uncertainty_entropy", "uncertainty_volume_spread"):
        print(f"Spearman(Dice, {column}) = {spearman(patients[column].to_numpy(float), dice):+.3f}")
    summary = review_summary(patients["uncertainty"], dice, args.threshold, args.worst)
    print(
        f"threshold {args.threshold:g}: {summary['n_flagged']} of {summary['n']} flagged; "
        f"{summary['worst_flagged']} of the {summary['worst_n']} lowest-Dice patients flagged"
    )
    print("threshold  flagged  worst-flagged  mean Dice flagged / not flagged")
    for t in THRESHOLDS:
        s = review_summary(patients["uncertainty"], dice, t, args.worst)
        flags = patients["uncertainty"].to_numpy(float) > t
        mean_in = f"{dice[flags].mean():.3f}" if flags.any() else "-"
        mean_out = f"{dice[~flags].mean():.3f}" if (~flags).any() else "-"
        print(f"{t:9.2f}  {s['n_flagged']:7d}  {s['worst_flagged']:13d}  {mean_in} / {mean_out}")
    ordered = patients.sort_values("dice")[["patient_id", "dice", "uncertainty", "uncertainty_entropy",
                                              "uncertainty_volume_spread", "true_volume", "pred_volume"]]
    print(ordered.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        args.plot.write_bytes(uncertainty_vs_dice_png(patients, args.threshold, summary))
        print(f"plot -> {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
