"""pipelines/demo_cv.yaml end to end on tiny synthetic data: folds, all-fold training, out-of-fold summary."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from mri_seg.config import load_config
from mri_seg.data.synthetic import generate_dataset
from mri_seg.pipelines import run as runner

REPO = Path(__file__).resolve().parents[2]
TINY = ["train.epochs=1", "model.channels=[4,8,16,32]", "model.num_res_units=0", "eval.bootstrap_samples=50",
        "train.max_time_minutes=0.0"]  # fmt: skip


def test_repo_cv_pipelines_parse():
    for name in ("lgg_cpu.yaml", "demo_cv.yaml"):
        specs = runner.load_pipeline(REPO / "pipelines" / name)
        assert [s.name for s in specs] == ["prepare", "split", "train", "cv", "evaluate"]
        assert specs[4].args == ["--split", "test"]
        assert "--all-folds" in specs[2].args
        assert all(s.config is not None and s.config.is_file() for s in specs)
    cpu = load_config(REPO / "configs" / "lgg_cpu.yaml", [])
    assert cpu.split.n_folds == 5 and cpu.train.ship_checkpoint == "last"


@pytest.mark.slow
def test_demo_cv_pipeline_runs_end_to_end_then_skips(tmp_path):
    data = generate_dataset(tmp_path / "data" / "kaggle_3m", n_patients=8, seed=1, min_slices=8, max_slices=10, size=64)
    run = tmp_path / "run"
    specs = runner.load_pipeline(REPO / "pipelines" / "demo_cv.yaml")
    ctx = runner.StageContext(run, data)
    outcome = runner.run_pipeline(specs, ctx, overrides=TINY, log=lambda *_: None)
    assert outcome == {"prepare": "ran", "split": "ran", "train": "ran", "cv": "ran", "evaluate": "ran"}

    splits = pd.read_csv(run / "splits.csv")
    assert sorted(splits.loc[splits["split"] != "test", "fold"].unique()) == [0, 1, 2]
    for k in range(3):
        for name in ("best.pt", "last.pt", "train_log.csv"):
            assert (run / "checkpoints" / f"fold{k}" / name).is_file()
    patients = pd.read_csv(run / "eval" / "cv" / "patients.csv")
    trainval = splits[splits["split"] != "test"]
    assert sorted(patients["patient_id"]) == sorted(trainval["patient_id"])
    summary = json.loads((run / "eval" / "cv" / "summary.json").read_text())
    assert summary["split"] == "cv" and summary["n_patients"] == len(trainval)
    assert [c["fold"] for c in summary["checkpoints"]] == [0, 1, 2]
    assert all(len(c["sha256"]) == 64 and c["path"].endswith("best.pt") for c in summary["checkpoints"])
    for c in summary["checkpoints"]:  # each patient's model never trained on it
        state = torch.load(c["path"], map_location="cpu", weights_only=True)
        fold_patients = set(patients.loc[patients["fold"] == c["fold"], "patient_id"])
        assert fold_patients and not fold_patients & set(state["train_patients"])
    assert (run / "eval" / "cv" / "report.html").is_file() and (run / "config_cv.yaml").is_file()

    # the test split is evaluated with the deliverable, RUN/checkpoints: the fold models' ensemble
    test = json.loads((run / "eval" / "test" / "summary.json").read_text())
    assert test["n_patients"] == int((splits["split"] == "test").sum())
    assert [c["path"] for c in test["checkpoints"]] == [
        str((run / "checkpoints" / f"fold{k}" / "best.pt").resolve()) for k in range(3)]  # fmt: skip
    assert [c["sha256"] for c in test["checkpoints"]] == [c["sha256"] for c in summary["checkpoints"]]

    # cv chose the deliverable's threshold on the out-of-fold sweep; the test evaluation used it
    choice = json.loads((run / "checkpoints" / "postprocess.json").read_text())
    assert choice["threshold"] == summary["threshold_sweep"]["best_mean"]
    assert choice["members"] == sorted(c["sha256"] for c in summary["checkpoints"])
    assert test["options"]["threshold"] == choice["threshold"]
    assert test["threshold_source"] == f"cv: {run / 'checkpoints' / 'postprocess.json'}"

    again = runner.run_pipeline(specs, ctx, overrides=TINY, log=lambda *_: None)
    assert set(again.values()) == {"skipped"}  # cv's own postprocess.json does not make cv stale
