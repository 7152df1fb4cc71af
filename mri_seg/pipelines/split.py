"""Stage: patient-level train/val/test split of a prepared run into RUN/splits.csv.

    python -m mri_seg.pipelines.split --run-dir RUN [--config FILE] [--set k=v] [--seed S]

Stratified by tumour burden and institution (see mri_seg.data.splits); fractions,
seed, burden bins and optional cross-validation folds come from the ``split`` config.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mri_seg.config import save_resolved_config
from mri_seg.data.manifest import read_manifest
from mri_seg.data.splits import split_run_dir, split_summary
from mri_seg.pipelines._cli import StageError, add_config_args, config_from_args, run_main, stage_lock
from mri_seg.pipelines.stage import Stage
from mri_seg.rundir import RunDir
from mri_seg.utils.paths import require_dir, require_writable_dir

STAGE = Stage(
    name="split",
    params=("split",),
    argv=lambda call: ["--run-dir", str(call.run.root)],
    inputs=lambda call: [call.run.manifest, call.run.patients],
    outputs=lambda call: [call.run.splits],
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mri_seg.pipelines.split", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory holding manifest.csv")
    parser.add_argument("--seed", type=int, default=None, help="split seed (overrides split.seed)")
    add_config_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args, [] if args.seed is None else [f"split.seed={args.seed}"])
    require_writable_dir(require_dir(args.run_dir, "run directory"), "run directory")
    with stage_lock(args.run_dir, "split", argv):
        try:
            splits = split_run_dir(args.run_dir, cfg)
        except ValueError as exc:  # ConfigError is a ValueError too, and keeps its own message
            raise StageError(str(exc)) from None
        save_resolved_config(cfg, args.run_dir, "split")
    table = split_summary(read_manifest(args.run_dir), splits)
    folds = f", {cfg.split.n_folds} folds" if cfg.split.n_folds > 1 else ""
    print(f"split: seed {cfg.split.seed}{folds} -> {RunDir(args.run_dir).splits}")
    print(table.to_string(index=False))
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
