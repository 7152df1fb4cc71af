"""A run directory's training outputs: what they are, whether they are finished, moving them aside.

Training is never silently extended or mixed: a fresh training run (``train --restart``,
or the pipeline runner after the training config or data changed) first moves the
previous run's checkpoints, log, config and TensorBoard events into
``RUN/superseded/train-<UTC time>/`` -- nothing is deleted, and the new run starts from
an empty slate. ``--resume`` continues only an unfinished run (see
:func:`training_status`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

CHECKPOINT_DIR = "checkpoints"
SUPERSEDED_DIR = "superseded"
# Everything one training run writes into the run dir (moved aside together).
TRAIN_OUTPUTS = (CHECKPOINT_DIR, "train_log.csv", "learning_curves.png", "config_train.yaml", "tensorboard")


def last_checkpoint(run_dir: str | Path, fold: int | None = None) -> Path:
    folder = Path(run_dir) / CHECKPOINT_DIR
    return (folder if fold is None else folder / f"fold{fold}") / "last.pt"


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

    parts, finished, any_found = [], True, False
    for fold in folds if folds else [None]:
        path = last_checkpoint(run_dir, fold)
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
    run_dir = Path(run_dir)
    present = [name for name in TRAIN_OUTPUTS if (run_dir / name).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = run_dir / SUPERSEDED_DIR / f"train-{stamp}"
    n = 1
    while target.exists():  # two restarts within one second
        n += 1
        target = run_dir / SUPERSEDED_DIR / f"train-{stamp}-{n}"
    target.mkdir(parents=True)
    for name in present:
        shutil.move(str(run_dir / name), str(target / name))
    return target
