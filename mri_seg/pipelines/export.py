"""Export a trained model as a self-contained bundle you can hand to someone (MONAI's bundle layout).

    python -m mri_seg.pipelines.export --checkpoint RUN/checkpoints --out MODEL_DIR
        [--checkpoint-name best|last] [--no-onnx] [--version V] [--authors TEXT] [--copyright TEXT]
        [--overwrite]

``--checkpoint``: a run's checkpoints folder (every fold's shipped checkpoint: the ensemble),
one fold folder, or one ``.pt`` file. MODEL_DIR gets ``configs/metadata.json`` (MONAI's
bundle metadata: input channels by sequence name, context slices, scale, normalisation,
output meaning), ``configs/mri_seg.json`` (the members with their configs and sha256, the
threshold cv chose), ``models/`` (each member's state dict and ONNX graph) and
``docs/README.md`` (training data, recipe, out-of-fold and test Dice read from the run).
``infer --checkpoint MODEL_DIR`` then gives the masks ``infer --checkpoint RUN/checkpoints``
gives; docs/export.md says more, docs/reference/bundle.md describes every file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mri_seg.pipelines._cli import StageError, run_main
from mri_seg.utils.paths import require_input, require_writable_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mri_seg.pipelines.export", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="RUN/checkpoints, a fold folder, or a .pt file")
    p.add_argument("--out", type=Path, required=True, help="the bundle folder to write (MODEL_DIR)")
    p.add_argument(
        "--checkpoint-name", choices=("best", "last"), default=None,
        help="which file a checkpoint folder means (default: train.ship_checkpoint stored in it)",
    )  # fmt: skip
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX graphs (no onnxruntime backend then)")
    p.add_argument("--version", default="0.1.0", help="the bundle's version (metadata.json)")
    p.add_argument("--authors", default="", help="metadata.json authors")
    p.add_argument("--copyright", default="", help="metadata.json copyright")
    p.add_argument("--overwrite", action="store_true", help="replace MODEL_DIR if it exists")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    require_input(args.checkpoint, "checkpoint")
    require_writable_dir(args.out, "bundle folder")
    from mri_seg.export.bundle import export_bundle
    from mri_seg.inference.predictor import EnsembleError
    from mri_seg.training.checkpoint import CheckpointError

    try:
        out = export_bundle(
            args.checkpoint, args.out, args.checkpoint_name, overwrite=args.overwrite, with_onnx=not args.no_onnx,
            version=args.version, authors=args.authors, copyright_text=args.copyright,
        )  # fmt: skip
    except (CheckpointError, EnsembleError) as exc:
        raise StageError(f"cannot export {args.checkpoint}: {exc}") from exc
    print(f"export: {args.checkpoint} -> {out} (configs/metadata.json, models/, docs/README.md)", file=sys.stderr)
    return 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
