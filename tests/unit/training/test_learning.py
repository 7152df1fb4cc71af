"""The model learns, and the validation Dice training logs is the Dice evaluate reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from mri_seg.config import load_config
from mri_seg.pipelines import evaluate
from mri_seg.training.engine import train

# A small synthetic run (the shared 8-patient 128x128 set at 64x64, 3-level UNet, 8 epochs):
# untrained, the val patient Dice is ~0.02; trained, it must reach STATED_DICE.
STATED_DICE = 0.70
RECIPE = [
    "data.scale=0.5", "model.channels=[8,16,32]", "model.strides=[2,2]", "model.num_res_units=1",
    "data.num_workers=0", "train.batch_size=4", "train.lr=0.005", "train.epochs=8", "train.warmup_epochs=1",
    "train.tumour_oversample=0.5", "augment.elastic.p=0.0", "train.max_time_minutes=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def learned(synthetic_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("learned") / "run"
    run.mkdir()
    for name in ("manifest.csv", "splits.csv", "patients.csv"):
        shutil.copy(synthetic_run / name, run / name)
    train(run, load_config(None, RECIPE), device="cpu")
    return run


@pytest.mark.slow
def test_a_small_synthetic_run_reaches_the_stated_dice(learned):
    log = pd.read_csv(learned / "train_log.csv")
    assert log["epoch"].tolist() == list(range(1, 9))
    assert log["val_patient_dice_mean"].max() >= STATED_DICE, log["val_patient_dice_mean"].tolist()
    assert log["train_loss"].iloc[-1] < 0.8 * log["train_loss"].iloc[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["best.pt", "last.pt"])
def test_logged_val_dice_equals_evaluate_on_the_same_checkpoint(learned, name, capsys):
    checkpoint = learned / "checkpoints" / name
    epoch = torch.load(checkpoint, weights_only=True)["epoch"]
    logged = pd.read_csv(learned / "train_log.csv").set_index("epoch").loc[epoch, "val_patient_dice_mean"]
    # the postprocess validation applies: threshold 0.5, no component removal, no TTA
    assert evaluate.main(["--run-dir", str(learned), "--split", "val", "--checkpoint", str(checkpoint),
                          "--no-tta", "--threshold", "0.5", "--min-component", "0", "--device", "cpu",
                          "--no-progress", "--set", "eval.bootstrap_samples=10"]) == 0  # fmt: skip
    summary = json.loads((learned / "eval" / "val" / "summary.json").read_text())
    assert summary["checkpoint"]["epoch"] == epoch
    assert summary["dice_mean"] == pytest.approx(logged, abs=1e-9)
