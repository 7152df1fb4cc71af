"""Stage: scan a Kaggle-LGG-layout folder into RUN/manifest.csv, RUN/patients.csv, RUN/prepare_report.json.

    python -m mri_seg.pipelines.prepare --data-dir DIR --run-dir RUN [--config FILE] [--set k=v]
                                        [--workers N] [--strict]

DIR: the downloaded dataset root, its kaggle_3m/ folder, or any folder of patient folders.
Defective slices are excluded and listed on stderr and in the report. With --strict any
error or warning (defect, missing data.csv, folder without a data.csv row) fails the stage
after listing them all: the report is written, manifest.csv and patients.csv are not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mri_seg.config import save_resolved_config
from mri_seg.data.kaggle_lgg import INFO, DatasetError, Problem, StrictPrepareError, prepare_dataset
from mri_seg.pipelines._cli import StageError, add_config_args, config_from_args, run_main, stage_lock
from mri_seg.pipelines.stage import Stage
from mri_seg.utils.paths import require_dir, require_writable_dir

STAGE = Stage(
    name="prepare",
    params=("prepare",),
    argv=lambda call: ["--data-dir", str(call.require_data_dir("prepare")), "--run-dir", str(call.run.root)],
    inputs=lambda call: [call.require_data_dir("prepare")],
    outputs=lambda call: [call.run.manifest, call.run.patients],
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mri_seg.pipelines.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--data-dir", type=Path, required=True, help="dataset folder (Kaggle LGG layout)")
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory to write the tables into")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: prepare.workers)")
    parser.add_argument("--strict", action="store_true", help="fail on any defect (sets prepare.strict=true)")
    add_config_args(parser)
    return parser


def print_problems(problems: list[Problem]) -> None:
    """Errors and warnings one per line on stderr; info items as one count line."""
    for p in problems:
        if p.severity != INFO:
            print(f"prepare: {p.format()}", file=sys.stderr)
    infos = [p for p in problems if p.severity == INFO]
    if infos:
        kinds = sorted({p.kind for p in infos})
        print(f"prepare: info: {len(infos)} note(s) ({', '.join(kinds)}) in the report", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    extra = []
    if args.workers is not None:
        extra.append(f"prepare.workers={args.workers}")
    if args.strict:
        extra.append("prepare.strict=true")
    cfg = config_from_args(args, extra)
    require_dir(args.data_dir, "data folder")
    require_writable_dir(args.run_dir, "run directory")
    with stage_lock(args.run_dir, "prepare", argv):
        try:
            result = prepare_dataset(args.data_dir, args.run_dir, cfg)
        except StrictPrepareError as exc:
            print_problems(exc.result.problems)
            print(exc.result.summary_line(args.run_dir), file=sys.stderr)
            raise StageError(f"prepare {exc}") from None
        except DatasetError as exc:
            print_problems(exc.problems)
            raise StageError(str(exc)) from None
        save_resolved_config(cfg, args.run_dir, "prepare")
    print_problems(result.problems)
    print(result.summary_line(args.run_dir))
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
