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
import time
from pathlib import Path

from mri_seg.pipelines._cli import add_config_args, run_main, stage_lock
from mri_seg.pipelines.evaluate import add_eval_options, eval_flags
from mri_seg.pipelines.stage import Stage

STAGE = Stage(
    name="cv",
    params=("eval",),
    argv=lambda call: ["--run-dir", str(call.run.root)],
    # the fold folders, not RUN/checkpoints: cv writes its threshold choice there
    inputs=lambda call: [*(call.run.fold_dirs() or [call.run.checkpoints]), call.run.manifest, call.run.splits,
                         call.run.patients],  # fmt: skip
    outputs=lambda call: [call.run.eval_dir("cv") / "summary.json"],
)


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mri_seg.evaluation.flow import EvalRequest, OutOfFoldModels, check_request, run_evaluation
    from mri_seg.reports.outputs import ReportWriter

    request = EvalRequest(args.run_dir, args.config, args.overrides, eval_flags(args), args.device,
                          not args.no_progress, out_dir=args.out_dir)  # fmt: skip
    check_request(request)
    models = OutOfFoldModels(args.run_dir, args.checkpoint_name, default_out_dir=args.out_dir is None)
    with stage_lock(args.run_dir, "cv", argv):
        request.start = time.perf_counter()
        run_evaluation(request, models, ReportWriter())
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
