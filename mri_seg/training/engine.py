"""The training loop: data -> model -> loss (train.loss) -> AdamW, patient-level validation, checkpoints.

Outputs in the run dir (rank 0 only): ``train_log.csv``, ``config_train.yaml``,
``checkpoints/last.pt`` (every epoch) and ``checkpoints/best.pt`` (best mean val
patient Dice), optional ``tensorboard/``. With ``train.ema_decay`` > 0 an exponential moving
average of the weights (:mod:`mri_seg.training.ema`) is what validation scores and checkpoints ship.

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
  (:data:`mri_seg.training.resume.TRAIN_PARAMS`), naming the differing keys. A finished
  run is not trained further: resume reports it finished and returns. Without a ``last.pt`` it starts at
  epoch 1. The config stored in the checkpoints stays the one the run started with.
- ``restart=True`` moves the run's previous training outputs (all folds' too: a run is
  never a mix of trainings) into ``RUN/superseded/`` (see :mod:`mri_seg.training.resume`)
  and trains from epoch 1.
- neither, with an existing ``last.pt``: refused rather than overwriting it.

The loop reads like torchvision's reference script: :func:`setup` builds a
:class:`Trainer` (data, model, optimiser), :func:`restore` a :class:`TrainState`, then
per epoch :func:`train_one_epoch`, :func:`validate_epoch`, :func:`stop_decision` and
:func:`save`. Where it writes is a :class:`mri_seg.rundir.TrainingDir`.

Cross-validation folds (``fold=K``, splits.csv made with ``split.n_folds > 1``): train on
the train+val patients whose fold is not K, validate on fold K, never touch test
patients; everything (checkpoints, ``train_log.csv``, ``config_train.yaml``,
``tensorboard/``) goes to ``RUN/checkpoints/fold<K>/`` and resumes there. Checkpoints
record ``fold`` and ``train_patients`` (the patients whose slices were trained on), so
out-of-fold prediction can prove it never scores a patient with a model that saw it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from mri_seg.config import Config, config_from_dict, config_to_dict, save_resolved_config
from mri_seg.data.dataset import SliceDataset, build_dataset, dataset_from_frame
from mri_seg.data.manifest import FoldError, fold_patients, manifest_for_patients
from mri_seg.losses import build_loss
from mri_seg.models import build_model, size_divisor
from mri_seg.preprocess import channels_per_slice, check_input_channels, normalisation_spec, scaled_size
from mri_seg.rundir import RunDir, TrainingDir
from mri_seg.training import distributed as D
from mri_seg.training.checkpoint import load_checkpoint, save_checkpoint
from mri_seg.training.ema import build_ema, ema_checkpoint_part, evaluated_model, restore_weights, update_ema
from mri_seg.training.init_from import init_weights, load_init_member
from mri_seg.training.optim import (
    build_optimizer,
    build_scheduler,
    current_lr,
    step_after_validation,
    step_per_batch,
)
from mri_seg.training.resume import config_differences, data_hash, is_finished, supersede
from mri_seg.training.runlog import TrainLog
from mri_seg.training.runtime import (
    Precision,
    configure_backend,
    epoch_seed,
    make_precision,
    resolve_device,
    rng_state,
    seed_everything,
    set_rng_state,
    training_forward,
    worker_init_fn,
)
from mri_seg.training.samplers import TrainSampler, build_train_sampler
from mri_seg.training.validate import validate

__all__ = ["TrainingError", "TrainState", "Trainer", "train", "data_hash", "config_of_checkpoint"]

NO_VALIDATION = {"val_loss": math.nan, "val_patient_dice_mean": math.nan, "val_patient_dice_median": math.nan,
                 "val_slice_dice": math.nan}  # fmt: skip

class TrainingError(ValueError):
    """Training cannot start or resume (bad sizes, missing/incompatible checkpoint)."""


@dataclass
class Trainer:
    """What one training session works with (built by :func:`setup`); fixed for the session."""

    cfg: Config
    out: TrainingDir
    ctx: D.DistContext
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    precision: Precision
    loss_fn: torch.nn.Module
    train_ds: SliceDataset
    val_ds: SliceDataset
    train_loader: DataLoader
    val_loader: DataLoader
    sampler: TrainSampler
    stored_config: dict[str, Any]  # stored in every checkpoint: the config the run started with
    data_hash: str
    train_patients: list[str]
    tag: str  # "[train]" or "[train fold K]"
    ema: AveragedModel | None = None  # train.ema_decay > 0: the averaged weights that validate and ship
    forward: Callable[..., torch.Tensor] | None = None  # the step's network: the model, compiled with train.compile

    @property
    def fold(self) -> int | None:
        return self.out.fold

    @property
    def shipped_model(self) -> torch.nn.Module:
        """The network validation scores and checkpoints ship: the weight average, else the model."""
        return evaluated_model(self.ema, self.model)


@dataclass
class TrainState:
    """What carries over from epoch to epoch, and into a checkpoint (``epoch``, ``best_metric``, ``extra``)."""

    epoch: int = 0  # the last completed epoch
    best_metric: float | None = None  # best mean val patient Dice so far
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    elapsed_seconds: float = 0.0  # training wall time over all sessions of the run
    stopped: str = "running"  # running | completed | early_stop | time_cap | stopped_by_rank0
    finished: bool = False
    rng: dict[str, Any] | None = None
    other: dict[str, Any] = field(default_factory=dict)  # a checkpoint's other ``extra`` keys, kept as they were

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> TrainState:
        extra = dict(state.get("extra") or {})
        known = {k: extra.pop(k) for k in ("best_epoch", "best_metrics", "elapsed_seconds", "stopped", "finished",
                                            "rng") if k in extra}  # fmt: skip
        return cls(epoch=int(state["epoch"]), best_metric=state.get("best_metric"), other=extra, **known)

    def extra(self) -> dict[str, Any]:
        """The checkpoint's ``extra`` dict."""
        out = {**self.other, "best_epoch": self.best_epoch, "best_metrics": self.best_metrics,
               "elapsed_seconds": self.elapsed_seconds}  # fmt: skip
        if self.rng is not None:
            out["rng"] = self.rng
        return {**out, "stopped": self.stopped, "finished": self.finished}

    def record_validation(self, epoch: int, val: dict[str, Any]) -> bool:
        """Keep ``val`` as the best when its mean patient Dice is the highest so far; True if it is."""
        score = val["val_patient_dice_mean"]
        if not (self.best_metric is None or score > self.best_metric):
            return False
        self.best_metric, self.best_epoch = score, epoch
        self.best_metrics = _without_patients(val)
        return True


# --------------------------------------------------------------------------- train: the loop


def train(
    run_dir: Path, cfg: Config, resume: bool = False, device: str = "auto", fold: int | None = None,
    restart: bool = False, init_from: Path | None = None,
) -> dict:
    """Train on the run dir's train split, validate on its val split; returns a summary dict.

    With ``fold=K``: train on the other folds' train+val patients, validate on fold K (see
    the module docstring). ``resume``/``restart``: see the module docstring (they exclude
    each other). Under ``torchrun`` (``WORLD_SIZE > 1``) this is one DDP rank; only rank 0 writes.
    ``init_from``: start a fresh training from these trained weights (:mod:`mri_seg.training.init_from`;
    a resumed run continues its own checkpoint instead).
    """
    if resume and restart:
        raise TrainingError("--resume and --restart exclude each other")
    wall_start = time.perf_counter()
    env = D.env_context()
    try:
        dev = resolve_device(device, env.local_rank)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    ctx = D.init_distributed(dev.type)
    try:
        return _train(RunDir(Path(run_dir)), cfg, resume, restart, dev, ctx, wall_start, fold, init_from)
    finally:
        D.cleanup_distributed()


def _train(
    run: RunDir, cfg: Config, resume: bool, restart: bool, dev: torch.device, ctx: D.DistContext,
    wall_start: float, fold: int | None, init_from: Path | None = None,
) -> dict:
    out = run.training(fold)
    tag = "[train]" if fold is None else f"[train fold {fold}]"
    if fold is not None:  # a bad fold is reported before anything else is read or written
        try:
            fold_patients(run.root, fold)
        except FoldError as exc:
            raise TrainingError(str(exc)) from exc
    hash_ = data_hash(run.root)  # before moving anything: a run dir without data is an error
    state = start_state(run, out, resume, restart, cfg, ctx, tag)
    if state is not None and is_finished(state):
        return _finished_summary(state, out, dev, ctx, wall_start, tag)
    stored_config = state["config"] if state is not None else config_to_dict(cfg)
    # fine-tuning: the member is chosen and checked before any data is read
    member = load_init_member(init_from, cfg, fold) if state is None and init_from is not None else None
    t = setup(run, out, cfg, stored_config, hash_, dev, ctx, tag)
    started_from = None
    if member is not None:
        started_from = init_weights(t.model, member)
        if ctx.is_main:
            print(f"{tag} starting from the weights of {started_from['path']} (sha256 {started_from['sha256'][:16]}..., "
                  f"fold {started_from['fold']}, epoch {started_from['epoch']})", flush=True)  # fmt: skip
    progress = restore(t, state)
    log = open_log(t, state is not None, progress.epoch + 1)

    prior_elapsed, throughputs, stopped = progress.elapsed_seconds, [], "completed"
    for epoch in range(progress.epoch + 1, cfg.train.epochs + 1):
        epoch_start = time.perf_counter()
        row = train_one_epoch(t, epoch)
        val = validate_epoch(t, epoch)
        improved = val is not None and progress.record_validation(epoch, val)
        val = val if val is not None else dict(NO_VALIDATION)
        row = {**row, **_without_patients(val), "epoch": epoch, "seconds": time.perf_counter() - epoch_start}
        progress.epoch, progress.elapsed_seconds = epoch, prior_elapsed + (time.perf_counter() - wall_start)
        stop = stop_decision(t, progress, epoch, row["seconds"], time.perf_counter() - wall_start)
        save(t, progress, row, val, improved, stop, log)
        throughputs.append(row["images_per_s"])
        if stop is not None:
            stopped = stop
            _say_stopped(t, stop, epoch)
            break
    log.close()
    summary = _summary(t, progress, stopped, time.perf_counter() - wall_start, throughputs)
    return {**summary, "init_from": started_from}


def _without_patients(val: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in val.items() if k != "patient_dice"}


def _say_stopped(t: Trainer, stop: str, epoch: int) -> None:
    if t.ctx.is_main and stop == "time_cap":
        print(
            f"{t.tag} time cap reached: train.max_time_minutes={t.cfg.train.max_time_minutes:g} would be "
            f"overrun by epoch {epoch + 1}, stopped after epoch {epoch} of {t.cfg.train.epochs}; the run is "
            "unfinished (train --resume, or re-running the pipeline, continues it)",
            flush=True,
        )


# --------------------------------------------------------------------------- start, setup, restore


def start_state(run: RunDir, out: TrainingDir, resume: bool, restart: bool, cfg: Config, ctx: D.DistContext,
                tag: str) -> dict[str, Any] | None:  # fmt: skip
    """The checkpoint to continue (``resume`` of an unfinished or finished run), or None to start at
    epoch 1 (moving the previous run aside with ``restart``); refuses to overwrite a run."""
    if restart:
        if ctx.is_main:
            moved = supersede(run.root)
            if moved is not None:
                print(f"{tag} --restart: previous training run moved to {moved}", flush=True)
        D.barrier(ctx)
        return None
    if resume and not out.last.is_file():
        if ctx.is_main:
            print(f"{tag} --resume: no {out.last} yet, starting from epoch 1", flush=True)
        return None
    if resume:
        state = load_checkpoint(out.last)
        check_resume(state, cfg, run, out.last)
        return state
    if out.last.is_file():
        raise TrainingError(
            f"{out.last} already exists: pass --resume to continue an unfinished run, or --restart to train "
            "afresh (the old run is moved to RUN/superseded/)"
        )
    return None


def check_resume(state: dict[str, Any], cfg: Config, run: RunDir, path: Path) -> None:
    """Refuse a checkpoint trained on other data or with any other training config."""
    current = data_hash(run.root)
    if state.get("data_hash") != current:
        raise TrainingError(
            f"cannot resume from {path}: it was trained on different data (data_hash {state.get('data_hash')} "
            f"!= {current} of {run.manifest} + {run.splits.name}); pass --restart to train afresh"
        )
    changed = config_differences(state["config"], cfg)
    if changed:
        raise TrainingError(
            f"cannot resume from {path}: config keys differ from the checkpoint's: {', '.join(changed)}; "
            "resume continues only the same training (pass --restart to train afresh)"
        )


def setup(run: RunDir, out: TrainingDir, cfg: Config, stored_config: dict[str, Any], hash_: str,
          dev: torch.device, ctx: D.DistContext, tag: str) -> Trainer:  # fmt: skip
    """Check the recipe, seed, build the datasets, loaders, model, optimiser, schedule and precision."""
    loss_fn = _check_recipe(cfg)  # bad loss/model/2.5D settings fail before the slices are cached
    configure_backend(dev)
    seed_everything(cfg.train.seed + ctx.rank)
    train_ds, val_ds, train_patients = _datasets(run, cfg, out.fold, ctx.is_main)
    _check_sizes([train_ds, val_ds], cfg)
    _check_channels([train_ds, val_ds], cfg)
    train_loader, val_loader, sampler = _loaders(train_ds, val_ds, cfg, ctx, dev)
    model = build_model(cfg.model).to(dev)
    if cfg.train.channels_last:  # every device: oneDNN's CPU convolutions train ~8% faster in it too
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = build_optimizer(model, cfg.train)
    return Trainer(
        cfg=cfg, out=out, ctx=ctx, device=dev, model=model, optimizer=optimizer,
        scheduler=build_scheduler(optimizer, cfg.train, len(train_loader)), precision=make_precision(dev, cfg.train.amp, cfg.train.cpu_bf16),
        loss_fn=loss_fn, train_ds=train_ds, val_ds=val_ds, train_loader=train_loader, val_loader=val_loader,
        sampler=sampler, stored_config=stored_config, data_hash=hash_, train_patients=train_patients, tag=tag,
    )  # fmt: skip


def restore(t: Trainer, state: dict[str, Any] | None) -> TrainState:
    """Load a checkpoint's weights, optimiser, schedule, scaler and RNG into ``t``, start the weight
    average (``train.ema_decay``; after any ``init_from`` weights), then wrap DDP."""
    progress = TrainState()
    t.ema = build_ema(t.model, t.cfg.train.ema_decay)
    if state is not None:
        try:
            restore_weights(state, t.ema, D.unwrap(t.model))
        except ValueError as exc:
            raise TrainingError(f"cannot resume: {exc}") from exc
        t.optimizer.load_state_dict(state["optimizer"])
        t.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            t.precision.scaler.load_state_dict(state["scaler"])
        progress = TrainState.from_checkpoint(state)
        if progress.rng is not None:
            set_rng_state(progress.rng)
    if t.ctx.enabled:
        t.model = torch.nn.parallel.DistributedDataParallel(
            t.model, device_ids=[t.device.index] if t.device.type == "cuda" else None
        )
    t.forward, how = training_forward(t.model, t.cfg.train.compile, t.device)
    if t.ctx.is_main and t.cfg.train.compile:
        print(f"{t.tag} training step: {how}", flush=True)
    return progress


def open_log(t: Trainer, resumed: bool, start_epoch: int) -> TrainLog:
    """The run's train log (the rows before ``start_epoch`` kept); writes config_train.yaml on a fresh run."""
    log = TrainLog(t.out, tensorboard=t.ctx.is_main)
    if t.ctx.is_main:
        if not resumed or not t.out.config.is_file():
            save_resolved_config(config_from_dict(t.stored_config), t.out.log_dir, "train")
        log.load_existing(start_epoch - 1)
        print(
            f"{t.tag} {len(t.train_ds)} train / {len(t.val_ds)} val slices, device {t.device} ({t.precision.name}), "
            f"world size {t.ctx.world_size}, epochs {start_epoch}..{t.cfg.train.epochs}",
            flush=True,
        )
    return log


# --------------------------------------------------------------------------- one epoch, validate, stop, save


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    images = batch["image"].to(device, non_blocking=True)
    masks = batch["mask"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks


def train_one_epoch(t: Trainer, epoch: int) -> dict[str, float]:
    """One pass over the training data (reseeded from ``(train.seed, epoch, rank)``): the log row's train part."""
    cfg, device, ctx = t.cfg, t.device, t.ctx
    seed = epoch_seed(cfg.train.seed, epoch, ctx.rank)
    seed_everything(seed)
    t.train_ds.set_seed(seed)
    t.sampler.set_epoch(epoch)
    if ctx.is_main:
        print(f"{t.tag} epoch {epoch}/{cfg.train.epochs} started", flush=True)
    t.model.train()
    channels_last = cfg.train.channels_last
    forward = t.forward if t.forward is not None else t.model
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss*n, bce*n, dice*n, n
    lr = current_lr(t.optimizer)
    start = time.perf_counter()
    bar = tqdm(t.train_loader, desc=f"epoch {epoch}/{cfg.train.epochs}", unit="batch", disable=not ctx.is_main,
               leave=False, mininterval=1.0)  # fmt: skip
    for step, batch in enumerate(bar):
        images, masks = _to_device(batch, device, channels_last)
        t.optimizer.zero_grad(set_to_none=True)
        with t.precision.autocast():
            logits = forward(images)
        loss, parts = t.loss_fn(logits.float(), masks)
        t.precision.scaler.scale(loss).backward()
        if cfg.train.grad_clip > 0:
            t.precision.scaler.unscale_(t.optimizer)
            torch.nn.utils.clip_grad_norm_(t.model.parameters(), cfg.train.grad_clip)
        lr = current_lr(t.optimizer)
        t.precision.scaler.step(t.optimizer)
        t.precision.scaler.update()
        update_ema(t.ema, D.unwrap(t.model))
        step_per_batch(t.scheduler)
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
    total = max(float(sums[3]), 1.0)
    return {
        "lr": lr,
        "train_loss": float(sums[0]) / total,
        "train_bce": float(sums[1]) / total,
        "train_dice_loss": float(sums[2]) / total,
        "images_per_s": float(sums[3]) / max(seconds, 1e-9),
        "train_seconds": seconds,
    }


def validate_epoch(t: Trainer, epoch: int) -> dict[str, Any] | None:
    """Patient-level validation every ``train.val_every`` epochs and at the last (None otherwise)."""
    if epoch % t.cfg.train.val_every and epoch != t.cfg.train.epochs:
        return None
    D.sync_buffers(t.shipped_model, t.ctx)  # the network validated is the one rank 0 saves
    val = validate(t.shipped_model, t.val_loader, t.val_ds, t.loss_fn, t.precision.for_inference(), t.device, t.ctx, t.cfg.train.channels_last)
    step_after_validation(t.scheduler, val["val_patient_dice_mean"])
    return val


def stop_decision(t: Trainer, progress: TrainState, epoch: int, epoch_seconds: float, session_seconds: float) -> str | None:
    """``early_stop`` (no better val Dice for ``train.early_stop_patience`` epochs), ``time_cap`` (the
    next epoch would overrun ``train.max_time_minutes``) or None; rank 0 decides for all ranks."""
    cfg, stop = t.cfg.train, None
    if cfg.early_stop_patience > 0 and progress.best_epoch > 0 and epoch - progress.best_epoch >= cfg.early_stop_patience:
        stop = "early_stop"
    cap = cfg.max_time_minutes * 60  # safety cap on this session's wall time; 0: none
    if stop is None and cap > 0 and session_seconds + epoch_seconds > cap and epoch < cfg.epochs:
        stop = "time_cap"
    if D.broadcast_flag(stop is not None, t.ctx, t.device):  # wall time differs between ranks
        return stop or "stopped_by_rank0"
    return None


def checkpoint_state(t: Trainer, progress: TrainState, metrics: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint dict (see :mod:`mri_seg.training.checkpoint`)."""
    return {
        **ema_checkpoint_part(t.ema, D.unwrap(t.model)),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(),
        "scaler": t.precision.scaler.state_dict(),
        "epoch": progress.epoch,
        "config": t.stored_config,
        "normalisation": normalisation_spec(config_from_dict(t.stored_config).data.normalisation),
        "metrics": metrics,
        "best_metric": progress.best_metric,
        "data_hash": t.data_hash,
        "extra": progress.extra(),
        "fold": t.fold,  # None: trained on the train split; K: cross-validation fold K held out
        "train_patients": t.train_patients,
    }


def save(t: Trainer, progress: TrainState, row: dict[str, Any], val: dict[str, Any], improved: bool,
         stop: str | None, log: TrainLog) -> None:  # fmt: skip
    """Rank 0: the log row, best.pt (when improved) and last.pt, and the epoch's line."""
    if t.ctx.is_main:
        epochs = t.cfg.train.epochs
        progress.rng = rng_state()
        progress.stopped = stop or ("completed" if progress.epoch == epochs else "running")
        progress.finished = stop == "early_stop" or (stop is None and progress.epoch == epochs)
        metrics = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        metrics["patient_dice"] = val.get("patient_dice", {})
        state = checkpoint_state(t, progress, metrics)
        log.append(row)
        if improved:
            save_checkpoint(t.out.best, state)
        save_checkpoint(t.out.last, state)
        tqdm.write(_epoch_line(row, progress.best_metric, progress.best_epoch, epochs, t.tag))
    D.barrier(t.ctx)


def _epoch_line(row: dict, best: float | None, best_epoch: int, epochs: int, tag: str = "[train]") -> str:
    val = ""
    if not math.isnan(row["val_patient_dice_mean"]):
        val = (f" | val loss {row['val_loss']:.4f} patient Dice mean {row['val_patient_dice_mean']:.4f} "
               f"median {row['val_patient_dice_median']:.4f} slice {row['val_slice_dice']:.4f}")
    best_text = f" | best {best:.4f} @ {best_epoch}" if best is not None else ""
    return (f"{tag} epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f} lr {row['lr']:.2e}{val}"
            f"{best_text} | {row['images_per_s']:.1f} img/s {row['seconds']:.1f}s")


# --------------------------------------------------------------------------- data and checks


def _datasets(run: RunDir, cfg: Config, fold: int | None, progress: bool) -> tuple[SliceDataset, SliceDataset, list[str]]:
    """Train and val datasets (the run's train/val splits, or fold K's complement / fold K) and
    the ids of the patients trained on."""
    if fold is None:
        train_ds = build_dataset(run.root, "train", cfg, train=True, progress=progress)
        val_ds = build_dataset(run.root, "val", cfg, train=False, progress=progress)
    else:
        try:
            training, held_out = fold_patients(run.root, fold)
        except FoldError as exc:
            raise TrainingError(str(exc)) from exc
        frames = [manifest_for_patients(run.root, p) for p in (training, held_out)]
        for frame, what in zip(frames, ("training", "held-out")):
            if frame.empty:
                raise TrainingError(f"fold {fold}: no {what} slices in {run.manifest}")
        train_ds = dataset_from_frame(frames[0], cfg, train=True, progress=progress)
        val_ds = dataset_from_frame(frames[1], cfg, train=False, progress=progress)
    return train_ds, val_ds, sorted(set(train_ds.patient_ids))


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
) -> tuple[DataLoader, DataLoader, TrainSampler]:
    sampler = build_train_sampler(
        train_ds.has_tumour, cfg.train.tumour_oversample, ctx.world_size, ctx.rank, cfg.train.seed,
        patient_ids=train_ds.patient_ids, patient_balance=cfg.train.tumour_patient_balance,
    )  # fmt: skip
    pin_memory, workers = device.type == "cuda", cfg.data.num_workers
    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        drop_last=len(sampler) > cfg.train.batch_size,  # no size-1 tail batch (BatchNorm)
        num_workers=workers, pin_memory=pin_memory, worker_init_fn=worker_init_fn,
    )  # fmt: skip
    val_part = Subset(val_ds, list(range(ctx.rank, len(val_ds), ctx.world_size)))
    val_loader = DataLoader(val_part, batch_size=cfg.train.batch_size, shuffle=False, num_workers=workers,
                            pin_memory=pin_memory, worker_init_fn=worker_init_fn)  # fmt: skip
    return train_loader, val_loader, sampler


# --------------------------------------------------------------------------- summaries


def _summary(t: Trainer, progress: TrainState, stopped: str, wall: float, throughputs: list[float]) -> dict:
    return {
        "epochs_completed": progress.epoch,
        "epochs": t.cfg.train.epochs,
        "stopped": stopped,
        "best_epoch": int(progress.best_epoch),
        "best_val_patient_dice_mean": progress.best_metrics.get("val_patient_dice_mean"),
        "best_val_patient_dice_median": progress.best_metrics.get("val_patient_dice_median"),
        "wall_seconds": wall,
        "images_per_s": float(np.median(throughputs)) if throughputs else None,
        "last_checkpoint": str(t.out.last),
        "best_checkpoint": str(t.out.best) if t.out.best.is_file() else None,
        "device": str(t.device),
        "precision": t.precision.name,
        "world_size": t.ctx.world_size,
        "fold": t.fold,
        "train_log": str(t.out.train_log),
    }


def _finished_summary(state: dict[str, Any], out: TrainingDir, dev: torch.device, ctx: D.DistContext,
                      wall_start: float, tag: str) -> dict:  # fmt: skip
    """``resume`` of a finished run: nothing is trained; the summary describes the finished run."""
    progress = TrainState.from_checkpoint(state)
    epochs = int(state["config"]["train"]["epochs"])
    if ctx.is_main:
        stopped = (state.get("extra") or {}).get("stopped") or "completed"
        print(f"{tag} {out.last} is a finished run (epoch {state['epoch']} of {epochs}, "
              f"{stopped}): nothing to resume; --restart trains afresh", flush=True)
    return {
        "epochs_completed": progress.epoch,
        "epochs": epochs,
        "stopped": "already_finished",
        "best_epoch": int(progress.best_epoch),
        "best_val_patient_dice_mean": progress.best_metrics.get("val_patient_dice_mean"),
        "best_val_patient_dice_median": progress.best_metrics.get("val_patient_dice_median"),
        "wall_seconds": time.perf_counter() - wall_start,
        "images_per_s": None,
        "last_checkpoint": str(out.last),
        "best_checkpoint": str(out.best) if out.best.is_file() else None,
        "device": str(dev),
        "precision": "n/a",
        "world_size": ctx.world_size,
        "fold": state.get("fold"),
        "train_log": str(out.train_log),
    }


def config_of_checkpoint(path: str | Path) -> Config:
    """The resolved config stored in a checkpoint (used by ``--resume`` without ``--config``)."""
    return config_from_dict(load_checkpoint(path)["config"])
