"""Stage: write a synthetic LGG-like dataset in the Kaggle layout.

    python -m mri_seg.pipelines.synthesize --out DIR --patients 16 --seed 0 [--size 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mri_seg.data.synthetic import generate_dataset
from mri_seg.pipelines._cli import StageError, run_main
from mri_seg.pipelines.stage import Stage

STAGE = Stage(name="synthesize")  # writes where its pipeline args say (--out); reads no config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mri_seg.pipelines.synthesize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="folder to write patient folders and data.csv into")
    parser.add_argument("--patients", type=int, default=16, help="number of patients (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> byte-identical files")
    parser.add_argument("--size", type=int, default=256, help="slice height/width in pixels (default 256)")
    parser.add_argument("--min-slices", type=int, default=20)
    parser.add_argument("--max-slices", type=int, default=60)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        out = generate_dataset(args.out, args.patients, seed=args.seed, min_slices=args.min_slices,
                               max_slices=args.max_slices, size=args.size)  # fmt: skip
    except ValueError as exc:
        raise StageError(str(exc)) from exc
    n_slices = sum(1 for p in out.glob("TCGA_*/*.tif") if not p.name.endswith("_mask.tif"))
    print(f"synthesize: {args.patients} patients, {n_slices} slices ({args.size}x{args.size}), seed {args.seed} "
          f"-> {out} ({time.perf_counter() - start:.1f} s)", file=sys.stdout)  # fmt: skip
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
