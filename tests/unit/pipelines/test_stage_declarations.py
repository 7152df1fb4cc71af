"""Stage declarations: the runner finds every stage by its module's STAGE, and a new module is a new stage."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import mri_seg.pipelines
from mri_seg.errors import StageError
from mri_seg.pipelines import run as runner
from mri_seg.pipelines.stage import Previous, Stage, StageCall, discover
from mri_seg.rundir import RunDir

TOY = '''
"""A toy stage: counts the manifest's lines into RUN/toy.txt."""
from mri_seg.pipelines.stage import Stage

STAGE = Stage(
    name="toy",
    params=("split.seed",),
    argv=lambda call: ["--run-dir", str(call.run.root)],
    inputs=lambda call: [call.run.manifest],
    outputs=lambda call: [call.run.root / "toy.txt"],
)


def main(argv):
    from pathlib import Path

    run = Path(argv[argv.index("--run-dir") + 1])
    (run / "toy.txt").write_text(" ".join(argv))
    return 0
'''


@pytest.fixture()
def toy_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder added to mri_seg.pipelines' search path holding one new module, toy.py."""
    folder = tmp_path / "more_stages"
    folder.mkdir()
    (folder / "toy.py").write_text(textwrap.dedent(TOY))
    monkeypatch.setattr(mri_seg.pipelines, "__path__", [*mri_seg.pipelines.__path__, str(folder)])
    monkeypatch.delitem(sys.modules, "mri_seg.pipelines.toy", raising=False)
    yield folder
    sys.modules.pop("mri_seg.pipelines.toy", None)


def test_the_shipped_stages_declare_themselves() -> None:
    stages = discover()
    assert list(stages) == sorted(["cv", "evaluate", "infer", "prepare", "split", "synthesize", "train"])
    assert all(isinstance(s, Stage) and s.name == name for name, s in stages.items())
    assert stages["train"].mode is not None and stages["train"].note is not None
    assert stages["prepare"].params == ("prepare",) and stages["infer"].params == ("infer",)


def test_declarations_name_run_dir_paths(tmp_path: Path) -> None:
    stages, run = discover(), RunDir(tmp_path)
    call = StageCall(run, None)
    assert stages["split"].inputs(call) == [run.manifest, run.patients]
    assert stages["train"].outputs(call) == [run.last_checkpoint, run.best_checkpoint, run.train_log]
    assert stages["train"].outputs(StageCall(run, None, ("--all-folds",))) == [run.checkpoints, run.config("train")]
    assert stages["cv"].outputs(call) == [run.eval_dir("cv") / "summary.json"]
    with pytest.raises(StageError, match="the prepare stage needs --data-dir"):
        stages["prepare"].argv(call)


def test_train_mode_restarts_a_changed_run_and_resumes_the_same_unfinished_one(tmp_path: Path) -> None:
    mode = discover()["train"].mode
    assert mode is not None
    call = StageCall(RunDir(tmp_path), None)
    assert mode(call, Previous(None, "fp", False), print) == (["--restart"], False)
    ok = {"fingerprint": "fp", "status": "ok"}
    assert mode(call, Previous(ok, "other", False), print) == (["--restart"], False)
    assert mode(call, Previous(ok, "fp", False), print) == (["--restart"], False)  # same, but no last.pt


def test_a_new_module_with_a_declaration_is_a_stage_the_runner_runs(tmp_path: Path, toy_stage: Path) -> None:
    assert "toy" in discover()
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.csv").write_text("patient_id\na\n")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"stages": [{"name": "toy", "args": ["--note", "{run_dir}"]}]}))
    specs = runner.load_pipeline(tmp_path / "p.yaml")
    ctx = runner.StageContext(run, None)

    assert runner.run_pipeline(specs, ctx, log=lambda *_: None) == {"toy": "ran"}
    assert (run / "toy.txt").read_text() == f"--run-dir {run} --note {run}"
    record = json.loads((run / "stages" / "toy.json").read_text())
    assert record["status"] == "ok" and record["params"] == {"split": {"seed": 42}}
    assert list(record["inputs"]) == [str(run / "manifest.csv")]
    assert runner.run_pipeline(specs, ctx, log=lambda *_: None) == {"toy": "skipped"}
    # its declared config key and its declared input re-run it; other config does not
    assert runner.run_pipeline(specs, ctx, ["eval.postprocess.threshold=0.2"], log=lambda *_: None) == {"toy": "skipped"}
    assert runner.run_pipeline(specs, ctx, ["split.seed=1"], log=lambda *_: None) == {"toy": "ran"}
    (run / "manifest.csv").write_text("patient_id\na\nb\n")
    assert runner.run_pipeline(specs, ctx, ["split.seed=1"], log=lambda *_: None) == {"toy": "ran"}


def test_a_declaration_must_carry_its_module_name(tmp_path: Path, toy_stage: Path) -> None:
    (toy_stage / "toy.py").write_text('from mri_seg.pipelines.stage import Stage\nSTAGE = Stage(name="other")\n')
    with pytest.raises(StageError, match="mri_seg.pipelines.toy.STAGE must be a Stage named 'toy'"):
        discover()
