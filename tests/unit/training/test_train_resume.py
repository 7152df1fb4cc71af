"""Resume: an interrupted run continues exactly; a SIGKILLed CLI run loses at most one epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from runs import fresh_run, train_killed_then_resumed

from mri_seg.config import load_config
from mri_seg.training import engine


def tiny(run_dir: Path, epochs: int, *extra: str) -> list[str]:
    height = int(pd.read_csv(run_dir / "manifest.csv")["height"].max())
    return [
        f"data.scale={32 / height}", "model.channels=[4,8,16]", "model.strides=[2,2]", "model.num_res_units=0",
        "data.num_workers=0", "train.batch_size=8", f"train.epochs={epochs}", "train.warmup_epochs=1",
        "train.tumour_oversample=0.5", *extra,
    ]  # fmt: skip


def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(synthetic_run, tmp_path, monkeypatch):
    straight = fresh_run(synthetic_run, tmp_path / "straight")
    engine.train(straight, load_config(None, tiny(straight, 3)), device="cpu")

    broken = fresh_run(synthetic_run, tmp_path / "broken")
    train_killed_then_resumed(broken, load_config(None, tiny(broken, 3)), monkeypatch, killed_in_epoch=3)

    a = pd.read_csv(straight / "train_log.csv")
    b = pd.read_csv(broken / "train_log.csv")
    assert b["epoch"].tolist() == [1, 2, 3]
    for col in ("lr", "train_loss", "val_loss", "val_patient_dice_mean"):
        assert b[col].tolist() == pytest.approx(a[col].tolist(), rel=1e-6, abs=1e-9), col


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_loses_at_most_that_epoch(synthetic_run, tmp_path):
    run = fresh_run(synthetic_run, tmp_path / "run")
    args = [sys.executable, "-m", "mri_seg.pipelines.train", "--run-dir", str(run), "--device", "cpu"]
    for item in tiny(run, 3):
        args += ["--set", item]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONUNBUFFERED": "1"}
    last = run / "checkpoints" / "last.pt"

    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # wait until epoch 1 is saved and epoch 2 has begun
            if "epoch 2/3 started" in line:
                assert last.is_file()
                break
            assert time.monotonic() < deadline, "training did not reach epoch 2"
        else:
            pytest.fail(f"training ended before epoch 2 started (rc {proc.wait()})")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert pd.read_csv(run / "train_log.csv")["epoch"].tolist() == [1]

    done = subprocess.run(args + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train done: 3 epochs" in done.stdout
    assert pd.read_csv(run / "train_log.csv")["epoch"].tolist() == [1, 2, 3]
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 3
    assert (run / "checkpoints" / "best.pt").is_file()
