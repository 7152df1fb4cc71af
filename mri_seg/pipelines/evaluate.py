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
import time
from pathlib import Path
from typing import Any

from mri_seg.evaluation import INPUT_SEQUENCES
from mri_seg.pipelines._cli import add_config_args, run_main, stage_lock
from mri_seg.pipelines.stage import Stage

STAGE = Stage(  # the pipeline runner's view: RUN/checkpoints is the run's deliverable
    name="evaluate",
    params=("eval",),
    argv=lambda call: ["--run-dir", str(call.run.root), "--checkpoint", str(call.run.checkpoints)],
    inputs=lambda call: [call.run.checkpoints, call.run.manifest, call.run.splits, call.run.patients],
)


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    from mri_seg.evaluation.flow import EvalRequest, SplitModels, check_request, run_evaluation
    from mri_seg.reports.outputs import ReportWriter

    flags = {"eval.split": args.split, **eval_flags(args)}
    request = EvalRequest(args.run_dir, args.config, args.overrides, flags, args.device, not args.no_progress, start=start)
    check_request(request)
    models = SplitModels.resolve(args.checkpoint or [args.run_dir / "checkpoints"], args.checkpoint_name)
    with stage_lock(args.run_dir, "evaluate", argv):
        run_evaluation(request, models, ReportWriter())
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
