"""Evaluate a trained checkpoint on one split: patient metrics, plots and an HTML report.

    python -m mri_seg.pipelines.evaluate --run-dir RUN [--split test] [--checkpoint PATH ...]
        [--checkpoint-name best|last]
        [--config FILE] [--set eval.k=v] [--threshold F] [--min-component N] [--tta | --no-tta]
        [--input-sequences all|flair_only] [--device auto|cpu|cuda]

Writes RUN/eval/<split>/{patients.csv, slices.csv, summary.json, dice_by_patient.png,
volume_scatter.png, dice_vs_size.png, uncertainty_vs_dice.png, report.html}, a page per
patient in RUN/eval/<split>/patients/ (eval.patient_pages) and RUN/config_evaluate.yaml
(RUN/eval/<split>_flair_only/ with ``--input-sequences flair_only``).

``--checkpoint`` (repeatable) is a checkpoint file or a folder; the default, RUN/checkpoints,
is the run's deliverable: each fold<K>/ folder's shipped checkpoint when the run was
trained in folds, else its single shipped checkpoint (``train.ship_checkpoint``, or
``--checkpoint-name``). Several checkpoints are an ensemble: their probabilities (and flip
passes) are averaged before thresholding; summary.json lists every file with its sha256.
Given a run's checkpoints folder, the threshold is the one its cv stage chose on
out-of-fold predictions (``postprocess.json`` there, while ``eval.postprocess.threshold_from_cv``;
summary.json ``threshold_source`` says which), unless ``--threshold`` is given.

Config precedence (highest first): explicit flags (--split, --threshold, --min-component,
--tta/--no-tta) > --set > --config file > the config stored in the checkpoint. Only the
``eval`` section can be changed (it is all that evaluate reads, so the pipeline runner
re-runs evaluate exactly when it changes); data/model settings always come from the
checkpoint, because they describe the trained model. Slices are predicted whole at the
training size (the ``infer`` tiling settings are for the infer stage's inputs of any size).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from mri_seg.config import (
    Config,
    InferConfig,
    config_from_dict,
    config_to_dict,
    explicit_values,
    load_config,
    merge_values,
)
from mri_seg.evaluation import INPUT_SEQUENCES
from mri_seg.pipelines._cli import StageError, add_config_args, run_main, stage_lock
from mri_seg.pipelines.stage import Stage
from mri_seg.utils.paths import require_dir, require_file, require_writable_dir
from mri_seg.utils.provenance import provenance

STAGE = Stage(  # the pipeline runner's view: RUN/checkpoints is the run's deliverable
    name="evaluate",
    params=("eval",),
    argv=lambda call: ["--run-dir", str(call.run.root), "--checkpoint", str(call.run.checkpoints)],
    inputs=lambda call: [call.run.checkpoints, call.run.manifest, call.run.splits, call.run.patients],
)

USER_SECTIONS = ("eval",)  # the sections --config/--set may change (mri_seg.config.STAGE_PARAMS["evaluate"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mri_seg.pipelines.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory (manifest.csv, splits.csv)")
    parser.add_argument("--split", choices=("train", "val", "test"), default=None, help="default: eval.split")
    add_checkpoint_args(parser, "default: RUN/checkpoints, the run's deliverable")
    add_eval_options(parser)
    add_config_args(parser)
    return parser


def add_checkpoint_args(parser: argparse.ArgumentParser, default_text: str, required: bool = False) -> None:
    """--checkpoint (repeatable: file or folder) and --checkpoint-name, shared by evaluate and infer."""
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=None, required=required, metavar="PATH",
        help="checkpoint file, or a folder such as RUN/checkpoints (each fold's shipped checkpoint, else the "
        f"single shipped one); repeat for an ensemble ({default_text})",
    )  # fmt: skip
    parser.add_argument(
        "--checkpoint-name", choices=("best", "last"), default=None,
        help="which file a checkpoint folder means (default: train.ship_checkpoint stored in it)",
    )  # fmt: skip


def add_eval_options(parser: argparse.ArgumentParser) -> None:
    """Post-processing, input and device options shared by evaluate and cv."""
    parser.add_argument("--threshold", type=float, default=None, help="probability threshold (eval.postprocess)")
    parser.add_argument(
        "--min-component", type=int, default=None, help="remove predicted components smaller than N pixels per slice"
    )
    parser.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, default=None, help="horizontal-flip test-time augmentation"
    )
    parser.add_argument(
        "--input-sequences", choices=INPUT_SEQUENCES, default=None,
        help="flair_only: FLAIR copied into every channel, as inference does for a single-sequence scan "
        "(eval.input_sequences; outputs go to <split>_flair_only/)",
    )  # fmt: skip
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def eval_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The config keys the shared evaluation flags set (None: not given)."""
    return {
        "eval.postprocess.threshold": args.threshold,
        "eval.postprocess.threshold_from_cv": False if args.threshold is not None else None,  # the user's wins
        "eval.postprocess.min_component_pixels": args.min_component,
        "eval.postprocess.tta_flip": args.tta,
        "eval.input_sequences": args.input_sequences,
    }


def eval_output_dir(run_dir: Path, name: str, input_sequences: str) -> Path:
    """RUN/eval/<name>, or RUN/eval/<name>_flair_only for FLAIR-only input (never mixed up)."""
    return run_dir / "eval" / (name if input_sequences == "all" else f"{name}_{input_sequences}")


def eval_infer_config(cfg: Config) -> InferConfig:
    """How evaluate and cv predict: whole slices at the training size (default tiling, not the
    infer stage's ``infer.*``, so a change there never alters an evaluation), flip TTA from
    ``eval.postprocess``, ``eval.batch_size`` slices per forward pass."""
    return InferConfig(tile_batch=cfg.eval.batch_size, postprocess=cfg.eval.postprocess)


def resolve_config(
    checkpoint_cfg: Config,
    config_path: Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
) -> Config:
    """Checkpoint config < --config < --set < flags, for the eval section only.

    ``flags`` maps dotted keys (``eval.postprocess.threshold``) to values; ``None`` values are skipped.
    """
    overrides = list(overrides or [])
    load_config(config_path, overrides, validate=False)  # keys and types; values are checked after the merge
    values = config_to_dict(checkpoint_cfg)
    explicit = explicit_values(config_path, overrides)
    for section in USER_SECTIONS:
        if isinstance(explicit.get(section), dict):
            values[section] = merge_values(values[section], explicit[section])
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        node = values
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    return config_from_dict(values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    from mri_seg.training.checkpoint import CheckpointError, resolve_checkpoints

    flags = {"eval.split": args.split, **eval_flags(args)}
    resolve_config(Config(), args.config, args.overrides, flags)  # the user's values: checked before any work
    run_dir: Path = args.run_dir
    require_writable_dir(require_dir(run_dir, "run directory"), "run directory")
    try:
        checkpoints = resolve_checkpoints(args.checkpoint or [run_dir / "checkpoints"], args.checkpoint_name)
    except FileNotFoundError as exc:
        raise StageError(f"{exc} (train first, or pass --checkpoint)") from exc
    except CheckpointError as exc:
        raise StageError(str(exc)) from exc
    for path in checkpoints:
        require_file(path, "checkpoint")
    with stage_lock(run_dir, "evaluate", argv):
        return _evaluate(args, run_dir, checkpoints, flags, start)


def _evaluate(args: argparse.Namespace, run_dir: Path, checkpoints: list[Path], flags: dict[str, Any],
              start: float) -> int:  # fmt: skip
    from mri_seg.config import save_resolved_config
    from mri_seg.evaluation.core import EvalOptions, evaluate_run
    from mri_seg.reports.outputs import write_eval_outputs
    from mri_seg.reports.patient_pages import PatientSliceWriter, clear_pages
    from mri_seg.training.checkpoint import CheckpointError, checkpoint_config, load_checkpoint

    checkpoint = checkpoints[0]
    try:
        state = load_checkpoint(checkpoint)
        ckpt_cfg = checkpoint_config(state)
    except CheckpointError as exc:
        raise StageError(str(exc)) from exc
    cfg = resolve_config(ckpt_cfg, args.config, args.overrides, flags)
    ignored = [o for o in args.overrides if o.split(".", 1)[0] not in USER_SECTIONS]
    if ignored:
        print(f"note: evaluate uses the checkpoint's settings outside eval; ignored: {ignored}", file=sys.stderr)
    split = cfg.eval.split
    try:
        EvalOptions.from_config(cfg.eval.postprocess)  # bad settings stop before the models load
    except ValueError as exc:
        raise StageError(str(exc)) from exc

    from mri_seg.evaluation.threshold_choice import report_threshold, resolve_threshold
    from mri_seg.inference.predictor import Predictor

    try:
        predictor = Predictor.from_checkpoints(checkpoints, device=args.device, infer_cfg=eval_infer_config(cfg))
    except ValueError as exc:  # unusable device or inference settings, members that disagree
        raise StageError(str(exc)) from exc
    cfg.eval.postprocess, threshold = resolve_threshold(
        cfg.eval.postprocess, args.checkpoint or [run_dir / "checkpoints"], predictor.members
    )
    report_threshold(threshold)
    options = EvalOptions.from_config(cfg.eval.postprocess)
    out_dir = eval_output_dir(run_dir, split, cfg.eval.input_sequences)
    on_case = None
    if cfg.eval.patient_pages:
        clear_pages(out_dir)  # pages of an earlier evaluation would show other predictions
        on_case = PatientSliceWriter(out_dir)
    try:
        result = evaluate_run(run_dir, split, predictor, cfg, options, progress=not args.no_progress, on_case=on_case)
    except ValueError as exc:
        raise StageError(str(exc)) from exc
    del state["model"]
    result.summary["checkpoint"] = {
        "path": str(checkpoint.resolve()),
        "epoch": state.get("epoch"),
        "best_metric": state.get("best_metric"),
    }
    result.summary["checkpoints"] = predictor.members  # every member: path, sha256, epoch, fold
    result.summary["threshold_source"] = threshold.source
    result.summary["device"] = args.device
    result.summary["provenance"] = provenance()
    save_resolved_config(cfg, run_dir, "evaluate")
    result.summary["seconds"] = round(time.perf_counter() - start, 2)
    paths = write_eval_outputs(result, out_dir, run_dir=run_dir, patient_pages=cfg.eval.patient_pages)
    s = result.summary
    ensemble = f", ensemble of {len(checkpoints)} checkpoints" if len(checkpoints) > 1 else ""
    print(
        f"{split}: {s['n_patients']} patients, {s['n_slices']} slices; patient Dice mean {s['dice_mean']:.4f} "
        f"(95% CI {s['dice_ci95'][0]:.4f}-{s['dice_ci95'][1]:.4f}), median {s['dice_median']:.4f}; "
        f"{s['seconds']:.1f} s{ensemble} -> {paths['report.html']}"
    )
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
