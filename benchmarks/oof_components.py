"""Which 3D components to keep, measured on out-of-fold predictions (issue 19).

    python benchmarks/oof_components.py --run-dir RUN [--input-sequences all|flair_only]
        [--cache DIR] [--thresholds 0.3 0.4 0.5] [--grow 0 0.1 0.2] [--fill-holes] [--per-patient CSV]
        [--rules bright:1 bright:0.5] [--flair-view 0.7:1.5 ...] [--close 0.04 0.06]

RUN is a cross-validated run (``train --all-folds``). Every train+val patient is predicted
once by the fold model that never saw it (flip TTA, as ``cv`` does) and its probability
volume cached (``--cache``, default ``RUN/eval/oof_probabilities[_flair_only]/``); then each
component rule (``postprocess.component_rule`` x ``keep_ratio``) is scored at each threshold
on the same probabilities: mean / median patient Dice with a bootstrap CI, patients below
0.5, patients at 0 with a tumour-sized prediction elsewhere, and the small-tumour third and
the hard patients (docs/accuracy.md) as their own rows; ``--rules RULE:RATIO ...`` scores only those
(``none`` for largest_only off; default: every rule at keep ratios 1, 0.5 and 0.25). ``--grow`` also scores each rule with
hysteresis (``postprocess.grow_threshold``: the kept components grown into the connected voxels
at or above that lower probability); ``--fill-holes`` also scores each rule with every region a
slice's kept mask encloses filled (``postprocess.fill_holes``: a cyst ringed by found tumour); ``--flair-view T:R``
also scores each rule with the FLAIR view (``postprocess.flair_view_threshold`` T, ``flair_view_min_ratio`` R:
the FLAIR-only probabilities, cached beside the others, add their components at >= T that overlap the kept
tumour and are >= R x its size); ``--close F ...`` also scores each rule with every slice's kept mask closed
by a disc of radius F x the slice width (``postprocess.close_radius``: gaps between fragments of a tumour
found in parts); ``--per-patient`` writes every patient's Dice, sensitivity
and precision under every (threshold, rule, grow, fill, view) for paired comparisons.
``--average-with RUN2 ...`` scores, in place of RUN's probabilities, each patient's mean over RUN
and those runs (cached the same way; the runs must share the split): what averaging seeds would give.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from mri_seg.config import PostprocessConfig
from mri_seg.config.names import COMPONENT_RULES
from mri_seg.metrics import bootstrap_mean_ci, dice_score
from mri_seg.postprocess import apply_postprocess
from mri_seg.rundir import RunDir
from mri_seg.utils.atomic import atomic_write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run_figures: the hard patients
from run_figures import HARD  # noqa: E402

# (component_rule, keep_ratio) with largest_only; "none": largest_only off
VARIANTS = [("none", 1.0)] + [(rule, ratio) for rule in COMPONENT_RULES for ratio in (1.0, 0.5, 0.25)]


def cache_probabilities(run_dir: Path, cache: Path, input_sequences: str, folds: list[int] | None = None) -> None:
    """One ``<patient>.npz`` (prob float16, truth bool, fold) per out-of-fold patient (of ``folds``: all)."""
    from mri_seg.data.manifest import manifest_for_patients
    from mri_seg.evaluation.cross_validation import fold_assignment, fold_checkpoints
    from mri_seg.evaluation.flow import eval_infer_config
    from mri_seg.evaluation.prediction import as_volume_fn, iter_cases
    from mri_seg.inference.predictor import Predictor
    from mri_seg.training.checkpoint import checkpoint_config, load_checkpoint, shipped_checkpoint

    if folds is None:
        paths = fold_checkpoints(run_dir)
    else:  # e.g. the folds whose training has finished
        paths = {f: shipped_checkpoint(RunDir(run_dir).fold_dir(f), None) for f in folds}
    cfg = checkpoint_config(load_checkpoint(next(iter(paths.values()))))
    infer_cfg = eval_infer_config(cfg)
    assignment = {p: f for p, f in fold_assignment(run_dir).items() if f in paths}
    todo = sorted(p for p in assignment if not (cache / f"{p}.npz").is_file())
    if not todo:
        return
    cache.mkdir(parents=True, exist_ok=True)
    fns = {f: as_volume_fn(Predictor.from_checkpoint(p, device="cpu", infer_cfg=infer_cfg), cfg.eval.batch_size)
           for f, p in paths.items()}  # fmt: skip
    manifest = manifest_for_patients(run_dir, todo)
    for case in iter_cases(manifest, lambda p: fns[assignment[p]], True, "out-of-fold", input_sequences):
        tmp = cache / f".{case.patient_id}.tmp.npz"
        np.savez_compressed(tmp, prob=case.prob.astype(np.float16), truth=case.truth, fold=assignment[case.patient_id],
                            flair=case.flair)  # fmt: skip
        tmp.replace(cache / f"{case.patient_id}.npz")


def average_caches(caches: list[Path], out: Path) -> Path:
    """``out/<patient>.npz``: each patient's probabilities averaged over ``caches`` (one per run, same split)."""
    patients = sorted(p.stem for p in caches[0].glob("*.npz"))
    for cache in caches[1:]:
        if sorted(p.stem for p in cache.glob("*.npz")) != patients:
            raise SystemExit(f"{cache} holds other out-of-fold patients than {caches[0]}: the runs' splits differ")
    out.mkdir(parents=True, exist_ok=True)
    for patient in patients:
        first = np.load(caches[0] / f"{patient}.npz")
        prob = np.mean([np.load(c / f"{patient}.npz")["prob"].astype(np.float32) for c in caches], axis=0)
        tmp = out / f".{patient}.tmp.npz"
        extra = {"flair": first["flair"]} if "flair" in first.files else {}
        np.savez_compressed(tmp, prob=prob.astype(np.float16), truth=first["truth"], fold=first["fold"], **extra)
        tmp.replace(out / f"{patient}.npz")
    return out


def score(
    cache: Path,
    thresholds: list[float],
    grows: list[float],
    per_patient: Path | None = None,
    fills: tuple = (False,),
    views: list[tuple[float, float]] | None = None,
    view_cache: Path | None = None,
    rules: list[tuple[str, float]] | None = None,
    closes: list[float] | None = None,
) -> None:
    data = {p.stem: np.load(p) for p in sorted(cache.glob("*.npz"))}
    view_probs = {k: np.load(view_cache / f"{k}.npz")["prob"].astype(np.float32) for k in data} if views else {}
    view_settings = [(0.0, 1.5)] + list(views or [])
    volumes = {k: int(v["truth"].sum()) for k, v in data.items()}
    order = sorted(volumes, key=volumes.__getitem__)
    small = set(order[: len(order) // 3])
    hard = {k for k in data if k.startswith(HARD)}
    print(f"{len(data)} out-of-fold patients; small tumours (smallest third): <= {volumes[order[len(order) // 3 - 1]]} "
          f"voxels; hard patients: {len(hard)}")  # fmt: skip
    base = PostprocessConfig(largest_only=True)
    with_flair = all("flair" in v.files for v in data.values())
    variants = [(rule, ratio) for rule, ratio in (rules or VARIANTS) if with_flair or rule != "bright"]
    if not with_flair:
        print("the cache holds no FLAIR (cached before the bright rule): component_rule bright is not scored")
    rows: list[dict] = []
    for threshold in thresholds:
        print(f"\nthreshold {threshold}")
        print(f"  {'rule':50s} {'mean':>6s} {'95% CI':>13s} {'median':>6s} {'<0.5':>4s} {'0+else':>6s} "
              f"{'small':>6s} {'hard':>6s} {'sens':>5s} {'prec':>5s}")  # fmt: skip
        combos = [(g, f, w, c) for g in grows for f in fills for w in view_settings for c in [0.0, *(closes or [])]]
        for grow, fill, (view_t, view_r), close in combos:
            if grow and grow >= threshold:
                continue
            for rule, ratio in variants:
                name = (rule if ratio == 1.0 else f"{rule}, keep_ratio {ratio}") + (f", grow {grow:g}" if grow else "")
                name += (", holes filled" if fill else "") + (f", FLAIR view {view_t:g}:{view_r:g}" if view_t else "")
                name += f", closed {close:g}" if close else ""
                settings = replace(base, threshold=threshold, largest_only=rule != "none", grow_threshold=grow,
                                   component_rule=rule if rule != "none" else "size", keep_ratio=ratio,
                                   fill_holes=fill, flair_view_threshold=view_t, flair_view_min_ratio=view_r,
                                   close_radius=close)  # fmt: skip
                dice, sens, prec, elsewhere = {}, {}, {}, 0
                for k, v in data.items():
                    truth = v["truth"].astype(bool)
                    flair = v["flair"] if with_flair else None
                    pred = apply_postprocess(v["prob"].astype(np.float32), settings, view_probs.get(k), flair)
                    dice[k] = dice_score(pred, truth)
                    hit = float(np.logical_and(pred, truth).sum())
                    sens[k] = hit / truth.sum() if truth.any() else float("nan")
                    prec[k] = hit / pred.sum() if pred.any() else float("nan")
                    elsewhere += int(dice[k] == 0 and truth.any() and pred.sum() >= 0.3 * truth.sum())
                    rows.append({"patient_id": k, "threshold": threshold, "rule": rule, "keep_ratio": ratio,
                                 "grow_threshold": grow, "holes_filled": fill, "flair_view_threshold": view_t,
                                 "flair_view_min_ratio": view_r, "close_radius": close, "dice": dice[k], "sensitivity": sens[k],
                                 "precision": prec[k], "true_voxels": volumes[k], "predicted_voxels": int(pred.sum())})
                values = np.array(list(dice.values()))
                lo, hi = bootstrap_mean_ci(values, n_samples=2000, seed=0)
                print(f"  {name:50s} {values.mean():6.4f} [{lo:.3f}-{hi:.3f}] {np.median(values):6.4f} "
                      f"{int((values < 0.5).sum()):4d} {elsewhere:6d} {np.mean([dice[k] for k in small]) if small else float('nan'):6.4f} "
                      f"{np.mean([dice[k] for k in hard]) if hard else float('nan'):6.4f} "
                      f"{np.nanmean(list(sens.values())):5.3f} {np.nanmean(list(prec.values())):5.3f}")  # fmt: skip
    lowest = sorted(dice, key=dice.__getitem__)[:8]
    print("\nlowest patients (last rule, last threshold): " + ", ".join(f"{k} {dice[k]:.3f}" for k in lowest))
    if per_patient is not None:
        atomic_write_text(per_patient, pd.DataFrame(rows).to_csv(index=False))
        print(f"per patient: {per_patient}")


def rule_and_ratio(text: str) -> tuple[str, float]:
    """``--rules`` item ``RULE[:RATIO]`` (ratio 1 when left out) -> (rule, keep ratio), or an argparse error."""
    rule, _, ratio = text.partition(":")
    if rule not in ("none", *COMPONENT_RULES):
        raise argparse.ArgumentTypeError(f"unknown component rule {rule!r}: choose from none, {', '.join(COMPONENT_RULES)}")
    try:
        keep = float(ratio or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the keep ratio after ':' must be a number") from None
    if not 0.0 < keep <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: the keep ratio must be in (0, 1]")
    return rule, keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--input-sequences", choices=("all", "flair_only"), default="all")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5])
    parser.add_argument("--grow", type=float, nargs="+", default=[0.0],
                        help="hysteresis thresholds to score besides none (0), each below the threshold")
    parser.add_argument("--fill-holes", action="store_true", help="also score each rule with slice holes filled")
    parser.add_argument("--per-patient", type=Path, default=None, help="write every patient's scores to this CSV")
    parser.add_argument("--folds", type=int, nargs="+", default=None, help="only these folds' patients (default: all)")
    parser.add_argument("--flair-view", nargs="+", default=[], metavar="T:R",
                        help="also score each rule with the FLAIR view at threshold T and min ratio R (e.g. 0.7:1.5)")
    parser.add_argument("--average-with", type=Path, nargs="+", default=[], metavar="RUN",
                        help="score each patient's probabilities averaged over --run-dir and these runs (same split)")
    parser.add_argument("--rules", nargs="+", default=None, metavar="RULE:RATIO", type=rule_and_ratio,
                        help="score only these component rules and keep ratios (e.g. bright:1 bright:0.5; none: all components)")
    parser.add_argument("--close", type=float, nargs="+", default=[], metavar="F",
                        help="also score each rule with each slice's kept mask closed by a disc of radius F x the width")
    args = parser.parse_args(argv)
    views = [(float(t), float(r)) for t, r in (v.split(":") for v in args.flair_view)]
    if views and args.input_sequences != "all":
        parser.error("--flair-view scores 3-sequence input (a FLAIR-only scan is its own FLAIR view)")
    if args.average_with and args.cache:
        parser.error("--average-with reads each run's own cache: leave --cache out")
    suffix = "" if args.input_sequences == "all" else f"_{args.input_sequences}"
    runs = [args.run_dir, *args.average_with]
    caches = [args.cache or RunDir(run).eval_dir(f"oof_probabilities{suffix}") for run in runs]
    view_caches = [RunDir(run).eval_dir("oof_probabilities_flair_only") for run in runs]
    for run, run_cache, run_view_cache in zip(runs, caches, view_caches):
        cache_probabilities(run, run_cache, args.input_sequences, args.folds)
        if views:
            cache_probabilities(run, run_view_cache, "flair_only", args.folds)
    cache, view_cache = caches[0], view_caches[0]
    if args.average_with:
        label = "_".join(run.resolve().name for run in args.average_with)
        print(f"probabilities averaged over {', '.join(str(r) for r in runs)}")
        cache = average_caches(caches, cache.with_name(f"{cache.name}_avg_{label}"))
        if views:
            view_cache = average_caches(view_caches, view_cache.with_name(f"{view_cache.name}_avg_{label}"))
    fills = (False, True) if args.fill_holes else (False,)
    score(cache, args.thresholds, args.grow, args.per_patient, fills, views, view_cache, args.rules, args.close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
