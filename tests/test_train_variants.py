"""Recipe variants are config changes: each trains through the real engine (tiny, seconds)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mri_seg.config import load_config
from mri_seg.inference.predictor import Predictor
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


VARIANTS = {  # every architecture and every loss variant goes once through the real engine
    "attention_unet-tversky_bce": ["model.name=attention_unet", "train.loss=tversky_bce", "train.tversky_beta=0.7",
                                   "train.tversky_alpha=0.3", "train.dice_batch=false"],
    "segresnet-dice_focal": ["model.name=segresnet", "train.loss=dice_focal", "train.focal_gamma=2.0",
                             "train.dice_weight=0.5"],
    "dynunet-deep_supervision": ["model.name=dynunet", "model.deep_supervision=1", "model.num_res_units=1"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_architecture_and_loss_variants_train_and_load_back(synthetic_run, tmp_path, variant):
    run = fresh_run(synthetic_run, tmp_path / "run")
    cfg = load_config(None, tiny(run, *VARIANTS[variant]))
    summary = train(run, cfg, device="cpu")
    row = pd.read_csv(run / "train_log.csv").iloc[0]
    assert summary["epochs_completed"] == 1
    assert all(math.isfinite(row[c]) for c in ("train_loss", "train_bce", "train_dice_loss", "val_loss"))
    assert 0.0 <= row["val_patient_dice_mean"] <= 1.0
    assert row["train_loss"] == pytest.approx(
        cfg.train.bce_weight * row["train_bce"] + cfg.train.dice_weight * row["train_dice_loss"], rel=1e-5
    )
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert state["config"]["model"]["name"] == cfg.model.name
    predictor = Predictor.from_checkpoint(run / "checkpoints" / "last.pt", device="cpu")
    volume = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    prob = predictor.predict_proba_batch(list(volume))
    assert np.stack(prob).shape == (3, 64, 64) and np.isfinite(np.stack(prob)).all()
