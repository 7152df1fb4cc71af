"""Per-stage fingerprints on a demo-like staged run: a change re-runs exactly the stages that read it,
a changed training config really retrains (the old run moved aside), and re-inference names the new model."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from mri_seg.config import Config, load_config
from mri_seg.data.synthetic import generate_dataset
from mri_seg.params import RUN_ONLY_KEYS, config_params
from mri_seg.pipelines import run as runner
from mri_seg.pipelines.stage import discover
from mri_seg.training.resume import TRAIN_PARAMS

REPO = Path(__file__).resolve().parents[3]

SMALL = [
    "train.epochs=2",
    "model.channels=[4,8,16]",
    "model.strides=[2,2]",
    "data.scale=0.5",
    "eval.bootstrap_samples=50",
]
STAGES = ("prepare", "split", "train", "evaluate", "infer")


def test_every_stage_and_every_config_section_is_declared() -> None:
    stages = discover()
    assert set(stages) == {"synthesize", "prepare", "split", "train", "cv", "evaluate", "infer"}
    read = {p.split(".")[0] for stage in stages.values() for p in stage.params}
    assert read == {f.name for f in dataclasses.fields(Config)}  # a new section must say which stage reads it
    assert stages["train"].params == TRAIN_PARAMS  # what train --resume compares


def stage_params(cfg: Config, stage: str) -> dict:
    return config_params(cfg, discover()[stage].params)


def test_stage_params_hold_only_the_stage_sections_without_run_only_keys() -> None:
    cfg = load_config(None, ["eval.postprocess.threshold=0.3", "train.max_time_minutes=5"])
    assert set(stage_params(cfg, "evaluate")) == {"eval"}
    assert stage_params(cfg, "evaluate")["eval"]["postprocess"]["threshold"] == 0.3
    assert set(stage_params(cfg, "train")) == {"data", "augment", "model", "train"}
    assert RUN_ONLY_KEYS == ("train.max_time_minutes", "data.cache_in_memory", "prepare.workers", "train.compile")
    assert "max_time_minutes" not in stage_params(cfg, "train")["train"]
    assert "compile" not in stage_params(cfg, "train")["train"]
    assert "cache_in_memory" not in stage_params(cfg, "train")["data"]
    assert stage_params(cfg, "prepare") == {"prepare": {"strict": False}}
    assert stage_params(cfg, "train") == stage_params(load_config(None, ["eval.postprocess.threshold=0.9"]), "train")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def demo_like_pipeline(tmp_path: Path) -> tuple[list, runner.StageContext]:
    """pipelines/demo.yaml's stages and recipe on a small 64x64 synthetic set; infer on two of its patients."""
    data = generate_dataset(tmp_path / "data", n_patients=5, seed=2, min_slices=6, max_slices=10, size=64)
    scans = tmp_path / "scans"
    for folder in sorted(p for p in data.iterdir() if p.is_dir())[:2]:
        shutil.copytree(folder, scans / folder.name)
    stages = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())["stages"]
    for stage in stages:
        stage["config"] = str(REPO / "configs" / "demo.yaml")
        stage["args"] = [a.replace("{run_dir}/scans", str(scans)) for a in stage.get("args", [])]
        stage["inputs"] = [str(scans) if i == "{run_dir}/scans" else i for i in stage.get("inputs", [])]
    assert [s["name"] for s in stages] == list(STAGES)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"stages": stages}))
    return runner.load_pipeline(tmp_path / "pipeline.yaml"), runner.StageContext(tmp_path / "run", data)


@pytest.mark.slow
def test_each_change_reruns_only_the_stages_that_read_it(tmp_path: Path) -> None:
    specs, ctx = demo_like_pipeline(tmp_path)
    out = ctx.run_dir

    def demo_run(*sets: str) -> set[str]:
        outcome = runner.run_pipeline(specs, ctx, [*SMALL, *sets], log=lambda *_: None)
        return {stage for stage, what in outcome.items() if what == "ran"}

    assert demo_run() == set(STAGES)
    best = out / "checkpoints" / "best.pt"
    best_sha, config_train = _sha(best), (out / "config_train.yaml").read_text()
    eval_summary = json.loads((out / "eval" / "test" / "summary.json").read_text())
    assert eval_summary["options"]["threshold"] == 0.5

    # threshold-only change of evaluation: evaluate alone re-runs; the model and its configs are untouched
    assert demo_run("eval.postprocess.threshold=0.4") == {"evaluate"}
    assert _sha(best) == best_sha and (out / "config_train.yaml").read_text() == config_train
    assert json.loads((out / "eval" / "test" / "summary.json").read_text())["options"]["threshold"] == 0.4

    # the same for inference settings
    assert demo_run("eval.postprocess.threshold=0.4", "infer.postprocess.threshold=0.4") == {"infer"}
    assert _sha(best) == best_sha

    # the time cap is not part of the training config: raising it re-runs nothing
    assert demo_run("eval.postprocess.threshold=0.4", "infer.postprocess.threshold=0.4",
                    "train.max_time_minutes=60") == set()  # fmt: skip

    # another seed really retrains: fresh log and checkpoints, the old run moved aside, new predictions
    old_weights = torch.load(best, weights_only=True)["model"]
    assert demo_run("eval.postprocess.threshold=0.4", "infer.postprocess.threshold=0.4", "train.seed=1") == {
        "train", "evaluate", "infer"
    }  # fmt: skip
    new_state = torch.load(best, weights_only=True)
    assert new_state["config"]["train"]["seed"] == 1
    assert any(not torch.equal(old_weights[k], new_state["model"][k]) for k in old_weights)
    superseded = sorted((out / "superseded").glob("train-*"))
    assert len(superseded) == 1
    assert _sha(superseded[0] / "checkpoints" / "best.pt") == best_sha
    assert (superseded[0] / "config_train.yaml").read_text() == config_train
    assert pd.read_csv(out / "train_log.csv")["epoch"].tolist() == [1, 2]
    predictions = pd.read_csv(out / "predictions" / "predictions.csv", dtype=str)
    assert set(predictions["checkpoint_sha256"]) == {_sha(best)} != {best_sha}
    assert set(predictions["status"]) == {"ok"}

