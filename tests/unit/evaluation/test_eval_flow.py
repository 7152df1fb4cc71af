"""The evaluation flow shared by evaluate and cv, with stand-in models and writer (no network, no rendering)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from mri_seg.config import Config, ConfigError
from mri_seg.errors import StageError
from mri_seg.evaluation.flow import EvalRequest, check_request, eval_output_dir, resolve_config, run_evaluation
from mri_seg.evaluation.scoring import PatientCase, evaluate_cases


def _ckpt_cfg() -> Config:
    cfg = Config()
    cfg.eval.postprocess.threshold = 0.3
    cfg.eval.postprocess.min_component_pixels = 7
    cfg.model.channels = [4, 8, 16]
    cfg.model.strides = [2, 2]
    return cfg


def test_precedence_checkpoint_file_set_flags(tmp_path):
    ckpt = _ckpt_cfg()
    assert resolve_config(ckpt).eval.postprocess.threshold == 0.3  # checkpoint's eval section by default
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "eval: {postprocess: {threshold: 0.4, tta_flip: true}, bootstrap_samples: 10}\n"
        "model: {channels: [8, 16, 32, 64]}\n"
        "infer: {overlap: 0.25}\n"
    )
    cfg = resolve_config(ckpt, recipe)
    assert cfg.eval.postprocess.threshold == 0.4 and cfg.eval.postprocess.tta_flip is True
    assert cfg.eval.postprocess.min_component_pixels == 7  # not in the file: checkpoint value kept
    assert cfg.eval.bootstrap_samples == 10
    assert cfg.infer.overlap == 0.5  # evaluate reads only eval.* (the runner re-runs it only when that changes)
    assert cfg.model.channels == [4, 8, 16]  # the model is the checkpoint's, whatever the file says
    cfg = resolve_config(ckpt, recipe, ["eval.postprocess.threshold=0.45"])
    assert cfg.eval.postprocess.threshold == 0.45
    flags = {"eval.postprocess.threshold": 0.6, "eval.postprocess.tta_flip": None, "eval.split": "val"}
    cfg = resolve_config(ckpt, recipe, ["eval.postprocess.threshold=0.45"], flags)
    assert cfg.eval.postprocess.threshold == 0.6 and cfg.eval.postprocess.tta_flip is True and cfg.eval.split == "val"
    with pytest.raises(ConfigError, match="eval.nope"):
        resolve_config(ckpt, None, ["eval.nope=1"])


def _case(pid: str) -> PatientCase:
    truth = np.zeros((3, 16, 16), bool)
    truth[1, 4:10, 4:10] = True
    prob = np.where(truth, 0.8, 0.1).astype(np.float32)
    return PatientCase(pid, [0, 1, 2], prob, truth, np.full(truth.shape, 50, np.uint8))


class FakeModels:
    """Stand-in models: records the order of the flow's calls."""

    stage = "evaluate"
    owner = "the checkpoint's"
    title = "fake title"

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.calls: list[str] = []

    def config(self) -> Config:
        self.calls.append("config")
        return self.cfg

    def output_name(self, cfg: Config) -> str:
        return cfg.eval.split

    def load(self, cfg: Config, device: str) -> Config:
        self.calls.append(f"load {device}")
        cfg.eval.postprocess.threshold = 0.7  # a setting the models decide (evaluate: the cv choice)
        return cfg

    def predict(self, run_dir, cfg, options, progress, on_case):
        self.calls.append(f"predict {options.threshold} {progress}")
        cases = [_case("A"), _case("B")]
        return evaluate_cases(cases, options, cfg.eval, cfg.eval.split, on_case)

    def describe(self) -> dict:
        return {"checkpoints": [{"path": "x.pt"}], "threshold_source": "cv: somewhere"}

    def finish(self, result, paths, cfg) -> None:
        self.calls.append(f"finish {sorted(paths)}")


class FakeWriter:
    def __init__(self):
        self.sinks: list[Path] = []
        self.seen: list[str] = []
        self.written: dict = {}

    def case_sink(self, out_dir: Path):
        self.sinks.append(out_dir)
        return lambda case, pred, rows: self.seen.append(case.patient_id)

    def write(self, result, out_dir, title, run_dir, patient_pages):
        self.written = {"out_dir": out_dir, "title": title, "run_dir": run_dir, "pages": patient_pages,
                        "summary": dict(result.summary)}
        return {"report.html": out_dir / "report.html"}


def test_flow_order_summary_config_and_outputs(tmp_path, capsys):
    cfg = Config()
    cfg.eval.bootstrap_samples = 20
    cfg.eval.patient_pages = True
    models, writer = FakeModels(cfg), FakeWriter()
    request = EvalRequest(tmp_path, overrides=["eval.split=val", "train.epochs=3"],
                          flags={"eval.input_sequences": "flair_only"}, device="cpu", progress=False)
    run = run_evaluation(request, models, writer)
    assert models.calls == ["config", "load cpu", "predict 0.7 False", "finish ['report.html']"]
    assert run.out_dir == tmp_path / "eval" / "val_flair_only" == eval_output_dir(tmp_path, "val", "flair_only")
    assert writer.sinks == [run.out_dir] and writer.seen == ["A", "B"]  # pictures drawn while each case is in memory
    assert writer.written["title"] == "fake title" and writer.written["pages"] is True
    summary = writer.written["summary"]
    assert summary["split"] == "val" and summary["n_patients"] == 2 and summary["options"]["threshold"] == 0.7
    assert summary["threshold_source"] == "cv: somewhere" and summary["device"] == "cpu"
    assert list(summary)[-4:] == ["checkpoints", "threshold_source", "device", "provenance"]
    assert summary["seconds"] >= 0
    saved = yaml.safe_load((tmp_path / "config_evaluate.yaml").read_text())
    assert saved["eval"]["postprocess"]["threshold"] == 0.7 and saved["eval"]["split"] == "val"
    err = capsys.readouterr().err
    assert "note: evaluate uses the checkpoint's settings outside eval; ignored: ['train.epochs=3']" in err


def test_flow_without_pages_and_with_an_out_dir(tmp_path):
    cfg = Config()
    cfg.eval.bootstrap_samples = 20
    cfg.eval.patient_pages = False
    writer = FakeWriter()
    run = run_evaluation(EvalRequest(tmp_path, out_dir=tmp_path / "elsewhere"), FakeModels(cfg), writer)
    assert run.out_dir == tmp_path / "elsewhere" and writer.sinks == [] and writer.written["pages"] is False


def test_bad_options_stop_before_the_models_load(tmp_path):
    models = FakeModels(Config())
    with pytest.raises(StageError, match="eval.postprocess.min_component_pixels"):
        run_evaluation(EvalRequest(tmp_path, flags={"eval.postprocess.min_component_pixels": -1}), models, FakeWriter())
    assert models.calls == ["config"]


def test_prediction_errors_are_stage_errors(tmp_path):
    class Failing(FakeModels):
        def predict(self, *args):
            raise ValueError("split 'test' has no slices")

    with pytest.raises(StageError, match="no slices"):
        run_evaluation(EvalRequest(tmp_path), Failing(Config()), FakeWriter())
    assert not (tmp_path / "config_evaluate.yaml").exists()


def test_request_checked_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="eval.nope"):
        check_request(EvalRequest(tmp_path, overrides=["eval.nope=1"]))
    with pytest.raises(StageError, match="run directory"):
        check_request(EvalRequest(tmp_path / "missing"))
    check_request(EvalRequest(tmp_path, flags={"eval.postprocess.threshold": 0.4}))
