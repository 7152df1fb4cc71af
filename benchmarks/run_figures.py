"""A cross-validated run's figures as docs/accuracy.md quotes them, and paired against a base run.

    python benchmarks/run_figures.py RUN [RUN ...] [--base BASE] [--hard TCGA_CS_5396 ...] [--small 11]
        [--tolerance 0.01] [--csv OUT.csv]
    python benchmarks/run_figures.py --pair BASE_SEED0 RUN_SEED0 --pair BASE_SEED1 RUN_SEED1 ...

RUN is a run directory after ``cv`` (and, for the test row, ``evaluate``). Every figure is read at
the pair (threshold, keep ratio) that ``cv`` chose out of fold, the one the deliverable ships
(``RUN/eval/cv/summary.json``: ``threshold_sweep``), not at the configured threshold that
``patients.csv``'s ``dice`` column holds:

* out of fold: mean patient Dice with its 95% bootstrap CI, median, the patients below 0.5;
* the hard patients (``--hard``: patient-id prefixes; default the hard five of issue 19) and the
  small tumours (the ``--small`` smallest true volumes; default a third of the patients), each as
  their own mean, as the issue asks;
* FLAIR-only input at its own cv-chosen pair (``flair_only_sweep``; what a FLAIR-only scan gets)
  and its gap below 3 sequences;
* the test split's ensemble (``RUN/eval/test/summary.json``), where it was evaluated.

With ``--base``, each run's per-patient Dice (and FLAIR-only Dice) minus the base's, each at its own
chosen pair: the mean difference with a paired 95% bootstrap CI and how many patients are better /
worse by more than ``--tolerance`` (benchmarks/compare_evals.py compares one column of two folders).
``--pair BASE RUN`` (repeated: one per seed) pairs each RUN with its own BASE and pools the
differences of every pair into one figure: a change measured over several seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "benchmarks"))  # compare_evals: the paired comparison

from compare_evals import comparison  # noqa: E402

from mri_seg.evaluation.scoring import sweep_column  # noqa: E402
from mri_seg.metrics import bootstrap_mean_ci  # noqa: E402
from mri_seg.reports.plots import paired_differences_png  # noqa: E402
from mri_seg.utils.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402

# The five dev patients every run of issue 19 missed in part (docs/accuracy.md, "Where the recipe fails").
HARD = ("TCGA_CS_5396", "TCGA_CS_5397", "TCGA_CS_6666", "TCGA_DU_5872", "TCGA_DU_7299")
# The rows of a paired comparison, in the order they print.
LABELS = {"dice": "3 sequences", "hard": "hard patients", "small": "small tumours", "flair_only": "FLAIR-only"}


@dataclass
class RunScores:
    """One run's per-patient out-of-fold Dice at cv's chosen pairs, and its test summary."""

    name: str
    threshold: float
    keep_ratio: float
    dice: pd.Series  # patient_id -> Dice at cv's pair (3 sequences)
    volume: pd.Series  # patient_id -> true tumour voxels
    flair_pair: tuple[float, float] | None  # FLAIR-only input's own cv-chosen pair
    flair: pd.Series | None  # patient_id -> FLAIR-only Dice at that pair
    test: dict | None  # RUN/eval/test/summary.json


def chosen_column(sweep: dict, configured_keep_ratio: float, prefix: str = "") -> tuple[str, float, float]:
    """``patients.csv`` column at a sweep's chosen (threshold, keep ratio), and the pair itself."""
    threshold = float(sweep["best_mean"])
    keep = sweep.get("best_keep_ratio")
    keep = configured_keep_ratio if keep is None else float(keep)
    column = sweep_column(threshold, None if keep == configured_keep_ratio else keep)
    return prefix + column, threshold, keep


def load_run(run: Path) -> RunScores:
    """Read ``RUN/eval/cv`` (patients.csv and summary.json) and, where present, ``RUN/eval/test/summary.json``."""
    cv = run / "eval" / "cv"
    for needed in (cv / "summary.json", cv / "patients.csv"):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed}: missing; run `python -m mri_seg.pipelines.cv --run-dir {run}` first")
    summary = json.loads((cv / "summary.json").read_text())
    patients = pd.read_csv(cv / "patients.csv").set_index("patient_id")
    configured_keep = float(summary.get("options", {}).get("keep_ratio", 1.0))
    if "threshold_sweep" not in summary:
        raise ValueError(f"{cv / 'summary.json'}: no threshold_sweep (cv ran without a threshold sweep)")
    column, threshold, keep = chosen_column(summary["threshold_sweep"], configured_keep)
    if column not in patients:
        raise ValueError(f"{cv / 'patients.csv'}: no column {column!r} for cv's chosen pair {threshold}/{keep}")
    flair_pair, flair = None, None
    if summary.get("flair_only_sweep"):
        f_column, f_threshold, f_keep = chosen_column(summary["flair_only_sweep"], configured_keep, "flair_only_")
        if f_column in patients:
            flair_pair, flair = (f_threshold, f_keep), patients[f_column].astype(float)
    test_summary = run / "eval" / "test" / "summary.json"
    test = json.loads(test_summary.read_text()) if test_summary.is_file() else None
    return RunScores(
        run.name, threshold, keep, patients[column].astype(float), patients["true_volume"], flair_pair, flair, test
    )


def hard_patients(index: pd.Index, prefixes: tuple[str, ...]) -> list[str]:
    return [p for p in index if p.startswith(prefixes)]


def figures(scores: RunScores, hard: tuple[str, ...] = HARD, n_small: int | None = None) -> dict:
    """The run's row: every figure a section of docs/accuracy.md quotes for a run."""
    dice = scores.dice
    low, high = bootstrap_mean_ci(dice.to_numpy(float))
    small = small_patients(scores, n_small)
    n_small = len(small)
    hard_ids = hard_patients(dice.index, hard)
    row = {
        "run": scores.name,
        "threshold": scores.threshold,
        "keep_ratio": scores.keep_ratio,
        "n": len(dice),
        "mean": float(dice.mean()),
        "ci_low": low,
        "ci_high": high,
        "median": float(dice.median()),
        "below_half": {p: round(float(v), 3) for p, v in dice[dice < 0.5].sort_values().items()},
        "hard_mean": float(dice[hard_ids].mean()) if hard_ids else math.nan,
        "hard": {p: round(float(dice[p]), 3) for p in hard_ids},
        "small_n": n_small,
        "small_mean": float(dice[small].mean()) if n_small else math.nan,
        "flair_mean": math.nan,
        "flair_median": math.nan,
        "flair_gap": math.nan,
        "flair_pair": scores.flair_pair,
        "test_mean": math.nan if scores.test is None else float(scores.test["dice_mean"]),
        "test_median": math.nan if scores.test is None else float(scores.test["dice_median"]),
    }
    if scores.flair is not None:
        flair = scores.flair.loc[dice.index]
        row.update(flair_mean=float(flair.mean()), flair_median=float(flair.median()))
        row["flair_gap"] = row["mean"] - row["flair_mean"]
    return row


def small_count(n_patients: int, n_small: int | None) -> int:
    """How many tumours count as small: ``n_small``, by default a third of the patients."""
    return n_patients // 3 if n_small is None else n_small


def small_patients(scores: RunScores, n_small: int | None = None) -> pd.Index:
    """The ``n_small`` smallest true tumours among the scored patients (default: a third of them)."""
    return scores.volume.loc[scores.dice.index].nsmallest(small_count(len(scores.dice), n_small)).index


def paired_tables(
    scores: RunScores, base: RunScores, hard: tuple[str, ...] = HARD, n_small: int | None = None
) -> dict[str, pd.DataFrame]:
    """Per patient ``a`` (base), ``b`` (run) and ``diff`` = b - a: 3 sequences (``dice``), its hard patients
    (``hard``) and small tumours (``small``, by the base's true volumes) as their own rows, and, where both
    runs have it, FLAIR-only (``flair_only``), each run at its own chosen pair."""
    both = _paired(base.dice, scores.dice)
    tables = {"dice": both}
    hard_ids = hard_patients(both.index, hard)
    if hard_ids:
        tables["hard"] = both.loc[hard_ids]
    small = small_patients(base, n_small).intersection(both.index)
    if len(small):
        tables["small"] = both.loc[small]
    if scores.flair is not None and base.flair is not None:
        tables["flair_only"] = _paired(base.flair, scores.flair)
    return tables


def _paired(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    """Patients scored in both: ``a``, ``b`` and ``diff`` = b - a."""
    both = pd.DataFrame({"a": a, "b": b}).dropna()
    both["diff"] = both["b"] - both["a"]
    return both


def paired_against(
    scores: RunScores, base: RunScores, tolerance: float, hard: tuple[str, ...] = HARD, n_small: int | None = None
) -> dict[str, dict]:
    """:func:`paired_tables` summarised: mean difference, its paired bootstrap CI, better / worse counts."""
    return {name: comparison(t, tolerance) for name, t in paired_tables(scores, base, hard, n_small).items()}


def pooled(
    pairs: list[tuple[RunScores, RunScores]], tolerance: float, hard: tuple[str, ...] = HARD, n_small: int | None = None
) -> dict[str, dict]:
    """Every (run, base) pair's per-patient differences in one sample (each patient once per pair)."""
    tables = [paired_tables(run, base, hard, n_small) for base, run in pairs]
    names = [name for name in LABELS if all(name in t for t in tables)]
    return {name: comparison(pd.concat([t[name] for t in tables], ignore_index=True), tolerance) for name in names}


def differences_table(pairs: list[tuple[RunScores, RunScores]], hard: tuple[str, ...] = HARD) -> pd.DataFrame:
    """One row per patient and (base, run) pair: the pair's label, true volume, 3-sequence difference, hard."""
    frames = []
    for base, run in pairs:
        table = paired_tables(run, base, hard)["dice"]
        frames.append(pd.DataFrame({
            "pair": f"{run.name} vs {base.name}",
            "patient_id": table.index,
            "true_volume": base.volume.loc[table.index].to_numpy(float),
            "diff": table["diff"].to_numpy(float),
            "hard": table.index.isin(hard_patients(table.index, hard)),
        }))  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def small_boundary(scores: RunScores, n_small: int | None = None) -> float | None:
    """A volume between the largest small tumour and the next one (geometric mean), for the plot's line."""
    volumes = np.sort(scores.volume.loc[scores.dice.index].to_numpy(float))
    n_small = small_count(len(volumes), n_small)
    if not 0 < n_small < len(volumes):
        return None
    return float(np.sqrt(volumes[n_small - 1] * volumes[n_small]))


def format_row(row: dict) -> str:
    below = ", ".join(f"{p} {v:.3f}" for p, v in row["below_half"].items()) or "none"
    hard = " ".join(f"{p[5:12]} {v:.2f}" for p, v in row["hard"].items())
    lines = [
        f"{row['run']}: cv's pair {row['threshold']:g} / keep {row['keep_ratio']:g}, {row['n']} patients out of fold",
        f"  mean {row['mean']:.3f} ({row['ci_low']:.3f}-{row['ci_high']:.3f}), median {row['median']:.3f}; "
        f"below 0.5: {len(row['below_half'])} ({below})",
        f"  hard ({len(row['hard'])}): {row['hard_mean']:.3f} ({hard}); small ({row['small_n']} smallest): "
        f"{row['small_mean']:.3f}",
    ]
    if row["flair_pair"] is not None:
        t, k = row["flair_pair"]
        lines.append(
            f"  FLAIR-only at its own pair {t:g} / keep {k:g}: {row['flair_mean']:.3f} / {row['flair_median']:.3f}, "
            f"gap {row['flair_gap']:.3f}"
        )
    if not math.isnan(row["test_mean"]):
        lines.append(f"  test split (ensemble): {row['test_mean']:.3f} / {row['test_median']:.3f}")
    return "\n".join(lines)


def format_paired(name: str, base: str, paired: dict[str, dict], tolerance: float) -> str:
    lines = []
    for what, c in paired.items():
        label = LABELS[what]
        lines.append(
            f"  vs {base} ({label}, {c['n']} patients): {c['diff_mean']:+.3f} ({c['diff_ci_low']:+.3f}..{c['diff_ci_high']:+.3f}), "
            f"{c['better']} better / {c['worse']} worse by > {tolerance:g}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run directories after cv")
    parser.add_argument("--base", type=Path, help="pair every run against this run, patient by patient")
    parser.add_argument(
        "--pair", nargs=2, action="append", type=Path, default=[], metavar=("BASE", "RUN"),
        help="pair RUN with its own BASE (repeat per seed); the differences of all pairs are also pooled",
    )  # fmt: skip
    parser.add_argument("--hard", nargs="+", default=list(HARD), help="patient-id prefixes reported as their own row")
    parser.add_argument("--small", type=int, help="the N smallest tumours as their own row (default: a third)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="better / worse means by more than this")
    parser.add_argument("--csv", type=Path, help="also write one row per run to this CSV")
    parser.add_argument("--plot", type=Path, help="write the per-patient differences against tumour size (PNG)")
    args = parser.parse_args(argv)
    if not args.runs and not args.pair:
        parser.error("name at least one run, or --pair BASE RUN")
    try:
        base = load_run(args.base) if args.base else None
        runs = [load_run(run) for run in args.runs]
        pairs = [(load_run(b), load_run(r)) for b, r in args.pair]
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    hard = tuple(args.hard)
    rows = []
    for scores in runs:
        row = figures(scores, hard, args.small)
        print(format_row(row))
        if base is not None:
            paired = paired_against(scores, base, args.tolerance, hard, args.small)
            print(format_paired(scores.name, base.name, paired, args.tolerance))
            row.update({f"{k}_vs_base": v["diff_mean"] for k, v in paired.items()})
        rows.append(row)
    for pair_base, pair_run in pairs:
        print(f"{pair_run.name} vs its base:")
        paired = paired_against(pair_run, pair_base, args.tolerance, hard, args.small)
        print(format_paired(pair_run.name, pair_base.name, paired, args.tolerance))
    if len(pairs) > 1:
        print(f"pooled over {len(pairs)} pairs:")
        print(format_paired("pooled", "each base", pooled(pairs, args.tolerance, hard, args.small), args.tolerance))
    if args.plot:
        compared = [(base, scores) for scores in runs] if base is not None else []
        compared += pairs
        if not compared:
            print("error: --plot needs --base or --pair", file=sys.stderr)
            return 1
        png = paired_differences_png(differences_table(compared, hard), small_boundary(compared[0][0], args.small))
        atomic_write_bytes(args.plot, png)
        print(f"-> {args.plot}")
    if args.csv and rows:
        table = pd.DataFrame(rows).drop(columns=["below_half", "hard", "flair_pair"])
        atomic_write_text(args.csv, table.to_csv(index=False))
        print(f"-> {args.csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
