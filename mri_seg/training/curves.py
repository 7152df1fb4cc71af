"""Learning curves from ``train_log.csv``: train/val loss and val patient Dice per epoch.

Training's own picture of its log (it lives with training, which draws it every epoch;
the evaluation report, a later layer, embeds it).

``learning_curves.png`` is redrawn (atomically) beside the log after every epoch, so a
person can watch a long run; the evaluation report draws the run's log, and the
per-fold logs of cross-validation (``RUN/checkpoints/fold<K>/train_log.csv``) when present.
The best epoch (highest mean val patient Dice, the one ``best.pt`` keeps) is marked.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mri_seg.rundir import CURVES_FILE, RunDir, fold_folders
from mri_seg.utils.atomic import atomic_write_bytes

DPI = 90


def find_train_logs(run_dir: str | Path) -> dict[str, Path]:
    """label -> train_log.csv: the run's own log and each ``checkpoints/fold<K>/`` log, in fold order."""
    run = RunDir(Path(run_dir))
    logs: dict[str, Path] = {}
    if run.train_log.is_file():
        logs["run"] = run.train_log
    for k, _ in fold_folders(run.checkpoints):
        path = run.training(k).train_log
        if path.is_file():
            logs[f"fold {k}"] = path
    return logs


def read_log(path: str | Path) -> pd.DataFrame:
    """A train log with numeric columns (missing columns become NaN), sorted by epoch."""
    frame = pd.read_csv(path)
    for column in ("epoch", "train_loss", "val_loss", "val_patient_dice_mean", "val_patient_dice_median"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce") if column in frame else np.nan
    return frame.dropna(subset=["epoch"]).sort_values("epoch", kind="stable")


def best_epoch(frame: pd.DataFrame) -> tuple[int, float] | None:
    """(epoch, Dice) with the highest mean val patient Dice (first on ties), or None."""
    dice = frame["val_patient_dice_mean"]
    if dice.notna().sum() == 0:
        return None
    i = int(np.nanargmax(dice.to_numpy(dtype=float)))  # the first of the highest, NaNs skipped
    return int(frame["epoch"].iloc[i]), float(dice.iloc[i])


def learning_curves_png(logs: dict[str, pd.DataFrame]) -> bytes:
    """Loss (train solid, val dashed) and val patient Dice (mean solid, median dotted) per epoch."""
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_dice = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    colours = [f"C{i}" for i in range(10)]
    single = len(logs) == 1
    for k, (label, frame) in enumerate(logs.items()):
        colour = colours[k % len(colours)]
        name = "" if single else f"{label} "
        epochs = frame["epoch"]
        ax_loss.plot(epochs, frame["train_loss"], color=colour, label=f"{name}train loss")
        ax_loss.plot(epochs, frame["val_loss"], color=colour, linestyle="--", label=f"{name}val loss")
        ax_dice.plot(epochs, frame["val_patient_dice_mean"], color=colour, label=f"{name}val Dice mean")
        ax_dice.plot(epochs, frame["val_patient_dice_median"], color=colour, linestyle=":",
                     label=f"{name}val Dice median")
        best = best_epoch(frame)
        if best is not None:
            ax_dice.scatter([best[0]], [best[1]], color=colour, marker="*", s=140, zorder=3,
                            label=f"{name}best epoch {best[0]} ({best[1]:.3f})")
            for ax in (ax_loss, ax_dice):
                ax.axvline(best[0], color=colour, alpha=0.3, linewidth=1)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (BCE + Dice)")
    ax_loss.set_title("Loss")
    ax_dice.set_xlabel("epoch")
    ax_dice.set_ylabel("val patient Dice")
    ax_dice.set_ylim(0, 1.02)
    ax_dice.set_title("Validation patient Dice")
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def write_learning_curves(log_path: str | Path) -> Path:
    """Redraw ``learning_curves.png`` beside one ``train_log.csv`` (atomic write)."""
    log_path = Path(log_path)
    out = log_path.parent / CURVES_FILE
    atomic_write_bytes(out, learning_curves_png({"run": read_log(log_path)}))
    return out


def run_learning_curves_png(run_dir: str | Path) -> bytes | None:
    """The run's curves (every fold's when present) for the report, or None without a log."""
    logs = {label: read_log(path) for label, path in find_train_logs(run_dir).items()}
    logs = {k: v for k, v in logs.items() if not v.empty}
    return learning_curves_png(logs) if logs else None
