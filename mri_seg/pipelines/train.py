"""Train a UNet on a prepared and split run directory.

    python -m mri_seg.pipelines.train --run-dir RUN [--config FILE] [--set k=v]
        [--device auto|cpu|cuda] [--resume | --restart] [--epochs N] [--fold K | --all-folds]
        [--init-from CKPT_OR_MODEL_DIR]
    torchrun --nproc_per_node=N -m mri_seg.pipelines.train --run-dir RUN ...   # DDP

Writes RUN/train_log.csv, RUN/checkpoints/{last,best}.pt and RUN/config_train.yaml.
``--fold K`` (splits.csv made with split.n_folds > 1) trains on the other folds' train+val
patients, validates on fold K and writes RUN/checkpoints/fold<K>/{last,best}.pt,
train_log.csv and config_train.yaml; ``--all-folds`` trains every fold in turn (each
resumable on its own with ``--resume``). Test patients are never used.

``--resume`` continues an unfinished run (killed, or stopped by the time cap) from its
last.pt; without ``--config`` the checkpoint's config is the base that
``--set``/``--epochs``/``--device`` change. Any difference in the training config
(data, augment, model, train sections; not mri_seg.params.RUN_ONLY_KEYS such as train.max_time_minutes) or the data is
refused with one line naming the keys (exit 2); a finished run is reported finished and
not trained further. ``--restart`` moves the run's previous training (every fold's too)
to RUN/superseded/train-<UTC time>/ and trains afresh. Without either, an existing
last.pt is refused (exit 2).

``--init-from`` starts from trained weights (a checkpoint, RUN/checkpoints, or a bundle from
``export``; with several members each fold starts from the member of the same fold) instead
of a fresh model: fine-tuning with this run's data and config. A member whose input
differs (input channels, sequences, context, scale, size, normalisation) or whose weights do
not fit ``model.*`` is refused with one line (mri_seg.training.init_from).

In a pipeline (:data:`STAGE`) the runner passes ``--resume`` only to continue the same
unfinished run (same fingerprint; killed, failed or stopped by the time cap), and
otherwise ``--restart``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mri_seg.config import Config, load_config, save_resolved_config
from mri_seg.data.manifest import FoldError, fold_ids, read_splits
from mri_seg.pipelines._cli import StageError, add_config_args, run_main, stage_lock
from mri_seg.pipelines.stage import Previous, Stage, StageCall
from mri_seg.rundir import RunDir
from mri_seg.training.checkpoint import CheckpointError, load_checkpoint
from mri_seg.training.distributed import env_context
from mri_seg.training.resume import TRAIN_PARAMS, training_status
from mri_seg.utils.paths import require_dir, require_input, require_writable_dir


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mri_seg.pipelines.train", description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory (manifest.csv, splits.csv)")
    add_config_args(parser)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default: train.device")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the unfinished run in RUN/checkpoints/last.pt")
    mode.add_argument(
        "--restart", action="store_true", help="move the previous training run to RUN/superseded/ and train afresh"
    )
    parser.add_argument("--epochs", type=int, default=None, help="total epochs (train.epochs)")
    folds = parser.add_mutually_exclusive_group()
    folds.add_argument("--fold", type=int, default=None, metavar="K",
                       help="train cross-validation fold K (held out for validation) into RUN/checkpoints/fold<K>/")
    folds.add_argument("--all-folds", action="store_true", help="train every cross-validation fold in turn")
    parser.add_argument(
        "--init-from", type=Path, default=None, metavar="MODEL",
        help="start from trained weights: a checkpoint, a run's checkpoints folder or an exported bundle "
        "(several members: each fold from its own); the input settings must match this run's config",
    )  # fmt: skip
    return parser


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    extra = []
    if args.epochs is not None:
        extra.append(f"train.epochs={args.epochs}")
    if args.device is not None:
        extra.append(f"train.device={args.device}")
    return extra


def _config(args: argparse.Namespace, fold: int | None = None) -> Config:
    """--config (or, resuming without one, the checkpoint's config) + --set + flag overrides."""
    overrides = list(args.overrides) + _flag_overrides(args)
    last = RunDir(args.run_dir).training(fold).last
    if args.resume and args.config is None and last.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "checkpoint_config.yaml"
            base.write_text(yaml.safe_dump(load_checkpoint(last)["config"]))
            return load_config(base, overrides)
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    load_config(args.config, list(args.overrides) + _flag_overrides(args))  # bad values: refused before any work
    if args.init_from is not None:
        require_input(args.init_from, "--init-from model")
    require_writable_dir(require_dir(args.run_dir, "run directory"), "run directory")
    from mri_seg.training.engine import TrainingError, train

    with stage_lock(args.run_dir, "train", argv):
        try:
            folds = _folds(args)
            for i, fold in enumerate(folds):
                cfg = _config(args, fold)
                restart = args.restart and i == 0  # the first moves the whole previous run (all folds) aside
                summary = train(args.run_dir, cfg, resume=args.resume, restart=restart, device=cfg.train.device,
                                fold=fold, init_from=args.init_from)  # fmt: skip
                if env_context().is_main:
                    print(_summary_line(summary))
            if args.all_folds and env_context().is_main:
                save_resolved_config(cfg, args.run_dir, "train")
                print(f"train done: {len(folds)} folds -> {RunDir(args.run_dir).checkpoints}/fold{{{','.join(map(str, folds))}}}")
        except (TrainingError, CheckpointError, FoldError) as exc:
            raise StageError(str(exc)) from exc
    return 0


def _folds(args: argparse.Namespace) -> list[int | None]:
    """[None] (no folds), [K], or every fold of splits.csv (checked before any training)."""
    if args.fold is None and not args.all_folds:
        return [None]
    path = RunDir(args.run_dir).splits
    folds = fold_ids(read_splits(args.run_dir), path)
    if args.fold is not None and args.fold not in folds:
        raise FoldError(f"fold {args.fold} is out of range: {path} has folds {folds[0]}..{folds[-1]}")
    chosen: list[int | None] = [args.fold] if args.fold is not None else [*folds]
    return chosen


def _summary_line(s: dict) -> str:
    mean, median = s["best_val_patient_dice_mean"], s["best_val_patient_dice_median"]
    scores = f"{mean:.4f}/{median:.4f}" if mean is not None else "n/a"
    what = "train" if s.get("fold") is None else f"train fold {s['fold']}"
    best = (f"best epoch {s['best_epoch']}, val patient Dice mean/median {scores}; "
            f"checkpoints: best {s['best_checkpoint']}, last {s['last_checkpoint']}")
    if s["stopped"] == "already_finished":
        return (f"{what}: nothing to do, {s['last_checkpoint']} is a finished run ({s['epochs_completed']} of "
                f"{s['epochs']} epochs; --restart trains afresh); {best}")
    timing = f"{s['wall_seconds'] / 60:.1f} min, {s['images_per_s'] or 0:.1f} img/s"
    if s["stopped"] == "time_cap":
        return (f"{what} STOPPED BY THE TIME CAP (train.max_time_minutes): {s['epochs_completed']} of "
                f"{s['epochs']} epochs, unfinished (--resume continues it), {timing}; {best}")
    return f"{what} done: {s['epochs_completed']} epochs ({s['stopped']}), {timing}; {best}"


# --------------------------------------------------------------------------- the pipeline runner's view


def run_training_status(call: StageCall) -> dict | None:
    """:func:`mri_seg.training.resume.training_status` of the run (every fold's with ``--all-folds``)."""
    folds = fold_ids(read_splits(call.run.root), call.run.splits) if "--all-folds" in call.args else None
    return training_status(call.run.root, folds)


def train_mode(call: StageCall, previous: Previous, log: Callable[[str], Any]) -> tuple[list[str], bool]:
    """``([flag], up_to_date)``: ``--resume`` only for the same unfinished run, else ``--restart``.
    ``up_to_date``: same fingerprint, recorded ``ok``, and training finished (every fold's, with
    ``--all-folds``)."""
    record = previous.record
    same = record is not None and record.get("fingerprint") == previous.fingerprint
    status = run_training_status(call) if same and not previous.forced else None
    if record is None or status is None:
        return ["--restart"], False
    if status["finished"]:  # not recorded ok (e.g. killed while closing): --resume just confirms it
        return (["--restart"], True) if record.get("status") == "ok" else (["--resume"], False)
    log(f"[train] the same training is unfinished ({status['state']}): resuming it")
    return ["--resume"], False


def unfinished_note(call: StageCall) -> str | None:
    """A closing line when the training is unfinished (the time cap stopped it)."""
    status = run_training_status(call)
    if status is None or status["finished"]:
        return None
    return (f"note: training is UNFINISHED ({status['state']}): the train.max_time_minutes safety cap "
            "stopped it, and later stages used the model as it was; re-run this command to continue it")


def _outputs(call: StageCall) -> list[Path]:
    if "--all-folds" in call.args:  # config_train.yaml is written after the last fold
        return [call.run.checkpoints, call.run.config("train")]
    own = call.run.training()
    return [own.last, own.best, own.train_log]


STAGE = Stage(
    name="train",
    params=TRAIN_PARAMS,  # also what --resume compares
    argv=lambda call: ["--run-dir", str(call.run.root)],  # the runner adds --resume or --restart (train_mode)
    inputs=lambda call: [call.run.manifest, call.run.splits],
    outputs=_outputs,
    mode=train_mode,
    note=unfinished_note,
)


def cli() -> None:
    run_main(main)


if __name__ == "__main__":
    cli()
