"""The review flag calibrated for a review budget, and its scale for an ensemble (issue 19).

    python benchmarks/review_budget.py --run-dir RUN [--folds 0 1 2 3 4] [--budget 0.2]

1. Out of fold: every train+val patient of ``--folds`` is predicted by its fold model (flip
   TTA, as cv does) and scored for uncertainty; the threshold that flags the ``--budget``
   share of them (:func:`mri_seg.uncertainty.budget_threshold`) is what cv stores for the
   deliverable with ``eval.review.budget``. Printed: how many patients below Dice 0.5 it catches.
2. The test split, predicted by the ensemble of the same fold models: the score pooled over
   all members' passes (the old way) and member by member (``passes_per_member``, the way
   inference now scores an ensemble), each against the out-of-fold threshold and the old
   fixed 0.3: how many test patients each flags, next to what each single member flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mri_seg.data.manifest import manifest_for_patients, manifest_for_split
from mri_seg.evaluation.cross_validation import fold_assignment
from mri_seg.evaluation.flow import eval_infer_config
from mri_seg.evaluation.prediction import as_volume_fn, iter_cases
from mri_seg.evaluation.scoring import EvalOptions, binarise
from mri_seg.inference.predictor import Predictor
from mri_seg.metrics import dice_score
from mri_seg.rundir import RunDir
from mri_seg.training.checkpoint import checkpoint_config, load_checkpoint, shipped_checkpoint
from mri_seg.uncertainty import budget_threshold, scan_uncertainty


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--budget", type=float, default=0.2)
    args = p.parse_args(argv)
    paths = {f: shipped_checkpoint(RunDir(args.run_dir).fold_dir(f), None) for f in args.folds}
    cfg = checkpoint_config(load_checkpoint(paths[args.folds[0]]))
    infer_cfg = eval_infer_config(cfg)
    options = EvalOptions.from_config(cfg.eval.postprocess)
    per_member = 2 if options.tta_flip else 1
    threshold = float(options.threshold)

    assignment = {pid: f for pid, f in fold_assignment(args.run_dir).items() if f in paths}
    fns = {f: as_volume_fn(Predictor.from_checkpoint(path, device="cpu", infer_cfg=infer_cfg), cfg.eval.batch_size)
           for f, path in paths.items()}  # fmt: skip
    scores, dice = [], []
    cases = iter_cases(manifest_for_patients(args.run_dir, sorted(assignment)), lambda pid: fns[assignment[pid]],
                       True, "out-of-fold")  # fmt: skip
    for case in cases:
        scores.append(scan_uncertainty(case.passes, threshold, per_member).score)
        dice.append(dice_score(binarise(case.prob, options, flair=case.flair), case.truth))
    scores_a, dice_a = np.array(scores), np.array(dice)
    chosen = budget_threshold(scores_a, args.budget)
    flagged = scores_a > chosen
    failed = dice_a < 0.5
    print(f"out of fold ({len(scores)} patients, folds {args.folds}): budget {args.budget} -> review threshold "
          f"{chosen:.4f}: flags {int(flagged.sum())}, {int((flagged & failed).sum())} of the {int(failed.sum())} "
          f"below Dice 0.5 (mean Dice flagged {dice_a[flagged].mean():.3f}, not flagged {dice_a[~flagged].mean():.3f}); "
          f"the old fixed 0.3 flags {int((scores_a > 0.3).sum())}")  # fmt: skip

    ensemble = Predictor.from_checkpoints([paths[f] for f in args.folds], device="cpu", infer_cfg=infer_cfg)
    test = iter_cases(manifest_for_split(args.run_dir, "test"), lambda _: as_volume_fn(ensemble, cfg.eval.batch_size),
                      True, "test (ensemble)")  # fmt: skip
    print(f"\ntest split, ensemble of {len(args.folds)} members x {per_member} passes:")
    print(f"  {'patient':24s} {'Dice':>6s} {'pooled':>7s} {'by member':>9s}   single members")
    rows = []
    for case in test:
        pooled = scan_uncertainty(case.passes, threshold).score
        by_member = scan_uncertainty(case.passes, threshold, per_member).score
        singles = [scan_uncertainty(case.passes[k * per_member : (k + 1) * per_member], threshold).score
                   for k in range(len(args.folds))]  # fmt: skip
        d = dice_score(binarise(case.prob, options, flair=case.flair), case.truth)
        rows.append((pooled, by_member, singles, d))
        print(f"  {case.patient_id:24s} {d:6.3f} {pooled:7.3f} {by_member:9.3f}   "
              + " ".join(f"{s:.3f}" for s in singles))  # fmt: skip
    for name, k in (("pooled", 0), ("by member", 1)):
        values = np.array([r[k] for r in rows])
        print(f"  {name:10s}: flags {int((values > chosen).sum())} of {len(rows)} at the out-of-fold threshold "
              f"{chosen:.4f}, {int((values > 0.3).sum())} at 0.3; mean score {values.mean():.3f}")  # fmt: skip
    single = np.array([s for r in rows for s in r[2]])
    print(f"  single members: mean score {single.mean():.3f}; flag {(single > chosen).mean():.0%} of member x patient "
          "pairs at the out-of-fold threshold")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
