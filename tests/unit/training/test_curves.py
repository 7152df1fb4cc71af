"""Learning curves: drawn beside train_log.csv at every epoch, fold logs found, best epoch."""

from __future__ import annotations

import math

import pandas as pd

from mri_seg.rundir import RunDir
from mri_seg.training.curves import best_epoch, find_train_logs, read_log, run_learning_curves_png
from mri_seg.training.runlog import LOG_COLUMNS, TrainLog

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(epoch: int, dice: float) -> dict:
    row = {c: 0.1 for c in LOG_COLUMNS}
    row.update(epoch=epoch, train_loss=1.0 / epoch, val_loss=1.2 / epoch, val_patient_dice_mean=dice,
               val_patient_dice_median=dice + 0.01)
    return row


def test_train_log_redraws_curves_every_epoch(tmp_path):
    log = TrainLog(RunDir(tmp_path).training(), tensorboard=False)
    log.append(_row(1, 0.4))
    png = tmp_path / "learning_curves.png"
    first = png.read_bytes()
    assert first.startswith(PNG_MAGIC)
    log.append(_row(2, 0.6))
    assert png.read_bytes() != first  # redrawn with the new epoch
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_best_epoch_and_missing_validation(tmp_path):
    frame = pd.DataFrame([_row(1, 0.4), _row(2, 0.7), _row(3, 0.7), _row(4, 0.5)])
    assert best_epoch(frame) == (2, 0.7)  # first of the ties, as best.pt keeps it
    frame["val_patient_dice_mean"] = math.nan  # no validation ran
    assert best_epoch(frame) is None


def test_fold_logs_are_found_and_drawn(tmp_path):
    assert find_train_logs(tmp_path) == {} and run_learning_curves_png(tmp_path) is None
    for k in (10, 2):
        folder = tmp_path / "checkpoints" / f"fold{k}"
        folder.mkdir(parents=True)
        pd.DataFrame([_row(1, 0.3), _row(2, 0.5)]).to_csv(folder / "train_log.csv", index=False)
    (tmp_path / "checkpoints" / "foldx").mkdir()
    pd.DataFrame([_row(1, 0.3)]).to_csv(tmp_path / "checkpoints" / "foldx" / "train_log.csv", index=False)
    logs = find_train_logs(tmp_path)
    assert list(logs) == ["fold 2", "fold 10"]
    assert run_learning_curves_png(tmp_path).startswith(PNG_MAGIC)
    assert list(read_log(logs["fold 2"])["epoch"]) == [1, 2]
