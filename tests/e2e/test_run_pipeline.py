"""The pipeline runner: stage order, skip-if-unchanged, --force, failure and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mri_seg.data.synthetic import generate_dataset
from mri_seg.pipelines import run as runner
from mri_seg.pipelines._cli import StageError

REPO = Path(__file__).resolve().parents[2]


def write_pipeline(path: Path, stages: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path


@pytest.fixture()
def dataset(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("ds") / "kaggle_3m", n_patients=6, seed=3, size=64)


@pytest.fixture()
def pipeline_file(tmp_path: Path) -> Path:
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"split": {"seed": 1}}))
    return write_pipeline(
        tmp_path / "p.yaml", [{"name": "prepare", "config": "cfg.yaml"}, {"name": "split", "config": "cfg.yaml"}]
    )


def test_load_pipeline_rejects_unknown_stage_and_keys(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="unknown stage 'fit'"):
        runner.load_pipeline(write_pipeline(tmp_path / "a.yaml", [{"name": "fit"}]))
    with pytest.raises(StageError, match="unknown keys"):
        runner.load_pipeline(write_pipeline(tmp_path / "b.yaml", [{"name": "split", "confg": "x"}]))
    with pytest.raises(StageError, match="not found"):
        runner.load_pipeline(tmp_path / "missing.yaml")


def test_repo_pipelines_parse_and_name_existing_configs() -> None:
    for name in ("lgg.yaml", "lgg_cpu.yaml", "demo.yaml"):
        specs = runner.load_pipeline(REPO / "pipelines" / name)
        assert [s.name for s in specs if s.name != "cv"][:4] == ["prepare", "split", "train", "evaluate"]
        for spec in specs:
            assert spec.config is not None and spec.config.is_file(), f"{name}: {spec.config}"


def test_runs_then_skips_then_reruns_what_changed(tmp_path: Path, dataset: Path, pipeline_file: Path) -> None:
    run_dir = tmp_path / "run"
    ctx = runner.StageContext(run_dir, dataset)
    specs = runner.load_pipeline(pipeline_file)

    assert runner.run_pipeline(specs, ctx, log=lambda *_: None) == {"prepare": "ran", "split": "ran"}
    record = json.loads((run_dir / "stages" / "split.json").read_text())
    assert record["status"] == "ok"
    assert str(run_dir / "manifest.csv") in record["inputs"]
    assert record["config"]["split"]["seed"] == 1
    assert record["provenance"]["mri_seg_version"]
    assert (run_dir / "config_split.yaml").is_file()

    assert runner.run_pipeline(specs, ctx, log=lambda *_: None) == {"prepare": "skipped", "split": "skipped"}

    # a split.* override changes only the split stage's fingerprint (prepare does not read split.*)
    out = runner.run_pipeline(specs, ctx, overrides=["split.seed=2"], log=lambda *_: None)
    assert out == {"prepare": "skipped", "split": "ran"}
    assert json.loads((run_dir / "stages" / "split.json").read_text())["params"] == {
        "split": {**record["params"]["split"], "seed": 2}
    }

    # --force re-runs one stage; the split's inputs are byte-identical, so it is skipped
    out = runner.run_pipeline(specs, ctx, overrides=["split.seed=2"], force={"prepare"}, log=lambda *_: None)
    assert out == {"prepare": "ran", "split": "skipped"}


def test_failed_stage_stops_and_next_run_resumes_from_it(tmp_path: Path, dataset: Path, pipeline_file: Path) -> None:
    run_dir = tmp_path / "run"
    specs = runner.load_pipeline(pipeline_file)
    empty = tmp_path / "empty"
    empty.mkdir()

    with pytest.raises(StageError, match="stage 'prepare' failed"):
        runner.run_pipeline(specs, runner.StageContext(run_dir, empty), log=lambda *_: None)
    record = json.loads((run_dir / "stages" / "prepare.json").read_text())
    assert record["status"] == "failed" and record["error"]
    assert not (run_dir / "stages" / "split.json").exists()

    out = runner.run_pipeline(specs, runner.StageContext(run_dir, dataset), log=lambda *_: None)
    assert out == {"prepare": "ran", "split": "ran"}
