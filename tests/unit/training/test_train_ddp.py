"""torchrun with 2 CPU processes (gloo): one epoch, rank 0 writes, val metrics reduced over ranks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from mri_seg.data.dataset import build_dataset
from mri_seg.losses import build_loss
from mri_seg.models import build_model
from mri_seg.training.checkpoint import checkpoint_config, load_checkpoint
from mri_seg.training.distributed import DistContext
from mri_seg.training.runtime import make_precision
from mri_seg.training.validate import validate


@pytest.mark.slow
def test_torchrun_two_processes_one_epoch(synthetic_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("manifest.csv", "splits.csv", "patients.csv"):
        if (synthetic_run / name).is_file():
            shutil.copy(synthetic_run / name, run / name)
    height = int(pd.read_csv(run / "manifest.csv")["height"].max())
    overrides = [
        f"data.scale={32 / height}", "model.channels=[4,8,16]", "model.strides=[2,2]", "model.num_res_units=1",
        "data.num_workers=0", "train.batch_size=4", "train.tumour_oversample=0.5", "augment.elastic.p=0.0",
    ]  # fmt: skip
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
            "-m", "mri_seg.pipelines.train", "--run-dir", str(run), "--device", "cpu", "--epochs", "1"]  # fmt: skip
    for item in overrides:
        args += ["--set", item]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    # own session: on a timeout the whole group (torchrun and its workers) is killed
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun timed out: {out[-2000:]} {err[-2000:]}")
    assert proc.returncode == 0, out[-2000:] + err[-3000:]
    assert out.count("train done: 1 epochs") == 1  # rank 0 only
    assert "world size 2" in out

    log = pd.read_csv(run / "train_log.csv")
    assert log["epoch"].tolist() == [1]
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    assert state["epoch"] == 1 and (run / "checkpoints" / "last.pt").is_file()

    # the reduced val metrics equal a single-process validation of the saved model
    cfg = checkpoint_config(state)
    model = build_model(cfg.model)
    model.load_state_dict(state["model"])
    val_ds = build_dataset(run, "val", cfg, train=False)
    loader = DataLoader(val_ds, batch_size=4)
    single = validate(model, loader, val_ds, build_loss(cfg.train), make_precision(torch.device("cpu"), False),
                      torch.device("cpu"), DistContext())  # fmt: skip
    assert single["val_patient_dice_mean"] == pytest.approx(log.loc[0, "val_patient_dice_mean"], abs=1e-3)
    assert single["val_slice_dice"] == pytest.approx(log.loc[0, "val_slice_dice"], abs=1e-3)
