"""Paired comparison of two evaluations of the same patients: is recipe B better than A?

    python benchmarks/compare_evals.py RUN_A/eval/cv RUN_B/eval/cv [--tolerance 0.005] [--column dice]

Reads each folder's ``patients.csv`` and compares the patients both contain (a patient in only
one is listed and left out). Prints each side's mean and median, the mean of the per-patient
differences B - A with a 95% bootstrap CI (patients resampled in pairs: the honest way to rank
two recipes scored on the same few patients), and how many patients B scored better / worse /
the same within ``--tolerance``. Two recipes whose paired CI spans 0 are not ranked by these
patients.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mri_seg.metrics import bootstrap_mean_ci  # noqa: E402


def paired(a_dir: Path, b_dir: Path, column: str = "dice") -> tuple[pd.DataFrame, list[str]]:
    """Patients in both evaluations with columns ``a``, ``b``, ``diff`` (B - A); and those in one only."""
    a = pd.read_csv(a_dir / "patients.csv").set_index("patient_id")[column]
    b = pd.read_csv(b_dir / "patients.csv").set_index("patient_id")[column]
    only_one = sorted(set(a.index) ^ set(b.index))
    both = pd.DataFrame({"a": a, "b": b}).dropna().sort_index()
    both["diff"] = both["b"] - both["a"]
    return both, only_one


def comparison(both: pd.DataFrame, tolerance: float, n_bootstrap: int = 2000) -> dict[str, float]:
    """Means, medians, paired mean difference with its bootstrap CI, and better/worse/same counts."""
    diff = both["diff"].to_numpy(float)
    lo, hi = bootstrap_mean_ci(diff, n_bootstrap)
    return {
        "n": len(both),
        "a_mean": float(both["a"].mean()),
        "a_median": float(both["a"].median()),
        "b_mean": float(both["b"].mean()),
        "b_median": float(both["b"].median()),
        "diff_mean": float(diff.mean()),
        "diff_ci_low": lo,
        "diff_ci_high": hi,
        "better": int((diff > tolerance).sum()),
        "worse": int((diff < -tolerance).sum()),
        "same": int((np.abs(diff) <= tolerance).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("a", type=Path, help="evaluation folder A (the reference), with patients.csv")
    parser.add_argument("b", type=Path, help="evaluation folder B (the candidate)")
    parser.add_argument("--column", default="dice", help="patients.csv column to compare (default dice)")
    parser.add_argument("--tolerance", type=float, default=0.005, help="|B - A| at most this counts as the same")
    parser.add_argument("--per-patient", action="store_true", help="also print every patient's pair")
    args = parser.parse_args(argv)
    both, only_one = paired(args.a, args.b, args.column)
    if both.empty:
        print(f"no patient is in both {args.a} and {args.b}", file=sys.stderr)
        return 1
    c = comparison(both, args.tolerance)
    print(f"{c['n']} patients in both (left out, in one only: {', '.join(only_one) or 'none'})")
    print(f"A {args.a}: {args.column} mean {c['a_mean']:.3f}, median {c['a_median']:.3f}")
    print(f"B {args.b}: {args.column} mean {c['b_mean']:.3f}, median {c['b_median']:.3f}")
    print(
        f"B - A: mean {c['diff_mean']:+.3f} (paired 95% CI {c['diff_ci_low']:+.3f} .. {c['diff_ci_high']:+.3f}); "
        f"B better for {c['better']}, worse for {c['worse']}, same (within {args.tolerance:g}) for {c['same']}"
    )
    if args.per_patient:
        print(both.sort_values("diff").to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
