"""RUN/train_log.csv (rewritten atomically every epoch), its learning_curves.png and optional TensorBoard events.

Where they go is one training run's :class:`mri_seg.rundir.TrainingDir` (the run's own, or a fold's).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd

from mri_seg.rundir import TrainingDir
from mri_seg.utils.atomic import atomic_write_csv

LOG_COLUMNS = [
    "epoch",
    "lr",
    "train_loss",
    "train_bce",
    "train_dice_loss",
    "val_loss",
    "val_patient_dice_mean",
    "val_patient_dice_median",
    "val_slice_dice",
    "images_per_s",
    "seconds",
]


class TrainLog:
    """Rows keyed by epoch; ``truncate(epoch)`` drops rows a resumed run will redo."""

    def __init__(self, outputs: TrainingDir, tensorboard: bool = True):
        self.path = outputs.train_log
        self.rows: list[dict] = []
        self._tb = _summary_writer(outputs.tensorboard) if tensorboard else None

    def load_existing(self, up_to_epoch: int) -> None:
        """Keep the rows of epochs ``<= up_to_epoch`` from an earlier (interrupted) run."""
        if self.path.is_file():
            frame = pd.read_csv(self.path)
            frame = frame[frame["epoch"] <= up_to_epoch]
            self.rows = [{k: _clean(v) for k, v in r.items()} for r in frame.to_dict("records")]

    def append(self, row: dict) -> None:
        missing = [c for c in LOG_COLUMNS if c not in row]
        if missing:
            raise KeyError(f"train log row lacks {missing}")
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [{c: row[c] for c in LOG_COLUMNS}]
        atomic_write_csv(self.path, pd.DataFrame(self.rows, columns=LOG_COLUMNS))
        self._draw_curves()
        if self._tb is not None:
            for key in LOG_COLUMNS[1:]:
                value = row[key]
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    self._tb.add_scalar(key, value, row["epoch"])
            self._tb.flush()

    def _draw_curves(self) -> None:
        """Redraw learning_curves.png beside the log; a plotting failure never stops training."""
        from mri_seg.training.curves import write_learning_curves

        try:
            write_learning_curves(self.path)
        except Exception as exc:  # noqa: BLE001 - a picture is not worth a failed run
            print(f"warning: learning_curves.png not drawn: {exc}", file=sys.stderr)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _clean(value):
    return None if isinstance(value, float) and math.isnan(value) else value


def _summary_writer(log_dir: Path):
    """A TensorBoard SummaryWriter when the ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(log_dir))
