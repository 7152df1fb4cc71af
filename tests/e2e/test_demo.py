"""A smaller demo end to end: synthetic data -> prepare -> split -> train -> evaluate -> infer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mri_seg.pipelines import demo
from mri_seg.pipelines._cli import StageError

SMALL = [
    "train.epochs=2",
    "train.max_time_minutes=0.0",
    "model.channels=[4,8,16]",
    "model.strides=[2,2]",
    "data.scale=0.25",
    "eval.bootstrap_samples=100",
]


@pytest.mark.slow
def test_small_demo_runs_every_stage_and_reruns_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--patients", "5"] + [a for s in SMALL for a in ("--set", s)]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    assert "demo finished" in printed and "report.html" in printed
    assert f"inference report: {out / 'predictions' / 'report.html'}" in printed
    assert "training:     epoch 2 of 2 (completed)\n" in printed

    for stage in ("prepare", "split", "train", "evaluate", "infer"):
        record = json.loads((out / "stages" / f"{stage}.json").read_text())
        assert record["status"] == "ok", stage
        # infer needs no run directory: it writes its resolved config beside its outputs
        config_dir = out / "predictions" if stage == "infer" else out
        assert (config_dir / f"config_{stage}.yaml").is_file(), stage
    assert (out / "eval" / "test" / "report.html").is_file()
    summary = json.loads((out / "eval" / "test" / "summary.json").read_text())
    assert 0.0 <= summary["dice_mean"] <= 1.0

    predictions = pd.read_csv(out / "predictions" / "predictions.csv")
    assert len(predictions) == 3 and set(predictions["status"]) == {"ok"}
    assert set(predictions["format"]) >= {"nifti"}
    assert (out / "predictions" / "volume_mask.nii.gz").is_file()
    assert (out / "predictions" / "large_slice_mask.png").is_file()
    assert (out / "predictions" / "report.html").is_file() and len(list((out / "predictions" / "report_files").glob("*.html"))) == 3
    assert (out / "eval" / "test" / "patients").is_dir()  # patient pages

    # a second run finds every stage unchanged
    assert demo.main(argv) == 0
    assert capsys.readouterr().out.count("unchanged, skipped") == 5


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(StageError, match="not made by the demo"):
        demo.main(["--out", str(tmp_path)])
    assert (tmp_path / "mine.txt").read_text() == "user data"
