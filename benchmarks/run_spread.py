"""How far apart are several evaluations of the same patients, and what mean could they reach?

    python benchmarks/run_spread.py RUN_1/eval/cv RUN_2/eval/cv ... [--hard-below 0.7] [--target 0.84]

Reads each folder's ``patients.csv`` (the patients every folder contains). Prints each run's
mean and median; per patient the lowest and highest score over the runs; the **best-of-runs
mean** (every patient at its best score in any run: a ceiling that no choice among these
recipes, seeds or machines reaches); the *hard* patients, whose best score in any run is
below ``--hard-below``; and, for a ``--target`` mean, what the other patients would have to
average if each hard patient kept its best score. When that figure is above what the other
patients reach in any run, the target needs the hard patients found, not a better average.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def load(folders: list[Path], column: str = "dice") -> pd.DataFrame:
    """One column per folder (named by the folder's run), one row per patient present in all."""
    table = {}
    for folder in folders:
        name = folder.parent.parent.name if folder.parent.name == "eval" else str(folder)
        if name in table:
            name = str(folder)
        table[name] = pd.read_csv(folder / "patients.csv").set_index("patient_id")[column]
    return pd.DataFrame(table).dropna().sort_index()


def spread(scores: pd.DataFrame, hard_below: float, target: float) -> dict:
    """Best-of-runs mean, the hard patients, and the mean the others would need for ``target``."""
    lo_hi = scores.agg(["min", "max"], axis=1)
    best = lo_hi["max"]
    hard = best[best < hard_below].sort_values()
    others = scores.drop(index=hard.index)
    n_others = len(others)
    needed = (target * len(scores) - hard.sum()) / n_others if n_others else float("nan")
    return {
        "n": len(scores),
        "run_means": scores.mean().to_dict(),
        "best_of_runs_mean": float(best.mean()),
        "lo_hi": lo_hi,
        "hard": hard.to_dict(),
        "others_mean_range": (float(others.mean().min()), float(others.mean().max())) if n_others else None,
        "others_needed": float(needed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="evaluation folders with patients.csv (2 or more)")
    parser.add_argument("--column", default="dice", help="patients.csv column (default dice)")
    parser.add_argument("--hard-below", type=float, default=0.7, help="a patient whose best score is below this is hard")
    parser.add_argument("--target", type=float, default=0.84, help="the mean to ask about (default 0.84)")
    args = parser.parse_args(argv)
    if len(args.folders) < 2:
        parser.error("give at least two evaluation folders")
    scores = load(args.folders, args.column)
    if scores.empty:
        print("no patient is in every folder", file=sys.stderr)
        return 1
    s = spread(scores, args.hard_below, args.target)
    print(f"{s['n']} patients in all {scores.shape[1]} runs")
    for run, mean in s["run_means"].items():
        print(f"  {run}: mean {mean:.3f}, median {scores[run].median():.3f}")
    print(f"best-of-runs mean (each patient at its best run): {s['best_of_runs_mean']:.3f}")
    lo_hi = s["lo_hi"]
    print(f"per-patient spread (max - min): median {(lo_hi['max'] - lo_hi['min']).median():.3f}, "
          f"largest {(lo_hi['max'] - lo_hi['min']).max():.3f}")
    print(f"hard patients (best < {args.hard_below:g} in every run): {len(s['hard'])}")
    for pid, best in s["hard"].items():
        print(f"  {pid}: {lo_hi.loc[pid, 'min']:.3f} .. {best:.3f}")
    if s["others_mean_range"] is not None:
        lo, hi = s["others_mean_range"]
        print(f"the other {s['n'] - len(s['hard'])} patients average {lo:.3f} .. {hi:.3f} over the runs; "
              f"a mean of {args.target:g} needs them at {s['others_needed']:.3f} (hard patients at their best)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
