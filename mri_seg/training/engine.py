"""The training loop: data -> model -> loss (train.loss) -> AdamW, patient-level validation, checkpoints.

Outputs in the run dir (rank 0 only): ``train_log.csv``, ``config_train.yaml``,
``checkpoints/last.pt`` (every epoch) and ``checkpoints/best.pt`` (best mean val
patient Dice), optional ``tensorboard/``.

Reproducibility: every epoch reseeds torch/numpy/random, the augmentation and the
sampler from ``(train.seed, epoch, rank)``, and the LR schedule follows the configured
epochs only (never wall time); so the same data, config and seed on the same machine
give the same weights, whatever else the machine is doing. ``train.max_time_minutes``
is a safety cap: when it fires the run stops after an epoch, says so, and stays
unfinished (resumable).

Resume and restart (training is never silently extended or mixed):

- ``resume=True`` continues an *unfinished* ``last.pt`` (killed, or stopped by the time
  cap) at the same point of the schedule with the same data order; a killed run loses
  at most the epoch that was running. It refuses other data (``data_hash``: sha256 of
  manifest.csv + splits.csv) and any difference in the training config
  (``STAGE_PARAMS["train"]``), naming the differing keys. A finished run is not trained
  further: resume reports it finished and returns. Without a ``last.pt`` it starts at
  epoch 1. The config stored in the checkpoints stays the one the run started with.
- ``restart=True`` moves the run's previous training outputs (all folds' too: a run is
  never a mix of trainings) into ``RUN/superseded/`` (see :mod:`mri_seg.training.rundir`)
  and trains from epoch 1.
- neither, with an existing ``last.pt``: refused rather than overwriting it.

Cross-validation folds (``fold=K``, splits.csv made with ``split.n_folds > 1``): train on
the train+val patients whose fold is not K, validate on fold K, never touch test
patients; everything (checkpoints, ``train_log.csv``, ``config_train.yaml``,
``tensorboard/``) goes to ``RUN/checkpoints/fold<K>/`` and resumes there. Checkpoints
record ``fold`` and ``train_patients`` (the patients whose slices were trained on), so
out-of-fold prediction can prove it never scores a patient with a model that saw it.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from mri_seg.config import Config, config_from_dict, config_to_dict, save_resolved_config, stage_params
from mri_seg.data.dataset import SliceDataset, build_dataset, dataset_from_frame
from mri_seg.data.manifest import MANIFEST_FILE, SPLITS_FILE, FoldError, fold_patients, manifest_for_patients
from mri_seg.losses import build_loss
from mri_seg.models import build_model, size_divisor
from mri_seg.preprocess import channels_per_slice, check_input_channels, normalisation_spec, scaled_size
from mri_seg.training import distributed as D
from mri_seg.training.checkpoint import load_checkpoint, save_checkpoint
from mri_seg.training.optim import (
    build_optimizer,
    build_scheduler,
    current_lr,
    step_after_validation,
    step_per_batch,
)
from mri_seg.training.rundir import CHECKPOINT_DIR, is_finished, supersede
from mri_seg.training.runlog import LOG_FILE, TrainLog
from mri_seg.training.runtime import (
    Precision,
    configure_backend,
    epoch_seed,
    make_precision,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    worker_init_fn,
)
from mri_seg.training.samplers import build_train_sampler
from mri_seg.training.validate import validate


class TrainingError(ValueError):
    """Training cannot start or resume (bad sizes, missing/incompatible checkpoint)."""


def data_hash(run_dir: str | Path) -> str:
    """sha256 of manifest.csv followed by splits.csv: identifies the data a model saw."""
    digest = hashlib.sha256()
    for name in (MANIFEST_FILE, SPLITS_FILE):
        path = Path(run_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the prepare and split stages first")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fold_dir(run_dir: str | Path, fold: int) -> Path:
    """``RUN/checkpoints/fold<K>``: one cross-validation fold's checkpoints and log."""
    return Path(run_dir) / CHECKPOINT_DIR / f"fold{fold}"


def output_dir(run_dir: str | Path, fold: int | None = None) -> Path:
    """Where a training run writes its log and config: the run dir, or its fold's folder."""
    return Path(run_dir) if fold is None else fold_dir(run_dir, fold)


def checkpoint_paths(run_dir: str | Path, fold: int | None = None) -> tuple[Path, Path]:
    """(last.pt, best.pt) of the run, or of one cross-validation fold."""
    folder = Path(run_dir) / CHECKPOINT_DIR if fold is None else fold_dir(run_dir, fold)
    return folder / "last.pt", folder / "best.pt"


def _datasets(run_dir: Path, cfg: Config, fold: int | None, progress: bool) -> tuple[SliceDataset, SliceDataset, list[str]]:
    """Train and val datasets (the run's train/val splits, or fold K's complement / fold K) and
    the ids of the patients trained on."""
    if fold is None:
        train_ds = build_dataset(run_dir, "train", cfg, train=True, progress=progress)
        val_ds = build_dataset(run_dir, "val", cfg, train=False, progress=progress)
    else:
        try:
            training, held_out = fold_patients(run_dir, fold)
        except FoldError as exc:
            raise TrainingError(str(exc)) from exc
        frames = [manifest_for_patients(run_dir, p) for p in (training, held_out)]
        for frame, what in zip(frames, ("training", "held-out")):
            if frame.empty:
                raise TrainingError(f"fold {fold}: no {what} slices in {run_dir / MANIFEST_FILE}")
        train_ds = dataset_from_frame(frames[0], cfg, train=True, progress=progress)
        val_ds = dataset_from_frame(frames[1], cfg, train=False, progress=progress)
    return train_ds, val_ds, sorted(set(train_ds.patient_ids))


# --------------------------------------------------------------------------- setup


def _check_sizes(datasets: list[SliceDataset], cfg: Config) -> None:
    """Scaled slices must be a multiple of the UNet's size divisor."""
    div = size_divisor(cfg.model)
    for ds in datasets:
        for h, w in ds.frame[["height", "width"]].drop_duplicates().itertuples(index=False):
            sh, sw = scaled_size(int(h), int(w), cfg.data.scale)
            if sh % div or sw % div:
                raise TrainingError(
                    f"data.scale={cfg.data.scale} turns {h}x{w} slices into {sh}x{sw}, which is not a multiple "
                    f"of {div} (the product of model.strides); pick a scale giving multiples of {div}"
                )


def _check_recipe(cfg: Config) -> torch.nn.Module:
    """Build the loss and a throw-away model, check the 2.5D channel count; any error is a TrainingError."""
    try:
        loss_fn = build_loss(cfg.train)
        build_model(cfg.model)
        channels_per_slice(cfg.model.in_channels, cfg.data.context_slices)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    return loss_fn


def _check_channels(datasets: list[SliceDataset], cfg: Config) -> None:
    """``model.in_channels`` must be the slices' channels x (2 * data.context_slices + 1)."""
    for ds in datasets:
        sequences = ds.raw(0)[0].shape[2]
        try:
            check_input_channels(cfg.model.in_channels, cfg.data.context_slices, sequences, "the training slices")
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc


def _loaders(
    train_ds: SliceDataset, val_ds: SliceDataset, cfg: Config, ctx: D.DistContext, device: torch.device
) -> tuple[DataLoader, DataLoader, Any]:
    sampler = build_train_sampler(
        train_ds.has_tumour, cfg.train.tumour_oversample, ctx.world_size, ctx.rank, cfg.train.seed
    )
    common = dict(
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init_fn,
    )
    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        drop_last=len(sampler) > cfg.train.batch_size,  # no size-1 tail batch (BatchNorm)
        **common,
    )
    val_part = Subset(val_ds, list(range(ctx.rank, len(val_ds), ctx.world_size)))
    val_loader = DataLoader(val_part, batch_size=cfg.train.batch_size, shuffle=False, **common)
    return train_loader, val_loader, sampler


def _diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        full = f"{prefix}.{k}" if prefix else k
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _diff_keys(va, vb, full)
        elif va != vb:
            keys.append(full)
    return keys


def _lookup(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _check_resume(state: dict, cfg: Config, run_dir: Path, path: Path) -> None:
    """Refuse a checkpoint trained on other data or with any other training config."""
    current = data_hash(run_dir)
    if state.get("data_hash") != current:
        raise TrainingError(
            f"cannot resume from {path}: it was trained on different data (data_hash {state.get('data_hash')} "
            f"!= {current} of {run_dir / MANIFEST_FILE} + {SPLITS_FILE}); pass --restart to train afresh"
        )
    theirs, ours = stage_params(config_from_dict(state["config"]), "train"), stage_params(cfg, "train")
    changed = _diff_keys(theirs, ours)
    if changed:
        diffs = ", ".join(f"{k} ({_lookup(theirs, k)!r} -> {_lookup(ours, k)!r})" for k in changed)
        raise TrainingError(
            f"cannot resume from {path}: config keys differ from the checkpoint's: {diffs}; "
            "resume continues only the same training (pass --restart to train afresh)"
        )


# --------------------------------------------------------------------------- one epoch


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images = batch["image"].to(device, non_blocking=True)
    masks = batch["mask"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks


def _train_epoch(
    model, loader, loss_fn, optimizer, scheduler, precision: Precision, device, cfg: Config, ctx, desc: str
) -> dict:
    model.train()
    channels_last = device.type == "cuda" and cfg.train.channels_last
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss*n, bce*n, dice*n, n
    lr = current_lr(optimizer)
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", disable=not ctx.is_main, leave=False, mininterval=1.0)
    for step, batch in enumerate(bar):
        images, masks = _to_device(batch, device, channels_last)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = model(images)
        loss, parts = loss_fn(logits, masks)
        precision.scaler.scale(loss).backward()
        if cfg.train.grad_clip > 0:
            precision.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        lr = current_lr(optimizer)
        precision.scaler.step(optimizer)
        precision.scaler.update()
        step_per_batch(scheduler)
        n = images.shape[0]
        sums += torch.stack([loss.detach() * n, parts["bce"] * n, parts["dice"] * n, torch.tensor(n, device=device)])
        if ctx.is_main and step % 10 == 0:
            seen = sums[3].item() * ctx.world_size
            bar.set_postfix(loss=f"{sums[0].item() / max(sums[3].item(), 1):.4f}",
                            img_s=f"{seen / (time.perf_counter() - start):.1f}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    D.all_reduce_sum(sums, ctx)
    n = max(float(sums[3]), 1.0)
    return {
        "lr": lr,
        "train_loss": float(sums[0]) / n,
        "train_bce": float(sums[1]) / n,
        "train_dice_loss": float(sums[2]) / n,
        "images_per_s": float(sums[3]) / max(seconds, 1e-9),
        "train_seconds": seconds,
    }


# --------------------------------------------------------------------------- train


def _state(model, optimizer, scheduler, precision, epoch, config: dict, metrics, best, hash_, extra, fold, patients):
    cfg = config_from_dict(config)
    return {
        "model": D.unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": precision.scaler.state_dict(),
        "epoch": epoch,
        "config": config,
        "normalisation": normalisation_spec(cfg.data.normalisation),
        "metrics": metrics,
        "best_metric": best,
        "data_hash": hash_,
        "extra": extra,
        "fold": fold,  # None: trained on the train split; K: cross-validation fold K held out
        "train_patients": patients,
    }


def train(
    run_dir: Path, cfg: Config, resume: bool = False, device: str = "auto", fold: int | None = None,
    restart: bool = False,
) -> dict:
    """Train on the run dir's train split, validate on its val split; returns a summary dict.

    With ``fold=K``: train on the other folds' train+val patients, validate on fold K (see
    the module docstring). ``resume``/``restart``: see the module docstring (they exclude
    each other). Under ``torchrun`` (``WORLD_SIZE > 1``) this is one DDP rank; only rank 0 writes.
    """
    if resume and restart:
        raise TrainingError("--resume and --restart exclude each other")
    wall_start = time.perf_counter()
    run_dir = Path(run_dir)
    env = D.env_context()
    try:
        dev = resolve_device(device, env.local_rank)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    ctx = D.init_distributed(dev.type)
    try:
        return _train(run_dir, cfg, resume, restart, dev, ctx, wall_start, fold)
    finally:
        D.cleanup_distributed()


def _train(
    run_dir: Path, cfg: Config, resume: bool, restart: bool, dev: torch.device, ctx: D.DistContext,
    wall_start: float, fold: int | None,
):
    last_path, best_path = checkpoint_paths(run_dir, fold)
    out_dir = output_dir(run_dir, fold)
    main = ctx.is_main
    tag = "[train]" if fold is None else f"[train fold {fold}]"
    if fold is not None:  # a bad fold is reported before anything else is read or written
        try:
            fold_patients(run_dir, fold)
        except FoldError as exc:
            raise TrainingError(str(exc)) from exc
    state = None
    hash_ = data_hash(run_dir)  # before moving anything: a run dir without data is an error
    if restart:
        if main:
            moved = supersede(run_dir)
            if moved is not None:
                print(f"{tag} --restart: previous training run moved to {moved}", flush=True)
        D.barrier(ctx)
    elif resume and not last_path.is_file():
        if main:
            print(f"{tag} --resume: no {last_path} yet, starting from epoch 1", flush=True)
    elif resume:
        state = load_checkpoint(last_path)
        _check_resume(state, cfg, run_dir, last_path)
        if is_finished(state):
            return _finished_summary(state, last_path, best_path, out_dir, dev, ctx, wall_start, main, tag)
    elif last_path.is_file():
        raise TrainingError(
            f"{last_path} already exists: pass --resume to continue an unfinished run, or --restart to train "
            "afresh (the old run is moved to RUN/superseded/)"
        )
    # the config stored in every checkpoint of a run is the one the run started with
    stored_config = state["config"] if state is not None else config_to_dict(cfg)
    loss_fn = _check_recipe(cfg)  # bad loss/model/2.5D settings fail before the slices are cached
    configure_backend(dev)
    seed_everything(cfg.train.seed + ctx.rank)
    train_ds, val_ds, train_patients = _datasets(run_dir, cfg, fold, main)
    _check_sizes([train_ds, val_ds], cfg)
    _check_channels([train_ds, val_ds], cfg)
    train_loader, val_loader, sampler = _loaders(train_ds, val_ds, cfg, ctx, dev)

    model = build_model(cfg.model).to(dev)
    if dev.type == "cuda" and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, len(train_loader))
    precision = make_precision(dev, cfg.train.amp)

    start_epoch, best, extra = 1, None, {"best_epoch": 0, "best_metrics": {}, "elapsed_seconds": 0.0}
    if state is not None:
        D.unwrap(model).load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            precision.scaler.load_state_dict(state["scaler"])
        start_epoch, best = int(state["epoch"]) + 1, state.get("best_metric")
        extra.update(state.get("extra") or {})
        if "rng" in extra:
            set_rng_state(extra["rng"])
    if ctx.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    log = TrainLog(out_dir, tensorboard=main)
    if main:
        if state is None or not (out_dir / "config_train.yaml").is_file():
            save_resolved_config(config_from_dict(stored_config), out_dir, "train")
        log.load_existing(start_epoch - 1)
        print(
            f"{tag} {len(train_ds)} train / {len(val_ds)} val slices, device {dev} ({precision.name}), "
            f"world size {ctx.world_size}, epochs {start_epoch}..{cfg.train.epochs}",
            flush=True,
        )

    prior_elapsed = float(extra["elapsed_seconds"])
    session_start = wall_start
    epochs_done, stopped, throughputs = start_epoch - 1, "completed", []
    cap = cfg.train.max_time_minutes * 60  # safety cap on this session's wall time; 0: none
    for epoch in range(start_epoch, cfg.train.epochs + 1):
        epoch_start = time.perf_counter()
        seed = epoch_seed(cfg.train.seed, epoch, ctx.rank)
        seed_everything(seed)
        train_ds.set_seed(seed)
        sampler.set_epoch(epoch)
        if main:
            print(f"{tag} epoch {epoch}/{cfg.train.epochs} started", flush=True)
        row = _train_epoch(
            model, train_loader, loss_fn, optimizer, scheduler, precision, dev, cfg, ctx,
            desc=f"epoch {epoch}/{cfg.train.epochs}",
        )
        throughputs.append(row["images_per_s"])
        val = {"val_loss": math.nan, "val_patient_dice_mean": math.nan,
               "val_patient_dice_median": math.nan, "val_slice_dice": math.nan}
        improved = False
        if epoch % cfg.train.val_every == 0 or epoch == cfg.train.epochs:
            D.sync_buffers(model, ctx)
            val = validate(model, val_loader, val_ds, loss_fn, precision, dev, ctx)
            step_after_validation(scheduler, val["val_patient_dice_mean"])
            improved = best is None or val["val_patient_dice_mean"] > best
            if improved:
                best = val["val_patient_dice_mean"]
                extra["best_epoch"] = epoch
                extra["best_metrics"] = {k: v for k, v in val.items() if k != "patient_dice"}
        seconds = time.perf_counter() - epoch_start
        extra["elapsed_seconds"] = prior_elapsed + (time.perf_counter() - session_start)
        row.update({k: v for k, v in val.items() if k != "patient_dice"})
        row.update(epoch=epoch, seconds=seconds)
        epochs_done = epoch

        # stop decisions are rank 0's (wall time differs between ranks)
        stop = None
        patience = cfg.train.early_stop_patience
        if patience > 0 and extra["best_epoch"] > 0 and epoch - extra["best_epoch"] >= patience:
            stop = "early_stop"
        session = time.perf_counter() - session_start
        if stop is None and cap > 0 and session + seconds > cap and epoch < cfg.train.epochs:
            stop = "time_cap"  # the next epoch would overrun the cap
        if D.broadcast_flag(stop is not None, ctx, dev):
            stop = stop or "stopped_by_rank0"
        else:
            stop = None
        if main:
            extra["rng"] = rng_state()
            extra["stopped"] = stop or ("completed" if epoch == cfg.train.epochs else "running")
            extra["finished"] = stop == "early_stop" or (stop is None and epoch == cfg.train.epochs)
            metrics = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
            metrics["patient_dice"] = val.get("patient_dice", {})
            ckpt = _state(
                model, optimizer, scheduler, precision, epoch, stored_config, metrics, best, hash_, extra, fold,
                train_patients,
            )
            log.append(row)
            if improved:
                save_checkpoint(best_path, ckpt)
            save_checkpoint(last_path, ckpt)
            tqdm.write(_epoch_line(row, best, extra["best_epoch"], cfg.train.epochs, tag))
        D.barrier(ctx)
        if stop is not None:
            stopped = stop
            if main and stop == "time_cap":
                print(
                    f"{tag} time cap reached: train.max_time_minutes={cfg.train.max_time_minutes:g} would be "
                    f"overrun by epoch {epoch + 1}, stopped after epoch {epoch} of {cfg.train.epochs}; the run is "
                    "unfinished (train --resume, or re-running the pipeline, continues it)",
                    flush=True,
                )
            break
    log.close()
    wall = time.perf_counter() - wall_start
    best_metrics = extra.get("best_metrics") or {}
    return {
        "epochs_completed": epochs_done,
        "epochs": cfg.train.epochs,
        "stopped": stopped,
        "best_epoch": int(extra["best_epoch"]),
        "best_val_patient_dice_mean": best_metrics.get("val_patient_dice_mean"),
        "best_val_patient_dice_median": best_metrics.get("val_patient_dice_median"),
        "wall_seconds": wall,
        "images_per_s": float(np.median(throughputs)) if throughputs else None,
        "last_checkpoint": str(last_path),
        "best_checkpoint": str(best_path) if best_path.is_file() else None,
        "device": str(dev),
        "precision": precision.name,
        "world_size": ctx.world_size,
        "fold": fold,
        "train_log": str(out_dir / LOG_FILE),
    }


def _finished_summary(state, last_path, best_path, out_dir, dev, ctx, wall_start, main, tag) -> dict:
    """``resume`` of a finished run: nothing is trained; the summary describes the finished run."""
    extra = state.get("extra") or {}
    epochs = int(state["config"]["train"]["epochs"])
    if main:
        print(f"{tag} {last_path} is a finished run (epoch {state['epoch']} of {epochs}, "
              f"{extra.get('stopped') or 'completed'}): nothing to resume; --restart trains afresh", flush=True)
    best_metrics = extra.get("best_metrics") or {}
    return {
        "epochs_completed": int(state["epoch"]),
        "epochs": epochs,
        "stopped": "already_finished",
        "best_epoch": int(extra.get("best_epoch", 0)),
        "best_val_patient_dice_mean": best_metrics.get("val_patient_dice_mean"),
        "best_val_patient_dice_median": best_metrics.get("val_patient_dice_median"),
        "wall_seconds": time.perf_counter() - wall_start,
        "images_per_s": None,
        "last_checkpoint": str(last_path),
        "best_checkpoint": str(best_path) if best_path.is_file() else None,
        "device": str(dev),
        "precision": "n/a",
        "world_size": ctx.world_size,
        "fold": state.get("fold"),
        "train_log": str(out_dir / LOG_FILE),
    }


def _epoch_line(row: dict, best: float | None, best_epoch: int, epochs: int, tag: str = "[train]") -> str:
    val = ""
    if not math.isnan(row["val_patient_dice_mean"]):
        val = (f" | val loss {row['val_loss']:.4f} patient Dice mean {row['val_patient_dice_mean']:.4f} "
               f"median {row['val_patient_dice_median']:.4f} slice {row['val_slice_dice']:.4f}")
    best_text = f" | best {best:.4f} @ {best_epoch}" if best is not None else ""
    return (f"{tag} epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f} lr {row['lr']:.2e}{val}"
            f"{best_text} | {row['images_per_s']:.1f} img/s {row['seconds']:.1f}s")


def config_of_checkpoint(path: str | Path) -> Config:
    """The resolved config stored in a checkpoint (used by ``--resume`` without ``--config``)."""
    return config_from_dict(load_checkpoint(path)["config"])
