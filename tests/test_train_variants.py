"""Recipe variants are config changes: each trains through the real engine (tiny, seconds)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mri_seg.config import load_config
from mri_seg.training.engine import train


def fresh_run(src: Path, dst: Path) -> Path:
    """A writable copy of a prepared+split run dir (manifest paths are absolute)."""
    dst.mkdir(parents=True)
    for name in ("manifest.csv", "splits.csv", "patients.csv"):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)
    return dst


def tiny(run_dir: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long run: 32x32 slices, a 3-level model with 4..16 channels, 1 epoch."""
    height = int(pd.read_csv(run_dir / "manifest.csv")["height"].max())
    return [
        f"data.scale={32 / height}", "model.channels=[4,8,16]", "model.strides=[2,2]", "model.num_res_units=0",
        "data.num_workers=0", "train.batch_size=8", "train.epochs=1", "train.warmup_epochs=0",
        "augment.elastic.p=0.0", *extra,
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss", [["train.loss=tversky_bce", "train.tversky_beta=0.7", "train.tversky_alpha=0.3",
              "train.dice_batch=false"],
             ["train.loss=dice_focal", "train.focal_gamma=2.0", "train.dice_weight=0.5"]],
    ids=["tversky_bce", "dice_focal"],
)  # fmt: skip
def test_loss_variants_train_through_the_engine(synthetic_run, tmp_path, loss):
    run = fresh_run(synthetic_run, tmp_path / "run")
    cfg = load_config(None, tiny(run, *loss))
    summary = train(run, cfg, device="cpu")
    row = pd.read_csv(run / "train_log.csv").iloc[0]
    assert summary["epochs_completed"] == 1
    assert all(math.isfinite(row[c]) for c in ("train_loss", "train_bce", "train_dice_loss", "val_loss"))
    assert row["train_loss"] == pytest.approx(
        cfg.train.bce_weight * row["train_bce"] + cfg.train.dice_weight * row["train_dice_loss"], rel=1e-5
    )
