"""Segment new scans with a trained checkpoint: masks, overlays and ``predictions.csv``.

    python -m mri_seg.pipelines.infer --checkpoint CKPT [--checkpoint CKPT2 ...] --input SCANS --output OUT
        [--checkpoint-name best|last] [--backend torch|onnxruntime]
        [--config FILE] [--set infer.k=v] [--device auto|cpu|cuda] [--tile-size N] [--overlap F]
        [--tile-batch N] [--tta | --no-tta] [--threshold F] [--min-component N]
        [--save-probabilities] [--with-truth] [--overwrite] [--no-progress]

    torchrun --nproc_per_node=N -m mri_seg.pipelines.infer ...   # scans sharded over N processes

SCANS: a folder (searched recursively) or one file: Kaggle patient folders of TIFF
slices, 2D TIFF/PNG/JPEG images, 3D/4D NIfTI volumes, DICOM studies (docs/dicom.md: a
NIfTI mask and a DICOM SEG per study). Only the ``infer`` section of
the config is used: the recipe's, stored in the (first) checkpoint, so the deliverable
segments as its recipe says (flip TTA, largest component, ...), then --config, --set,
flags; the model, its normalisation and ``data.scale`` come from the checkpoint. OUT gets the
masks and overlays (mirroring the input tree), ``predictions.csv`` (with the review
flag), ``report.html`` + ``report_files/`` (a page per scan; ``infer.report``) and
``config_infer.yaml`` (the checkpoint's config with this run's ``infer`` section).
``--checkpoint`` is a file or a folder (RUN/checkpoints: the run's deliverable, each
fold's shipped checkpoint as an ensemble; or a bundle written by ``export``), repeatable; several checkpoints average their
probabilities before thresholding. ``predictions.csv`` names the files (``checkpoints``)
and their sha256 (``checkpoint_sha256``), ';'-joined. Given a run's checkpoints folder, the
threshold is the one its cv stage chose on out-of-fold predictions (``postprocess.json``
there; ``infer.postprocess.threshold_from_cv``), unless ``--threshold`` is given.

Exit code: 0 when every scan is ok, 1 when some failed, 2 when the batch
could not start (bad checkpoint, no scans, OUT would overwrite inputs). Under torchrun
rank 0 returns the merged table's status and the other ranks 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mri_seg.config import Config, config_from_dict, config_to_dict, save_resolved_config
from mri_seg.evaluation.threshold_choice import report_review, report_threshold, resolve_review, resolve_threshold
from mri_seg.inference.folder import Report, run_folder
from mri_seg.inference.journal import status_counts
from mri_seg.inference.plan import InferError, plan_folder
from mri_seg.inference.segment import flair_view_note, read_options
from mri_seg.inference.sharding import process_group, shard_from_env
from mri_seg.pipelines._cli import StageError, add_config_args, config_from_args, run_main, stage_lock
from mri_seg.pipelines.evaluate import add_checkpoint_args
from mri_seg.pipelines.stage import Stage
from mri_seg.reports import inference_report
from mri_seg.utils.paths import require_input, require_writable_dir

STAGE = Stage(  # the pipeline runner's view (--input/--output come from the pipeline file)
    name="infer",
    params=("infer",),
    argv=lambda call: ["--checkpoint", str(call.run.checkpoints)],
    inputs=lambda call: [call.run.checkpoints],
)


def _page_path(out_dir: Path, rel: str) -> Path:
    return out_dir / inference_report.ASSETS_DIR / f"{inference_report.scan_key(rel)}.html"


# The folder inference's viewer pages (infer.report), rendered by mri_seg.reports.
REPORT = Report(_page_path, inference_report.write_scan_page, inference_report.write_inference_report)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mri_seg.pipelines.infer", description=__doc__.split("\n")[0])
    add_checkpoint_args(p, "e.g. RUN/checkpoints/best.pt", required=True)
    p.add_argument("--input", type=Path, required=True, help="folder of scans (recursive) or one scan file")
    p.add_argument("--output", type=Path, required=True, help="output folder (never the input folder)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--backend", choices=("torch", "onnxruntime"), default=None,
        help="what runs the forward passes (infer.backend; onnxruntime: CPU, pip install 'mri_seg[onnx]')",
    )  # fmt: skip
    p.add_argument(
        "--tile-size", type=int, default=None, help="sliding-window tile (infer.tile_size; 0 = training size)"
    )
    p.add_argument("--overlap", type=float, default=None, help="tile overlap fraction in [0, 1) (infer.overlap)")
    p.add_argument("--tile-batch", type=int, default=None, help="tiles/slices per forward pass (infer.tile_batch)")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None, help="horizontal-flip TTA")
    p.add_argument("--threshold", type=float, default=None, help="probability threshold (infer.postprocess)")
    p.add_argument("--min-component", type=int, default=None, help="drop components smaller than N pixels per slice")
    p.add_argument("--save-probabilities", action="store_true", default=None, help="also write probability maps")
    p.add_argument("--with-truth", action="store_true", help="score against *_mask files found beside the scans (dice)")
    p.add_argument("--overwrite", action="store_true", default=None, help="recompute scans whose outputs exist")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_args(p)
    return p


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """Command-line flags as ``key.path=value`` overrides (applied after --set)."""
    flags = {
        "infer.backend": args.backend,
        "infer.tile_size": args.tile_size,
        "infer.overlap": args.overlap,
        "infer.tile_batch": args.tile_batch,
        "infer.postprocess.tta_flip": args.tta,
        "infer.postprocess.threshold": args.threshold,
        "infer.postprocess.threshold_from_cv": False if args.threshold is not None else None,  # the user's wins
        "infer.postprocess.min_component_pixels": args.min_component,
        "infer.save_probabilities": args.save_probabilities,
        "infer.overwrite": args.overwrite,
    }
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in flags.items() if v is not None]


def recipe_settings(first_checkpoint: Path, args: argparse.Namespace) -> Config:
    """The ``infer`` section this run uses: the one stored in the first checkpoint (its recipe's:
    ``infer --checkpoint RUN/checkpoints`` post-processes as the recipe's cv measured), then
    ``--config``, ``--set`` and flags."""
    from mri_seg.evaluation.flow import resolve_config
    from mri_seg.training.checkpoint import checkpoint_config, load_checkpoint

    stored = checkpoint_config(load_checkpoint(first_checkpoint, map_location="cpu"))
    return resolve_config(stored, args.config, list(args.overrides) + flag_overrides(args), sections=("infer",))


def resolved_config(checkpoint_cfg: Config, cli_cfg: Config) -> Config:
    """What this run used: the checkpoint's data/model settings with this run's infer section."""
    resolved = config_from_dict(config_to_dict(checkpoint_cfg))
    resolved.infer = cli_cfg.infer
    return resolved


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args, flag_overrides(args))  # values outside their rules: refused here
    for given_path in args.checkpoint:  # a file, or a run's checkpoints/ folder
        require_input(given_path, "checkpoint")
    require_input(args.input, "input")
    require_writable_dir(args.output, "output folder")
    shard = shard_from_env()
    try:
        plan = plan_folder(args.input, args.output, reserved=(inference_report.REPORT_FILE,))
    except InferError as exc:
        raise StageError(str(exc)) from exc

    from mri_seg.inference.predictor import EnsembleError, Predictor, resolve_device  # torch/monai after cheap checks
    from mri_seg.training.checkpoint import CheckpointError, resolve_checkpoints

    device = args.device
    if shard.distributed and device in ("cuda", "auto"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(shard.local_rank)
            device = f"cuda:{shard.local_rank}"
    given = " ".join(map(str, args.checkpoint))
    try:
        resolve_device(device)
    except ValueError as exc:
        raise StageError(str(exc)) from exc
    try:
        checkpoints = resolve_checkpoints(args.checkpoint, args.checkpoint_name)
        cfg = recipe_settings(checkpoints[0], args)
        predictor = Predictor.from_checkpoints(checkpoints, device=device, infer_cfg=cfg.infer)
    except (CheckpointError, EnsembleError, FileNotFoundError) as exc:
        raise StageError(f"cannot use checkpoint {given}: {exc}") from exc
    except ValueError as exc:  # inference settings that do not fit the checkpoints, members that disagree
        raise StageError(str(exc)) from exc
    cfg.infer.postprocess, threshold = resolve_threshold(cfg.infer.postprocess, args.checkpoint, predictor.members)
    cfg.infer.review, review = resolve_review(cfg.infer.review, args.checkpoint, predictor.members)
    if shard.is_main:
        report_threshold(threshold)
        report_review(review)
        note = flair_view_note(cfg.infer.postprocess)
        if note:
            print(note, file=sys.stderr)
    try:
        read_options(predictor, cfg.infer)  # bad infer.nifti_axis / infer.sequences: stop before any scan
    except ValueError as exc:
        raise StageError(str(exc)) from exc

    with stage_lock(args.output, "infer", argv), process_group(shard):
        if shard.is_main:
            args.output.mkdir(parents=True, exist_ok=True)
            save_resolved_config(resolved_config(predictor.config, cfg), args.output, "infer")
        rows = run_folder(
            predictor, plan, cfg.infer, with_truth=args.with_truth, shard=shard, progress=not args.no_progress,
            report=REPORT,
        )
    counts = status_counts(rows)
    if shard.distributed:
        print(f"infer[rank {shard.rank}/{shard.world_size}]: {len(shard.take(plan.scans))} scans", file=sys.stderr)
    if not shard.is_main:
        return 0  # rank 0 reports the merged table's status
    print(
        f"infer: {len(rows)} scans: {counts['ok']} ok ({counts['reused']} unchanged since the last run, kept), "
        f"{counts['error']} failed -> {args.output / 'predictions.csv'}"
        + (f", report {args.output / 'report.html'}" if cfg.infer.report else ""),
        file=sys.stderr,
    )
    return 1 if counts["error"] else 0


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
