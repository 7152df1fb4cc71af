"""Resume and restart: what a training run computed from, whether it is finished, moving it aside.

Training is never silently extended or mixed. ``train --resume`` continues only an
unfinished run (:func:`training_status`), with the same data (:func:`data_hash`) and the
same training config (:data:`TRAIN_PARAMS`, the sections the train stage fingerprints,
less :data:`mri_seg.params.RUN_ONLY_KEYS`; :func:`config_differences`). A fresh run
(``train --restart``, or the pipeline runner after the training config or data changed)
first moves the previous run's checkpoints, log, config and TensorBoard events
(:meth:`mri_seg.rundir.RunDir.train_outputs`) into ``RUN/superseded/train-<UTC time>/``:
nothing is deleted, and the new run starts from an empty slate.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

from mri_seg.config import Config, config_from_dict, get_dotted
from mri_seg.params import config_params
from mri_seg.rundir import RunDir

# The config sections a training run computes from: the train stage's fingerprint and the
# --resume comparison (mri_seg.pipelines.train.STAGE declares these).
TRAIN_PARAMS: tuple[str, ...] = ("data", "augment", "model", "train")


def data_hash(run_dir: str | Path) -> str:
    """sha256 of manifest.csv followed by splits.csv: identifies the data a model saw."""
    run = RunDir(Path(run_dir))
    digest = hashlib.sha256()
    for path in (run.manifest, run.splits):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run the prepare and split stages first")
        digest.update(path.read_bytes())
    return digest.hexdigest()


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


def config_differences(stored: dict[str, Any], cfg: Config) -> list[str]:
    """``key (old -> new)`` for each training-config key (:data:`TRAIN_PARAMS`) where ``cfg``
    differs from a checkpoint's stored config."""
    theirs, ours = config_params(config_from_dict(stored), TRAIN_PARAMS), config_params(cfg, TRAIN_PARAMS)
    return [f"{k} ({get_dotted(theirs, k)!r} -> {get_dotted(ours, k)!r})" for k in _diff_keys(theirs, ours)]


def is_finished(state: dict[str, Any]) -> bool:
    """A checkpoint's run reached its configured epochs or stopped early (not by the time cap)."""
    extra = state.get("extra") or {}
    if "finished" in extra:
        return bool(extra["finished"])
    return int(state["epoch"]) >= int(state["config"]["train"]["epochs"])  # checkpoints before the flag


def training_status(run_dir: str | Path, folds: list[int] | None = None) -> dict[str, Any] | None:
    """Where the run's training stands: ``{"finished": bool, "state": text}``; None when no
    ``last.pt`` exists. With ``folds``, every fold's ``RUN/checkpoints/fold<K>/last.pt``
    counts: finished only when all are."""
    from mri_seg.training.checkpoint import load_checkpoint

    run = RunDir(Path(run_dir))
    parts, finished, any_found = [], True, False
    for fold in folds if folds else [None]:
        path = run.training(fold).last
        name = "" if fold is None else f"fold {fold}: "
        if not path.is_file():
            parts.append(f"{name}not started")
            finished = False
            continue
        any_found = True
        state = load_checkpoint(path)
        done = is_finished(state)
        finished = finished and done
        stopped = (state.get("extra") or {}).get("stopped") or ("completed" if done else "interrupted")
        stopped = "interrupted" if stopped == "running" else stopped
        parts.append(f"{name}epoch {state['epoch']} of {state['config']['train']['epochs']} ({stopped})")
    return {"finished": finished, "state": "; ".join(parts)} if any_found else None


def supersede(run_dir: str | Path) -> Path | None:
    """Move the existing training outputs into ``RUN/superseded/train-<UTC time>/``; returns that folder.

    Returns None (and creates nothing) when the run dir holds no training outputs.
    """
    run = RunDir(Path(run_dir))
    present = [path for path in run.train_outputs() if path.exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = run.superseded / f"train-{stamp}"
    n = 1
    while target.exists():  # two restarts within one second
        n += 1
        target = run.superseded / f"train-{stamp}-{n}"
    target.mkdir(parents=True)
    for path in present:
        shutil.move(str(path), str(target / path.name))
    return target
