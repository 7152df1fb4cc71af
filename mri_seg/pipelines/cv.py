"""Cross-validation summary: every train+val patient predicted by the fold model that never saw it.

    python -m mri_seg.pipelines.cv --run-dir RUN [--checkpoint-name best|last]
        [--threshold F] [--min-component N] [--tta | --no-tta] [--input-sequences all|flair_only]
        [--out-dir DIR] [--config FILE] [--set eval.k=v] [--device auto|cpu|cuda]

Needs RUN/splits.csv with folds (split.n_folds > 1) and RUN/checkpoints/fold<K>/ for every
fold (``train --all-folds``). Each fold's checkpoint is its shipped one
(``train.ship_checkpoint`` stored in it) unless ``--checkpoint-name`` says best or last.
Writes the files of ``evaluate`` (patients.csv with a ``fold`` column, slices.csv,
summary.json with a per-fold table and the checkpoints' sha256, plots, report.html) to
RUN/eval/cv/ (RUN/eval/cv_flair_only/ with ``--input-sequences flair_only``, or ``--out-dir``),
and RUN/config_cv.yaml. Settings precedence as in evaluate (the eval section only).
With ``eval.postprocess.threshold_from_cv`` (the default) it also stores the swept threshold
with the best out-of-fold mean beside the fold models, RUN/checkpoints/postprocess.json:
the deliverable's threshold (mri_seg.evaluation.threshold_choice).
Test patients are never read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mri_seg.config import Config
from mri_seg.pipelines._cli import StageError, add_config_args, run_main, stage_lock
from mri_seg.pipelines.evaluate import (
    USER_SECTIONS,
    add_eval_options,
    eval_flags,
    eval_infer_config,
    eval_output_dir,
    resolve_config,
)
from mri_seg.pipelines.stage import Stage
from mri_seg.utils.paths import require_dir, require_writable_dir

STAGE = Stage(
    name="cv",
    params=("eval",),
    argv=lambda call: ["--run-dir", str(call.run.root)],
    # the fold folders, not RUN/checkpoints: cv writes its threshold choice there
    inputs=lambda call: [*(call.run.fold_dirs() or [call.run.checkpoints]), call.run.manifest, call.run.splits,
                         call.run.patients],  # fmt: skip
    outputs=lambda call: [call.run.eval_dir("cv") / "summary.json"],
)

TITLE = "mri_seg cross-validation (out-of-fold)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mri_seg.pipelines.cv", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory with folds and fold checkpoints")
    parser.add_argument(
        "--checkpoint-name", choices=("best", "last"), default=None,
        help="which file of each fold<K>/ (default: train.ship_checkpoint stored in the fold's checkpoints)",
    )  # fmt: skip
    parser.add_argument("--out-dir", type=Path, default=None, help="default: RUN/eval/cv")
    add_eval_options(parser)
    add_config_args(parser)
    return parser


def fold_checkpoints(run_dir: Path, name: str | None) -> dict[int, Path]:
    """Fold -> its checkpoint file, for every fold of splits.csv (a missing one is an error)."""
    from mri_seg.data.manifest import SPLITS_FILE, fold_ids, read_splits
    from mri_seg.rundir import RunDir
    from mri_seg.training.checkpoint import shipped_checkpoint

    folds = fold_ids(read_splits(run_dir), run_dir / SPLITS_FILE)
    out = {}
    for fold in folds:
        folder = RunDir(run_dir).fold_dir(fold)
        if not folder.is_dir():
            raise StageError(f"fold {fold} has no model: {folder} not found (train --fold {fold}, or --all-folds)")
        out[fold] = shipped_checkpoint(folder, name)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    resolve_config(Config(), args.config, args.overrides, eval_flags(args))  # the user's values: checked first
    require_writable_dir(require_dir(args.run_dir, "run directory"), "run directory")
    with stage_lock(args.run_dir, "cv", argv):
        return _cv(args)


def _cv(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    from mri_seg.config import save_resolved_config
    from mri_seg.data.manifest import FoldError
    from mri_seg.evaluation.core import EvalOptions
    from mri_seg.evaluation.cross_validation import SPLIT_NAME, FoldModel, OutOfFoldError, evaluate_out_of_fold
    from mri_seg.inference.predictor import Predictor, member_record
    from mri_seg.reports.outputs import write_eval_outputs
    from mri_seg.reports.patient_pages import PatientSliceWriter, clear_pages
    from mri_seg.training.checkpoint import CheckpointError, checkpoint_config, load_checkpoint
    from mri_seg.utils.provenance import provenance

    run_dir: Path = args.run_dir
    if not run_dir.is_dir():
        raise StageError(f"run directory not found: {run_dir}")
    try:
        paths = fold_checkpoints(run_dir, args.checkpoint_name)
        states = {fold: load_checkpoint(path) for fold, path in paths.items()}
    except (FoldError, CheckpointError) as exc:
        raise StageError(str(exc)) from exc
    for fold, state in states.items():
        if state.get("fold") != fold or "train_patients" not in state:
            raise StageError(f"{paths[fold]} is not a fold-{fold} checkpoint (its fold: {state.get('fold')})")
    first = next(iter(states.values()))
    cfg = resolve_config(checkpoint_config(first), args.config, args.overrides, eval_flags(args))
    ignored = [o for o in args.overrides if o.split(".", 1)[0] not in USER_SECTIONS]
    if ignored:
        print(f"note: cv uses the checkpoints' settings outside eval; ignored: {ignored}", file=sys.stderr)
    try:
        options = EvalOptions.from_config(cfg.eval.postprocess)
    except ValueError as exc:
        raise StageError(str(exc)) from exc
    infer_cfg = eval_infer_config(cfg)
    out_dir = args.out_dir or eval_output_dir(run_dir, SPLIT_NAME, cfg.eval.input_sequences)
    on_case = None
    if cfg.eval.patient_pages:
        clear_pages(out_dir)  # pages of an earlier evaluation would show other predictions
        on_case = PatientSliceWriter(out_dir)

    try:
        models = {
            fold: FoldModel(
                fold,
                Predictor.from_checkpoint(paths[fold], device=args.device, infer_cfg=infer_cfg),
                set(states[fold]["train_patients"]),
                str(paths[fold]),
            )
            for fold in paths
        }
        result = evaluate_out_of_fold(run_dir, models, cfg, options, progress=not args.no_progress, on_case=on_case)
    except (OutOfFoldError, ValueError) as exc:
        raise StageError(str(exc)) from exc
    result.summary["checkpoints"] = [  # fold first, then the member record (its fold is the same)
        {"fold": fold, **member_record(path, states[fold])} for fold, path in paths.items()
    ]
    result.summary["threshold_source"] = "config"
    result.summary["device"] = args.device
    result.summary["provenance"] = provenance()
    save_resolved_config(cfg, run_dir, "cv")
    result.summary["seconds"] = round(time.perf_counter() - start, 2)
    written = write_eval_outputs(result, out_dir, TITLE, run_dir=run_dir, patient_pages=cfg.eval.patient_pages)
    s = result.summary
    folds = " ".join(f"{f['fold']}:{f['dice_mean']:.3f}" for f in s["folds"])
    print(
        f"cv ({len(paths)} folds, out-of-fold): {s['n_patients']} patients, {s['n_slices']} slices; patient Dice "
        f"mean {s['dice_mean']:.4f} (95% CI {s['dice_ci95'][0]:.4f}-{s['dice_ci95'][1]:.4f}), median "
        f"{s['dice_median']:.4f}; per fold {folds}; {s['seconds']:.1f} s -> {written['report.html']}"
    )
    sweep = s.get("threshold_sweep") or {}
    if sweep:
        table = " ".join(f"{t}:{v['mean']:.3f}" for t, v in sweep["thresholds"].items())
        print(f"threshold sweep (out-of-fold mean patient Dice): {table}; best {sweep['best_mean']}")
    if stores_choice(args, cfg):
        from mri_seg.evaluation.threshold_choice import write_choice

        path = write_choice(run_dir / "checkpoints", s, s["checkpoints"])
        if path is not None:
            print(f"the deliverable's threshold: {sweep['best_mean']} -> {path} (evaluate/infer --checkpoint "
                  f"{run_dir / 'checkpoints'} use it; eval.postprocess.threshold_from_cv)")  # fmt: skip
    return 0


def stores_choice(args: argparse.Namespace, cfg: Config) -> bool:
    """Only the recipe's own out-of-fold run chooses the deliverable's threshold: the shipped fold
    checkpoints, all sequences, the default output folder, no --threshold (eval.postprocess.threshold_from_cv)."""
    return (
        cfg.eval.postprocess.threshold_from_cv
        and cfg.eval.input_sequences == "all"
        and args.checkpoint_name is None
        and args.out_dir is None
    )


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
